"""The adaptive seed policy's decisions (analysis.est.seeds_wanted) on simulated stores: seeds go only to the open
cells on the EST's path, at the looks, up to max; an effect of 1 pp with a 0.5 pp seed std resolves within max while
spending fewer seeds than running max everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.est import Rule, compute_est, open_est_cells, seeds_wanted
from tests.analysis.test_verdicts import epochs_table

LOOKS, MAX = [4, 6, 8], 8
RULE = Rule(looks=(2, *LOOKS))  # the first round (2 seeds) and three looks share alpha


def simulate(lead_pp: float, std_pp: float, n_budgets: int, n_epochs: int = 2, seed: int = 0):
    """Run the policy on a simulated sweep (single and deq, deq better by `lead_pp` everywhere): the first round of 2
    seeds, then each look's extra seeds drawn from the same model. Return (final epochs table, seeds spent, looks)."""
    rng = np.random.default_rng(seed)
    budgets, epochs = np.arange(1, n_budgets + 1) * 10_000, np.arange(1, n_epochs + 1)
    draws = 0.9 + np.array([0.0, lead_pp / 100])[:, None, None, None] \
        + std_pp / 100 * rng.standard_normal((2, n_budgets, n_epochs, MAX))  # fmt: skip
    n = np.full((2, n_budgets), 2)  # seeds per design point (class, budget)
    looks = 0
    while True:
        acc = np.where(np.arange(MAX) < n[:, :, None, None], draws, np.nan)
        table = epochs_table(acc, ("single", "deq"), budgets, epochs)
        wanted = seeds_wanted(table, LOOKS, MAX, rule=RULE)
        if wanted.empty:
            return table, int(n.sum()), looks
        looks += 1
        c = (wanted["design_class"] == "deq").astype(int).to_numpy()
        b = (wanted["budget"].to_numpy() // 10_000 - 1).astype(int)
        assert (wanted["target_seeds"].to_numpy() > n[c, b]).all()  # a look only adds
        n[c, b] = wanted["target_seeds"].to_numpy()


def test_a_1pp_lead_with_half_a_point_of_seed_noise_resolves_within_max_using_fewer_seeds():
    table, spent, looks = simulate(1.0, 0.5, n_budgets=100)
    grid = compute_est(table, rule=RULE, n_boot=0).grid
    final = grid[grid["epoch"] == grid["epoch"].max()]
    resolved = float((final["winner"] != "unresolved").mean())
    everywhere = 2 * 100 * MAX
    print(f"\n1 pp lead, 0.5 pp seed std, 100 budgets x 2 epochs: {resolved:.1%} of final-epoch cells resolved after "
          f"{looks} looks; seeds spent {spent} vs {everywhere} for max ({MAX}) everywhere")  # fmt: skip
    assert resolved >= 0.90
    assert spent < everywhere


def test_no_seeds_are_added_when_every_cell_on_the_path_is_resolved():
    rng = np.random.default_rng(4)  # single leads by 3 pp at every budget, 4 seeds with a 0.2 pp std: all "single"
    acc = 0.9 + np.array([0.03, 0.0])[:, None, None, None] + 0.002 * rng.standard_normal((2, 5, 2, 4))
    table = epochs_table(acc, ("single", "deq"), np.arange(1, 6) * 10_000, np.array([1, 2]))
    assert set(compute_est(table, rule=Rule(), n_boot=0).grid["winner"]) == {"single"}
    assert seeds_wanted(table, LOOKS, MAX, rule=Rule()).empty


def test_look_levels_are_the_obrien_fleming_boundaries_so_two_seeds_are_a_screen():
    spent = RULE.spent()
    # Jennison & Turnbull (2000), Table 2.3 (K = 4, alpha = 0.05): C_B = 2.024, nominal 2(1 - Phi(2.024 sqrt(4/k)))
    assert spent == pytest.approx([5.2e-5, 0.0042, 0.0194, 0.0429], rel=0.03)
    assert list(RULE.level_at(np.array([2, 3, 4, 8, 10]))) == pytest.approx([spent[0], spent[0], spent[1], spent[3],
                                                                               spent[3]])


def test_equal_classes_under_the_adaptive_policy_are_called_a_win_in_at_most_the_nominal_share():
    table, spent, looks = simulate(0.0, 0.5, n_budgets=500, n_epochs=1, seed=3)
    grid = compute_est(table, rule=RULE, n_boot=0).grid
    wins = float(grid["ensembles_win"].mean())
    print(f"\nequal means, adaptive seeds (2 then 4, 6, 8), 500 cells: {wins:.2%} called a win after {looks} looks, "
          f"{spent} trials")  # fmt: skip
    assert wins <= 0.05
    assert spent <= 2 * 500 * MAX


def test_only_open_cells_on_the_est_path_are_extended():
    # At the final epoch: 10k single wins (resolved), 20k unresolved, 30k a win; 20k is open on the path. A second
    # epoch sits before it: its open cells matter only where ensembles win at the final epoch.
    rng = np.random.default_rng(1)
    lead = np.array([[-3.0, -3.0], [0.2, 0.2], [3.0, 0.3]])  # [budget, epoch] in pp
    acc = 0.9 + np.stack([np.zeros((3, 2)), lead / 100])[..., None] + 0.003 * rng.standard_normal((2, 3, 2, 3))
    acc = np.concatenate([acc[..., :3]], axis=-1)
    table = epochs_table(acc[:, :, ::-1], ("single", "deq"), np.array([10_000, 20_000, 30_000]), np.array([1, 2]))
    grid = compute_est(table, rule=Rule(), n_boot=0).grid
    open_cells = open_est_cells(grid)
    assert set(zip(open_cells["budget"], open_cells["epoch"], strict=True)) <= {(20_000, 2), (30_000, 1)}
    wanted = seeds_wanted(table, LOOKS, MAX)
    assert set(wanted["budget"]) <= {20_000, 30_000}
    assert set(wanted["target_seeds"]) == {4}
    assert isinstance(wanted, pd.DataFrame) and set(wanted["design_class"]) == {"single", "deq"}
