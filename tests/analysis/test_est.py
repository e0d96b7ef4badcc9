"""EST: winners per (budget, epoch), the verdict rules, the located threshold and its uncertainty."""

import json

import pandas as pd
import pytest

from analysis.est import compute_est, compute_est_staged, fmt_params, half_width
from tests.analysis.synth import frames, grid_trials, make_trial

BUDGETS = [10_000, 20_000, 40_000, 80_000, 160_000]
SEED_NOISE = {0: -0.002, 1: 0.0, 2: 0.002}  # sample std 0.002 over three seeds


def known_est_acc(cls, budget, epoch, seed):
    """Ensembles lead by 3 pp from 40k params at epochs >= 3 (from epoch 2 at 160k); trail by 3 pp elsewhere."""
    base = 0.80 + 0.01 * epoch + SEED_NOISE[seed]
    if cls == "single":
        return base
    wins = budget >= 40_000 and (epoch >= 3 or (budget == 160_000 and epoch >= 2))
    return base + (0.03 if wins else -0.03)


def est_of(trials, **kw):
    t, e = frames(trials)
    return compute_est(e, t, **kw)


def only_group(res):
    assert len(res.summary) == 1
    return res.summary.iloc[0]


def test_known_est_is_located_at_the_final_epoch_with_its_interval():
    s = only_group(est_of(grid_trials(known_est_acc, BUDGETS)))
    assert s["status"] == "found"
    assert s["est_budget"] == 40_000
    assert s["below_budget"] == 20_000
    assert s["interval"] == "(0.02M, 0.04M]"
    assert s["below_winner"] == "single"
    assert s["est_winner"] == "all ensembles"
    assert s["est_margin_pp"] == pytest.approx(3.0)
    # Welch half-width: t(0.975, df = 4) x sqrt(2 x 0.002^2 / 3) = 2.7764 x 0.001633 = 0.4534 pp
    assert s["est_noise_pp"] == pytest.approx(0.4534, abs=1e-4)
    assert s["decision"].startswith("Win at EST: deq − single = +3.00 pp (95% CI [+2.55, +3.45])")
    assert "the budget below is a clear 'single' win" in s["decision"]


def test_staged_est_decides_the_cells_first_and_completes_to_compute_est():
    t, e = frames(grid_trials(known_est_acc, BUDGETS, classes=("single", "deq", "weq")))
    cells, complete = compute_est_staged(e, t, n_boot=50)
    whole = compute_est(e, t, n_boot=50)
    pd.testing.assert_frame_equal(cells.grid, whole.grid)
    pd.testing.assert_frame_equal(cells.stats, whole.stats)
    assert cells.summary["est_lo"].isna().all()  # no bootstrap yet
    assert list(cells.summary["seeds"]) == list(whole.summary["seeds"])
    done = complete()
    for part in ("grid", "stats", "summary", "per_epoch", "earliest"):
        pd.testing.assert_frame_equal(getattr(done, part), getattr(whole, part))
    assert done.notes == whole.notes and done.to_json() == whole.to_json()
    assert whole.summary["est_lo"].iloc[0] == 40_000


def test_earliest_epoch_per_budget_is_the_first_epoch_of_an_unbroken_win_to_the_end():
    res = est_of(grid_trials(known_est_acc, BUDGETS))
    earliest = dict(zip(res.earliest["budget"], res.earliest["earliest_epoch"].astype(object), strict=True))
    assert earliest == {10_000: pd.NA, 20_000: pd.NA, 40_000: 3, 80_000: 3, 160_000: 2}
    assert only_group(res)["est_earliest_epoch"] == 3


def test_per_epoch_est_follows_the_epoch_where_ensembles_start_to_win():
    res = est_of(grid_trials(known_est_acc, BUDGETS))
    per = res.per_epoch.set_index("epoch")
    assert per.loc[1, "status"] == "none"
    assert per.loc[2, "est_budget"] == 160_000
    assert per.loc[3, "est_budget"] == 40_000
    assert per.loc[4, "est_budget"] == 40_000


def test_an_isolated_low_budget_win_does_not_move_the_est():
    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        if cls == "single":
            return base
        return base + (0.03 if budget in (10_000, 80_000, 160_000) else -0.03)

    s = only_group(est_of(grid_trials(acc, BUDGETS)))
    assert (s["est_budget"], s["below_budget"]) == (80_000, 40_000)


def test_no_est_when_single_wins_at_the_largest_budget():
    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        return base if cls == "single" else base + (0.03 if budget < 160_000 else -0.03)

    res = est_of(grid_trials(acc, BUDGETS))
    s = only_group(res)
    assert s["status"] == "none"
    assert pd.isna(s["est_budget"])
    assert "no EST in grid" in res.summary_markdown()
    assert any("no EST in the grid" in n for n in res.notes)


def test_overlapping_seed_intervals_are_a_tie_not_a_win_under_the_std_rule():
    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        return base if cls == "single" else base + 0.003  # 0.3 pp < 0.4 pp (two 1-std half-widths)

    res = est_of(grid_trials(acc, BUDGETS), tie_rule="std")
    assert set(res.grid["winner"]) == {"tie"}
    assert only_group(res)["status"] == "none"


def test_single_best_by_a_margin_inside_the_noise_is_a_tie_under_the_std_rule():
    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        return base if cls == "single" else base - 0.003

    res = est_of(grid_trials(acc, BUDGETS), tie_rule="std")
    assert set(res.grid["winner"]) == {"tie"}
    assert set(res.grid["best_class"]) == {"single"}


def test_one_winning_ensemble_class_is_named_and_all_ensembles_needs_every_class_to_win():
    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        return {"single": base, "deq": base + 0.03, "weq": base + 0.001}[cls]

    res = est_of(grid_trials(acc, BUDGETS))
    assert set(res.grid["winner"]) == {"deq"}
    assert only_group(res)["est_budget"] == 10_000
    assert "smallest budget in the grid" in only_group(res)["decision"]


def test_ci95_rule_is_stricter_than_one_std():
    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        return base if cls == "single" else base + 0.008

    assert set(est_of(grid_trials(acc, BUDGETS), tie_rule="std").grid["winner"]) == {"all ensembles"}
    assert set(est_of(grid_trials(acc, BUDGETS), tie_rule="ci95").grid["winner"]) == {"tie"}


def test_half_width_is_std_or_t_interval_and_undefined_for_one_seed():
    assert half_width(0.002, 3, "std") == pytest.approx(0.002)
    assert half_width(0.002, 3, "ci95") == pytest.approx(4.3027 * 0.002 / 3**0.5, rel=1e-4)
    assert half_width(0.0, 1, "std") != half_width(0.0, 1, "std")  # NaN


def test_single_seed_is_decided_by_means_under_an_overlap_rule_and_says_ties_cannot_be_assessed():
    res = est_of(grid_trials(known_est_acc, BUDGETS, seeds=(1,)), tie_rule="std")
    s = only_group(res)
    assert s["est_budget"] == 40_000
    assert s["seeds"] == "1"
    assert not s["ties_assessable"]
    assert s["tie_note"] == "1 seed: ties cannot be assessed"
    assert s["decision"].startswith("1 seed")
    assert not res.grid["assessable"].any()


def test_missing_single_at_a_budget_is_a_missing_cell_and_is_reported():
    trials = [
        t
        for t in grid_trials(known_est_acc, BUDGETS)
        if not (t[1][0]["design_class"] == "single" and t[1][0]["budget"] == 80_000)
    ]
    res = est_of(trials)
    s = only_group(res)
    assert s["est_budget"] == 40_000
    assert s["missing_budgets_final_epoch"] == [80_000]
    assert set(res.grid.loc[res.grid["budget"] == 80_000, "winner"]) == {"missing"}


def test_running_trial_with_fewer_epochs_counts_only_the_epochs_it_has():
    trials = grid_trials(known_est_acc, BUDGETS)
    tr, rows = make_trial("weq", 160_000, 3, [0.5, 0.5], members=2, status="ok", with_trial_row=False)
    res = est_of(trials + [(tr, rows)])
    cell = res.grid[(res.grid["budget"] == 160_000) & (res.grid["epoch"] == 4)].iloc[0]
    assert cell["n_seeds_max"] == 3
    early = res.stats[(res.stats["budget"] == 160_000) & (res.stats["epoch"] == 1) & (res.stats["role"] == "weq")]
    assert int(early["n_seeds"].iloc[0]) == 4


def test_error_trials_are_left_out_of_est():
    trials = grid_trials(known_est_acc, BUDGETS)
    bad = make_trial("single", 160_000, 7, [0.99] * 4, status="error")
    res = est_of(trials + [bad])
    assert only_group(res)["est_budget"] == 40_000
    assert any("status 'error'" in n for n in res.notes)


def test_groups_are_split_by_k_and_share_the_single_baseline():
    trials = grid_trials(known_est_acc, BUDGETS) + grid_trials(known_est_acc, BUDGETS, classes=("deq",), k=4)
    res = est_of(trials)
    assert list(res.summary["k"]) == [2, 4]
    assert list(res.summary["est_budget"]) == [40_000, 40_000]
    assert list(res.summary["est_winner"]) == ["all ensembles", "deq"]


def test_dct_s1_rows_are_the_baseline_when_a_sweep_has_no_single():
    def acc(cls, budget, epoch, seed):
        return 0.8 + SEED_NOISE[seed] + (0.03 if cls == "dct" and budget >= 80_000 else 0.0)

    trials = [
        make_trial("dct", b, s, [acc("dct", b, 1, s) - (0.03 if m == 1 and b >= 80_000 else 0)], members=m)
        for b in BUDGETS
        for s in SEED_NOISE
        for m in (1, 2)
    ]
    res = est_of(trials)
    s = only_group(res)
    assert (s["k"], s["est_budget"]) == (2, 80_000)
    assert any("S = 1" in n for n in res.notes)


def test_json_output_round_trips_with_groups_and_tie_rule():
    res = est_of(grid_trials(known_est_acc, BUDGETS))
    d = json.loads(res.to_json())
    assert d["tie_rule"] == "welch"
    assert d["rule"] == {"name": "welch", "alpha": 0.05, "level": 0.05, "looks": [], "equivalence_pp": 0.5,
                         "error_control": "bh"}
    g = d["groups"][0]
    assert g["group"] == {"dataset": "digits", "family": "resnet", "k": 2, "fit": "floor"}
    assert g["overall"]["est_budget"] == 40_000
    assert [r["epoch"] for r in g["per_epoch"]] == [1, 2, 3, 4]
    assert "0.04M" in res.summary_markdown()


def test_fmt_params_uses_three_significant_digits_in_millions():
    assert fmt_params(123_456) == "0.123M"
    assert fmt_params(12_500_000) == "12.5M"
    assert fmt_params(None) == "n/a"
