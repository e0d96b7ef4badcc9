"""The analysis's group-wise array operations give the numbers of the per-group code they replaced, bit for bit, and
the large-grid figure keeps its tick labels readable (issue 23)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.est import _furthest_from_zero, half_width, half_widths
from analysis.figures import MAX_TICK_LABELS, tick_positions, winner_heatmap
from analysis.store import distinct_joined, load_epochs, over_seeds
from tests.analysis.synth import grid_trials, write_store


def random_groups(seed: int = 0, n_groups: int = 400) -> pd.DataFrame:
    """Return rows of groups of 1..14 values (some NaN) with seeds, as over_seeds receives them."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 15, n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    v = rng.random(len(g)) * 0.3 + 0.6
    v[rng.random(len(g)) < 0.05] = np.nan
    return pd.DataFrame({"g": g % 37, "h": g // 37, "seed": rng.integers(0, 5, len(g)), "v": v}).sample(
        frac=1.0, random_state=1)  # fmt: skip


def test_over_seeds_std_is_pandas_series_std_of_each_group_bit_for_bit():
    df = random_groups()
    got = over_seeds(df, ["g", "h"], "v", "mean", "std").set_index(["g", "h"])["std"]
    want = df.groupby(["g", "h"], sort=True)["v"].apply(lambda s: s.std(ddof=1) if len(s) > 1 else np.nan)
    assert len(got) == len(want)
    np.testing.assert_array_equal(got.to_numpy(), want.reindex(got.index).to_numpy())


def test_over_seeds_keeps_first_appearance_order_without_sort():
    df = pd.DataFrame({"k": ["b", "a", "b", "a"], "seed": [0, 0, 1, 1], "v": [1.0, 2.0, 3.0, 6.0]})
    out = over_seeds(df, ["k"], "v", "m", "s", sort=False)
    assert out["k"].tolist() == ["b", "a"]
    assert out["s"].tolist() == [np.sqrt(2.0), np.sqrt(8.0)]


def test_half_widths_are_half_width_of_each_pair():
    std = np.array([0.01, 0.02, np.nan, 0.03, 0.0])
    n = np.array([3, 1, 4, 12, 2])
    for rule in ("std", "ci95"):
        want = [half_width(s, k, rule) for s, k in zip(std, n, strict=True)]
        np.testing.assert_array_equal(half_widths(std, n, rule), want)


def test_furthest_from_zero_takes_the_first_row_of_largest_magnitude_per_group():
    df = pd.DataFrame({"k": [1, 1, 1, 2, 2, 3], "d": [-3.0, 5.0, -5.0, np.nan, 2.0, np.nan]})
    got = _furthest_from_zero(df, ["k"], "d")
    assert got.loc[1] == 5.0 and got.loc[2] == 2.0 and np.isnan(got.loc[3])


def test_epochs_read_in_one_scan_keep_only_the_asked_columns(tmp_path):
    write_store(tmp_path, "s", grid_trials(lambda c, b, e, s: 0.5 + 0.01 * e, [10_000, 20_000], epochs=3))
    full = load_epochs(tmp_path, "s")
    some = load_epochs(tmp_path, "s", columns=["epoch", "test_acc"])
    assert list(some.columns) == ["sweep", "trial_id", "epoch", "test_acc"]
    pd.testing.assert_frame_equal(some, full[["sweep", "trial_id", "epoch", "test_acc"]])


def test_files_read_batch_by_batch_give_the_rows_and_types_of_one_concatenation(tmp_path, monkeypatch):
    import analysis.store as store_module

    trials = grid_trials(lambda c, b, e, s: 0.8, [10_000, 20_000], epochs=3)
    for i, (_, rows) in enumerate(trials):  # files written over time: a column added, an integer column widened
        for r in rows:
            r["grad_norm"] = 0.5 * i if i % 3 else int(i)
            if i % 2:
                r["ema_acc"] = 0.7
    write_store(tmp_path, "s", trials)
    whole = load_epochs(str(tmp_path), sweep="s")
    monkeypatch.setattr(store_module, "READ_BATCH", 4)
    batched = load_epochs(str(tmp_path), sweep="s")
    pd.testing.assert_frame_equal(batched, whole, check_exact=True)
    assert len(whole) == 18 * 3 and whole["ema_acc"].isna().sum() == 9 * 3 and whole["grad_norm"].dtype == float


def test_distinct_values_are_joined_sorted_per_group_in_order_of_first_appearance():
    df = pd.DataFrame({"k": ["b", "a", "b", "a", "c", "b"], "v": ["in-run", None, "cost pass", None, "x", "in-run"]})
    got = distinct_joined(df, ["k"], "v", " and ", none="in-run")
    assert got.to_dict() == {"b": "cost pass and in-run", "a": "in-run", "c": "x"}
    assert list(got.index) == ["b", "a", "c"]
    reference = df.groupby("k", sort=False)["v"].agg(lambda s: " and ".join(sorted(set(s.dropna()))) or "in-run")
    assert got.tolist() == reference.tolist()


def test_tick_labels_are_at_most_the_limit_and_include_both_ends():
    for n in (1, 7, 15, 16, 20, 50, 120, 121, 500):
        picked = tick_positions(n, 15)
        assert len(picked) <= 15 and picked[0] == 0 and picked[-1] == n - 1
        assert np.all(np.diff(picked) > 0)


def test_a_120_epoch_heatmap_has_at_most_the_readable_number_of_epoch_labels(tmp_path):
    budgets, epochs = [10_000 * 2**i for i in range(20)], list(range(1, 121))
    grid = pd.DataFrame([{"budget": b, "epoch": e, "winner": "single" if e < 60 else "deq", "assessable": True}
                         for b in budgets for e in epochs])  # fmt: skip
    (png,) = winner_heatmap(grid, "g", tmp_path, "heat")
    from PIL import Image

    w, h = Image.open(png).size
    assert h < 1200 and w < 2000  # one image at a bounded size, not 0.35 inch per epoch
    assert len(tick_positions(len(epochs), MAX_TICK_LABELS["y"])) <= 15


def test_figures_drawn_by_worker_processes_come_back_in_the_tasks_order(tmp_path):
    from analysis.figures import MIN_FIGURES_PER_WORKER, draw_many

    grid = pd.DataFrame([{"budget": b, "epoch": e, "winner": "tie", "assessable": True}
                         for b in (10_000, 20_000) for e in (1, 2)])  # fmt: skip
    tasks = [("winner_heatmap", (grid, f"g{i}", tmp_path, f"heat{i}")) for i in range(2 * MIN_FIGURES_PER_WORKER)]
    drawn = draw_many(tasks, jobs=2)
    assert [p[0].name for p in drawn] == [f"heat{i}.png" for i in range(len(tasks))]
    assert all(p.stat().st_size > 0 for paths in drawn for p in paths)
