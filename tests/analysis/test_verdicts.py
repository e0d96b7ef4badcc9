"""Verdicts per cell: a Welch test with single, wins / loses / equivalent / unresolved, error control over the grid, the
array implementation against a per-cell reference, and the EST's bootstrap interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import est
from analysis.est import GROUP_KEYS, Rule, adjust_p, compute_est, decide_cells, winner_grid
from tests.analysis.synth import frames, grid_trials
from tests.analysis.test_est import BUDGETS, SEED_NOISE, est_of, known_est_acc


def epochs_table(acc: np.ndarray, classes: tuple[str, ...], budgets: np.ndarray, epochs: np.ndarray) -> pd.DataFrame:
    """An epochs table straight from an array acc[class, budget, epoch, seed] (NaN: no row), the columns EST reads."""
    c, b, e, s = np.meshgrid(np.arange(len(classes)), np.arange(len(budgets)), np.arange(len(epochs)),
                             np.arange(acc.shape[3]), indexing="ij")  # fmt: skip
    keep = np.isfinite(acc)
    cls = np.asarray(classes, dtype=object)[c[keep]]
    df = pd.DataFrame({"design_class": cls, "budget": budgets[b[keep]], "epoch": epochs[e[keep]], "seed": s[keep],
                       "test_acc": acc[keep]})  # fmt: skip
    df["members"] = np.where(df["design_class"] == "single", 1, 2)
    df["trial_id"] = df["design_class"] + "-" + df["budget"].astype(str) + "-" + df["seed"].astype(str)
    return df.assign(dataset="digits", family="resnet", fit="floor")


def null_store(n_seeds: int, rng: np.random.Generator, n_budgets: int = 100, n_epochs: int = 20) -> pd.DataFrame:
    """single and deq with equal means (0.9) and a 0.5 pp seed std: n_budgets x n_epochs cells."""
    acc = 0.9 + 0.005 * rng.standard_normal((2, n_budgets, n_epochs, n_seeds))
    return epochs_table(acc, ("single", "deq"), np.arange(1, n_budgets + 1) * 10_000, np.arange(1, n_epochs + 1))


@pytest.mark.parametrize("error_control", ["bh", "none"])
def test_equal_means_are_called_a_win_in_at_most_the_nominal_share_of_2000_cells(error_control):
    rng = np.random.default_rng(7)
    grid, _, _ = winner_grid(null_store(4, rng), rule=Rule(error_control=error_control))
    assert len(grid) == 2000
    wins = float(grid["ensembles_win"].mean())
    overlap, _, _ = winner_grid(null_store(2, rng), tie_rule="std")
    print(f"\nequal means, 2000 cells: welch ({error_control}, 4 seeds) wins {wins:.2%}; "
          f"overlap rule 'std' at 2 seeds wins {overlap['ensembles_win'].mean():.2%}")
    assert wins <= 0.05
    assert set(grid["winner"]) <= {"deq", "single", "equivalent", "unresolved"}


def test_welch_without_correction_keeps_its_per_comparison_level_under_equal_means():
    # Two-sided level 5%: about 2.5% wins; the test is calibrated, not just conservative.
    grid, _, _ = winner_grid(null_store(4, np.random.default_rng(11)), rule=Rule(error_control="none"))
    assert 0.01 <= grid["ensembles_win"].mean() <= 0.04


def offset_acc(offset: float):
    """deq = single + offset at every cell, seeds -0.2/0/+0.2 pp (sample std 0.2 pp, 3 seeds)."""

    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        return base + (offset if cls == "deq" else 0.0)

    return acc


def one_cell(offset: float, **rule) -> pd.Series:
    res = est_of(grid_trials(offset_acc(offset), [10_000], classes=("single", "deq"), epochs=1), rule=Rule(**rule))
    return res.grid.iloc[0]


def test_a_clear_lead_wins_with_its_welch_interval_and_p_value():
    cell = one_cell(0.03)
    a = [0.8 + v + 0.03 for v in SEED_NOISE.values()]
    b = [0.8 + v for v in SEED_NOISE.values()]
    ref = st.ttest_ind(a, b, equal_var=False)
    lo, hi = ref.confidence_interval(0.95)
    assert cell["winner"] == "deq" and cell["verdict_deq"] == "wins"
    assert cell["p_deq"] == pytest.approx(ref.pvalue, rel=1e-6)
    assert (cell["ci_lo_pp_deq"], cell["ci_hi_pp_deq"]) == pytest.approx((100 * lo, 100 * hi), rel=1e-6)
    assert cell["p_outperform_deq"] == pytest.approx(st.norm.cdf(0.03 / (2**0.5 * 0.002)))


def test_a_clear_deficit_loses_and_single_takes_the_cell():
    cell = one_cell(-0.03)
    assert (cell["winner"], cell["verdict_deq"]) == ("single", "loses")
    assert cell["p_outperform_deq"] < 0.001


def test_equal_means_with_tight_seeds_are_equivalent_inside_the_margin():
    # TOST: (0.5 pp - 0) / 0.1633 pp = 3.06 on 4 df -> p = 0.0187 < 0.05
    cell = one_cell(0.0)
    assert (cell["winner"], cell["verdict_deq"]) == ("equivalent", "equivalent")
    assert cell["p_eq_deq"] == pytest.approx(st.t.sf(0.005 / (2 * 0.002**2 / 3) ** 0.5, 4), rel=1e-3)


def test_a_gap_neither_significant_nor_inside_the_margin_is_unresolved_not_equivalent():
    # +0.3 pp: difference p = 0.14, TOST p = 0.14 -> more seeds needed
    cell = one_cell(0.003)
    assert (cell["winner"], cell["verdict_deq"]) == ("unresolved", "unresolved")
    assert cell["p_deq"] > 0.05 and cell["p_eq_deq"] > 0.05


def test_a_wider_margin_turns_the_same_gap_into_equivalence():
    assert one_cell(0.003, equivalence_pp=1.0)["winner"] == "equivalent"


def test_one_seed_is_unresolved_under_the_welch_rule():
    res = est_of(grid_trials(known_est_acc, BUDGETS, seeds=(1,)))
    assert set(res.grid["winner"]) == {"unresolved"}
    assert res.summary.iloc[0]["tie_note"] == "1 seed: no test can decide a cell"


def test_all_ensembles_needs_every_present_ensemble_class_to_win():
    def acc(cls, budget, epoch, seed):
        base = 0.8 + SEED_NOISE[seed]
        return {"single": base, "deq": base + 0.03, "weq": base + 0.003}[cls]

    res = est_of(grid_trials(acc, BUDGETS))
    assert set(res.grid["winner"]) == {"deq"}
    assert set(res.grid["verdict_weq"]) == {"unresolved"}
    # The class the heatmap shows is tested against its rival too: deq beats weq by 2.7 pp.
    assert set(res.grid["runner_up"]) == {"weq"} and set(res.grid["vs_runner_up_verdict"]) == {"wins"}
    assert res.grid["vs_runner_up_pp"].to_numpy() == pytest.approx(2.7)


def test_adjusted_p_values_match_scipy_benjamini_hochberg_and_holm_per_family():
    rng = np.random.default_rng(3)
    p = rng.random(40) ** 2
    fam = np.repeat([0, 1], 20)
    bh = adjust_p(p, fam, "bh")
    holm = adjust_p(p, fam, "holm")
    for f in (0, 1):
        m = fam == f
        assert bh[m] == pytest.approx(st.false_discovery_control(p[m], method="bh"))
        order = np.argsort(p[m])
        steps = np.maximum.accumulate(p[m][order] * (20 - np.arange(20)))
        assert holm[m][order] == pytest.approx(np.minimum(steps, 1.0))


def reference_grid(epochs: pd.DataFrame, rule: Rule) -> dict[tuple[int, int], dict]:
    """A straightforward per-cell implementation of the Welch rule from the raw seeds (scipy's ttest_ind), for
    comparison: verdict per class and winner per (budget, epoch)."""
    classes = ("deq", "weq", "dct")
    tests = []
    for (b, e), cell in epochs.groupby(["budget", "epoch"]):
        seeds = {c: cell.loc[cell["design_class"] == c, "test_acc"].to_numpy() for c in ("single", *classes)}
        for c in classes:
            if len(seeds[c]) == 0 or len(seeds["single"]) == 0:
                continue
            a, s = seeds[c], seeds["single"]
            row = {"budget": b, "epoch": e, "cls": c, "diff": a.mean() - s.mean(), "p": np.nan, "p_eq": np.nan}
            if len(a) >= 2 and len(s) >= 2:
                row["p"] = st.ttest_ind(a, s, equal_var=False).pvalue
                m = rule.equivalence_pp / 100
                row["p_eq"] = max(st.ttest_ind(a + m, s, equal_var=False, alternative="greater").pvalue,
                                  st.ttest_ind(a - m, s, equal_var=False, alternative="less").pvalue)  # fmt: skip
            tests.append(row)
    t = pd.DataFrame(tests)
    for col in ("p", "p_eq"):
        t[col + "_adj"] = np.nan
        for _, idx in t.groupby("epoch").groups.items():
            ok = t.loc[idx, col].notna()
            if ok.any():
                t.loc[ok[ok].index, col + "_adj"] = st.false_discovery_control(t.loc[ok[ok].index, col], method="bh")
    out: dict[tuple[int, int], dict] = {}
    for (b, e), cell in t.groupby(["budget", "epoch"]):
        verdicts = {}
        for r in cell.itertuples():
            if r.p_adj < rule.level:
                verdicts[r.cls] = "wins" if r.diff > 0 else "loses"
            elif r.p_eq_adj < rule.level:
                verdicts[r.cls] = "equivalent"
            else:
                verdicts[r.cls] = "unresolved"
        v = list(verdicts.values())
        winners = [c for c in classes if verdicts.get(c) == "wins"]
        if winners and len(v) >= 2 and all(x == "wins" for x in v):
            winner = "all ensembles"
        elif winners:
            means = {c: cell.loc[cell["cls"] == c, "diff"].iloc[0] for c in winners}
            winner = max(winners, key=lambda c: (means[c], -classes.index(c)))
        elif "unresolved" in v:
            winner = "unresolved"
        elif "equivalent" in v:
            winner = "equivalent"
        else:
            winner = "single"
        out[(int(b), int(e))] = {"winner": winner, **{f"verdict_{c}": x for c, x in verdicts.items()}}
    return out


def random_cells():
    """Return (classes, budgets, epochs, accuracies [class, budget, epoch, seed]) of a random study: class means differ
    by up to +-1.5 pp per cell, seed std 0.2-1 pp, 1-6 seeds (NaN beyond), no ensemble at 160k, epoch 4 (missing)."""
    rng = np.random.default_rng(5)
    classes = ("single", "deq", "weq", "dct")
    budgets, epochs = np.array([10_000, 20_000, 40_000, 80_000, 160_000, 320_000]), np.arange(1, 9)
    means = 0.9 + 0.015 * rng.uniform(-1, 1, (4, len(budgets), len(epochs), 1))
    acc = means + rng.uniform(0.002, 0.01, (4, len(budgets), len(epochs), 1)) * rng.standard_normal((4, 6, 8, 6))
    acc = np.where(np.arange(6) < rng.integers(1, 7, (4, len(budgets), len(epochs), 1)), acc, np.nan)
    acc[1:, 4, 3] = np.nan
    return classes, budgets, epochs, acc


def test_the_array_grid_matches_a_per_cell_reference_implementation_cell_by_cell():
    classes, budgets, epochs, acc = random_cells()
    acc[2, 1] = np.nan  # weq absent at 20k
    table = epochs_table(acc, classes, budgets, epochs)
    rule = Rule()
    grid, _, _ = winner_grid(table, rule=rule)
    ref = reference_grid(table, rule)
    assert len(grid) == len(budgets) * len(epochs)
    compared = 0
    for cell in grid.to_dict("records"):
        want = ref.get((cell["budget"], cell["epoch"]), {"winner": "missing"})
        assert cell["winner"] == want["winner"], (cell["budget"], cell["epoch"])
        for c in ("deq", "weq", "dct"):
            if f"verdict_{c}" in want:
                assert cell[f"verdict_{c}"] == want[f"verdict_{c}"], (cell["budget"], cell["epoch"], c)
                compared += 1
    assert compared > 100
    assert {"deq", "weq", "dct", "unresolved", "missing"} <= set(grid["winner"])


def test_est_interval_is_a_single_budget_when_every_resample_agrees():
    s = est_of(grid_trials(known_est_acc, BUDGETS)).summary.iloc[0]
    assert (s["est_lo"], s["est_hi"], s["est_found_frac"]) == (40_000, 40_000, 1.0)
    assert s["est_interval"] == "95% interval [0.04M, 0.04M]"


def test_est_interval_widens_when_the_cells_near_the_switchover_are_noisy():
    rng = np.random.default_rng(2)
    noise = {(c, b, s): rng.normal(0, 0.01) for c in ("single", "deq", "weq") for b in BUDGETS for s in range(5)}

    def acc(cls, budget, epoch, seed):
        lead = {10_000: -0.02, 20_000: 0.0, 40_000: 0.01, 80_000: 0.03, 160_000: 0.03}[budget]
        return 0.8 + noise[(cls, budget, seed)] + (0.0 if cls == "single" else lead)

    t, e = frames(grid_trials(acc, BUDGETS, seeds=tuple(range(5)), epochs=1))
    s = compute_est(e, t).summary.iloc[0]
    assert s["status"] == "found"
    assert s["est_lo"] < s["est_hi"]
    assert s["est_lo"] <= s["est_budget"] <= s["est_hi"]


@pytest.mark.parametrize("rule", ["welch", "std"])
def test_est_interval_decided_in_blocks_of_replicates_equals_one_pass(monkeypatch, rule):
    # Ensembles lead by -1.2 .. +1.8 pp over 6 budgets, seeds 1 pp apart: resamples disagree about the EST.
    rng = np.random.default_rng(0)
    lead = (0.006 * np.arange(6) - 0.012)[None, :, None, None] * np.array([0, 1, 1])[:, None, None, None]
    acc = 0.8 + lead + 0.01 * rng.standard_normal((3, 6, 2, 3))
    e = epochs_table(acc, ("single", "deq", "weq"), np.arange(1, 7) * 10_000, np.arange(1, 3))
    monkeypatch.setattr(est, "EST_BOOTSTRAP_BLOCK_DRAWS", 10**9)
    one_pass = est.est_interval(e, Rule(rule), n_boot=300)
    monkeypatch.setattr(est, "EST_BOOTSTRAP_BLOCK_DRAWS", 7 * 54)  # blocks of 7 replicates (54 seed values each)
    blocks = est.est_interval(e, Rule(rule), n_boot=300)
    pd.testing.assert_frame_equal(blocks, one_pass, check_exact=True)
    assert 0 < one_pass["est_found_frac"].iloc[0] < 1  # the replicates disagree: the draws matter


def test_est_json_keeps_unresolved_apart_from_equivalent_with_each_cells_test():
    import json

    def acc(cls, budget, epoch, seed):  # equal at 10k (equivalent), +0.3 pp at 20k (unresolved)
        return 0.8 + SEED_NOISE[seed] + (0.003 if cls == "deq" and budget == 20_000 else 0.0)

    data = json.loads(est_of(grid_trials(acc, [10_000, 20_000], classes=("single", "deq"), epochs=1)).to_json())
    cells = {c["budget"]: c for c in data["groups"][0]["cells"]}
    assert (cells[10_000]["winner"], cells[20_000]["winner"]) == ("equivalent", "unresolved")
    assert cells[20_000]["verdict_deq"] == "unresolved" and cells[20_000]["margin_pp"] == pytest.approx(0.3)
    assert cells[20_000]["ci_lo_pp"] < 0 < cells[20_000]["ci_hi_pp"] and 0.5 < cells[20_000]["p_outperform"] < 1
    assert data["tie_rule_text"].startswith("Welch t-test")


def test_the_bootstraps_winners_only_cells_have_the_full_grids_winners():
    # Random cells decided in full and for their winners only (what each bootstrap replicate needs), under the Welch
    # rule and an overlap rule.
    classes, budgets, epochs, acc = random_cells()
    table = epochs_table(acc, classes, budgets, epochs)
    for rule in (Rule(), Rule("std")):
        _, stats, _ = winner_grid(table, rule=rule)
        full = decide_cells(stats, rule)
        only = decide_cells(stats, rule, winners_only=True)
        assert list(only.columns) == [*GROUP_KEYS, "budget", "epoch", "winner", "ensembles_win"]
        pd.testing.assert_frame_equal(only, full[only.columns])
        assert set(full["winner"]) > {"missing"}
