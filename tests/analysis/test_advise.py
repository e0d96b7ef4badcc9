"""Advisor: the most accurate measured design within the limits, its runner-up, and which limit excluded all."""

import pytest

from analysis.__main__ import main
from analysis.advise import advise, design_table
from tests.analysis.synth import frames, grid_trials, make_trial, write_store
from tests.analysis.test_est import BUDGETS, known_est_acc


def trials_table():
    t, _ = frames(grid_trials(known_est_acc, BUDGETS))
    return t


def test_design_points_average_accuracy_over_seeds():
    d = design_table(trials_table())
    assert len(d) == 15  # 3 classes x 5 budgets
    assert (d["n_seeds"] == 3).all()
    assert d["acc_mean"].iloc[0] == pytest.approx(0.87)


def test_best_design_within_limits_and_its_runner_up():
    # weq latency is 2.2 ms x (1 + budget/1e6); at 2.3 ms only weq up to 40k params fits among the 87% designs.
    a = advise(trials_table(), max_latency_ms=2.3, max_memory_mb=110)
    assert (a.best["design_class"], a.best["budget"]) == ("weq", 40_000)
    assert a.best["acc_mean"] == pytest.approx(0.87)
    assert (a.runner_up["design_class"], a.runner_up["budget"]) == ("single", 10_000)
    assert "Runner-up vs best: accuracy -3.00 pp" in a.text
    assert "7 of 15 designs fit" in a.text


def test_parameter_limit_counts_total_parameters():
    a = advise(trials_table(), max_params=20_000)
    assert a.best["params_total"] <= 20_000
    assert a.best["design_class"] == "single"


def test_a_limit_that_excludes_everything_on_its_own_is_named():
    a = advise(trials_table(), max_latency_ms=1.0, max_memory_mb=500)
    assert a.best is None
    assert a.excluded_by == ["max_latency_ms"]
    assert "Excluded everything on its own: latency p50 (batch 1) <= 1 ms." in a.text
    assert "alone keeps 0 of 15 designs (lowest measured: 2.02 ms)" in a.text
    assert "peak memory <= 500 MB alone keeps 15 of 15 designs" in a.text


def test_limits_that_exclude_everything_only_together_are_named_together():
    # Memory <= 101 MB keeps only the smallest designs; latency <= 2.01 ms keeps none of... only single fits latency.
    a = advise(trials_table(), max_latency_ms=2.05, max_memory_mb=100.85)
    assert a.best is None
    assert "No single limit excludes everything; together these do" in a.text
    assert sorted(a.excluded_by) == ["max_latency_ms", "max_memory_mb"]


def test_failed_and_unmeasured_trials_are_not_candidates():
    trials = grid_trials(known_est_acc, [10_000]) + [make_trial("deq", 10_000, 0, [0.99], status="error")]
    t, _ = frames(trials)
    assert advise(t).best["acc_mean"] < 0.99
    t2, _ = frames([make_trial("single", 10_000, 0, [0.9], status="diverged")])
    assert advise(t2).best is None and "no trials with status ok" in advise(t2).text


def test_cli_prints_the_choice_and_exits_1_when_nothing_fits(tmp_path, capsys):
    write_store(tmp_path, "demo", grid_trials(known_est_acc, BUDGETS[:2], seeds=(0, 1)))
    assert main(["advise", "--store", str(tmp_path), "--sweep", "demo", "--max-latency-ms", "2.3"]) == 0
    assert "Best design within latency p50 (batch 1) <= 2.3 ms" in capsys.readouterr().out
    assert main(["advise", "--store", str(tmp_path), "--max-params", "1000"]) == 1
    assert "parameters <= 0.001M alone keeps 0 of 6" in capsys.readouterr().out


def test_designs_compare_by_the_sweeps_interleaved_latency_where_the_pass_measured_them():
    t = trials_table()
    measured = t["design_class"] == "weq"
    t.loc[measured, "latency_interleaved_ms_p50"] = 0.5
    d = design_table(t).set_index(["design_class", "budget"])["latency_ms_p50"]
    assert (d.loc["weq"] == 0.5).all()
    own = t[t["design_class"] == "single"].groupby("budget")["latency_ms_p50"].mean()
    assert list(d.loc["single"].sort_index()) == pytest.approx(list(own.sort_index()))
