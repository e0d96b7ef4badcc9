"""The costs table beside the trials: each trial gets its design point's isolated figures (the cost pass's), the time
to accuracy is the epochs a design needs x its isolated epoch time, and figures, advisor and report say which source
they used."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import figures, report
from analysis.advise import design_table
from analysis.costs import load_costs, with_costs
from analysis.est import compute_est
from tests.analysis.synth import _write, assign, frames, grid_trials, make_trial, write_store
from tests.analysis.test_est import BUDGETS, known_est_acc


def _trials():
    return grid_trials(known_est_acc, BUDGETS, classes=("single", "deq"), seeds=(0, 1))


def _costs_for(trials, epoch_time_s: float = 0.25, mem: float = 40.0, only=None) -> pd.DataFrame:
    """One costs row per design point of `trials` (those of class `only`, when given)."""
    t, _ = frames(trials)
    points = t.drop_duplicates("point_id")
    if only:
        points = points[points["design_class"] == only]
    return pd.DataFrame({"point_id": points["point_id"], "device_name": points["device_name"], "sweep": "s",
                         "design_class": points["design_class"], "budget": points["budget"],
                         "epoch_time_s": epoch_time_s, "peak_mem_mb": mem, "latency_ms_p50": 0.5})  # fmt: skip


def test_each_trial_gets_its_design_points_isolated_figures_and_says_so():
    trials = _trials()
    t, _ = frames(trials)
    out = with_costs(t, _costs_for(trials, only="deq"))
    deq, single = out[out["design_class"] == "deq"], out[out["design_class"] == "single"]
    assert (deq["epoch_time_isolated_s"] == 0.25).all() and (deq["peak_mem_isolated_mb"] == 40.0).all()
    assert (deq["cost_source"] == "cost pass").all()
    assert single["epoch_time_isolated_s"].isna().all() and (single["cost_source"] == "in-run").all()
    assert out["peak_mem_mb"].equals(t["peak_mem_mb"])  # the trials' own figures stay


def test_a_costs_row_of_another_device_is_not_used():
    trials = _trials()
    t, _ = frames(trials)
    out = with_costs(t, _costs_for(trials).assign(device_name="NVIDIA H100"))
    assert out["epoch_time_isolated_s"].isna().all() and (out["cost_source"] == "in-run").all()


def test_time_to_accuracy_is_the_epochs_needed_times_the_isolated_epoch_time():
    trials = _trials()
    t, e = frames(trials)
    stats = compute_est(e, t).stats
    costs = figures.cost_table(assign(with_costs(t, _costs_for(trials, epoch_time_s=0.25, only="deq"))))
    tta = figures.time_to_accuracy_table(stats, costs=costs).set_index(["budget", "role"])
    deq = tta.loc[(160_000, "deq")]
    assert deq["epoch_reached"] == 2 and deq["time_s"] == pytest.approx(2 * 0.25)
    assert deq["time_source"] == "cost pass"
    single = tta.loc[(160_000, "single")]  # no costs row: the trials' own cumulative time at the epoch reached
    cum = e[(e["design_class"] == "single") & (e["budget"] == 160_000) & (e["epoch"] == single["epoch_reached"])]
    assert single["time_source"] == "in-run" and single["time_s"] == pytest.approx(cum["cum_time_s"].mean())
    assert figures.time_source_text(tta.reset_index()) == (
        "epochs needed x isolated epoch time (cost pass) and in-run training time")


def test_the_cost_table_uses_the_cost_pass_and_keeps_the_in_run_figures_beside():
    trials = _trials()
    t, _ = frames(trials)
    tab = figures.cost_table(assign(with_costs(t, _costs_for(trials, epoch_time_s=0.25, mem=40.0))))
    assert (tab["epoch_time"] == 0.25).all() and (tab["peak_mem_mb"] == 40.0).all()
    assert (tab["latency_ms_p50"] == 0.5).all() and (tab["cost_source"] == "cost pass").all()
    assert (tab["peak_mem_in_run_mb"] > 100).all()  # synth's in-run peaks are 100 MB and more


def test_the_advisor_compares_isolated_memory_and_says_its_source():
    trials = _trials()
    t, _ = frames(trials)
    tab = design_table(with_costs(t, _costs_for(trials, mem=40.0)))
    assert (tab["peak_mem_mb"] == 40.0).all() and (tab["cost_source"] == "cost pass").all()
    assert (design_table(t)["peak_mem_mb"] > 100).all()  # without a costs table: the trials' own peaks


def test_the_report_reads_the_costs_table_and_writes_the_isolated_time_to_accuracy(tmp_path):
    trials = _trials()
    store = write_store(tmp_path / "store", "s", trials)
    for row in _costs_for(trials, epoch_time_s=0.25).drop(columns="sweep").to_dict("records"):
        _write(store / "costs" / "sweep=s" / f"{row['point_id']}-cpu.parquet", pd.DataFrame([row]))
    assert len(load_costs(str(store), "s")) == len(frames(trials)[0]) // 2  # one row per design point
    out = tmp_path / "report"
    report.write_report(store, "s", out, make_figures=False)
    tta = pd.concat(pd.read_csv(p) for p in out.glob("*_time_to_acc.csv"))
    reached = tta[tta["reached"]]
    assert (reached["time_source"] == "cost pass").all()
    assert (reached["time_s"] == reached["epoch_reached"] * 0.25).all()


def test_without_a_costs_table_every_figure_is_in_run(tmp_path):
    store = write_store(tmp_path / "store", "s", [make_trial("single", 10_000, 0, [0.5, 0.6])])
    trials, _, _ = report.read_store(store, "s")
    assert load_costs(str(store), "s").empty and (trials["cost_source"] == "in-run").all()
