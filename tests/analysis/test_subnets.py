"""MutualNet query table: accuracy and MACs per (width, resolution) from the store, best under a FLOPs or latency
limit, and the accuracy-vs-MACs figure / report section next to the fixed designs."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import figures
from analysis.report import write_report
from analysis.store import load_subnets, load_trials
from analysis.subnets import best_subnet, pareto_front, query_table
from tests.analysis.synth import make_trial, write_store

# (width_mult, resolution) -> (test_acc of seed 0, of seed 1, MACs per sample, latency ms)
GRID = {
    (0.5, 12): (0.60, 0.62, 100_000, 1.0),
    (0.5, 16): (0.70, 0.72, 180_000, 1.2),
    (0.75, 12): (0.74, 0.76, 220_000, 1.5),
    (0.75, 16): (0.80, 0.80, 400_000, 1.8),
    (1.0, 12): (0.78, 0.78, 410_000, 2.0),
    (1.0, 16): (0.85, 0.87, 700_000, 2.6),
}


def subnet_rows() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for (w, r), (a0, a1, macs, lat) in GRID.items():
            rows.append({"schema_version": 1, "trial_id": f"t{seed}", "point_id": "p", "dataset": "digits",
                         "split": "test", "seed": seed, "design_class": "mutual", "family": "resnet", "depth": 8,
                         "width": 16, "members": 1, "budget": 77_754, "fit": "floor", "epochs": 4, "budget_depth": 8,
                         "budget_width": 16, "width_mult": w, "resolution": r, "test_acc": (a0, a1)[seed],
                         "params": int(77_754 * w * w), "macs": macs, "flops_torch": 2 * macs,
                         "latency_ms_p50": lat + 0.1 * seed, "latency_ms_p90": lat + 0.2, "bn_calib_samples": 256,
                         "device_name": "cpu"})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def store(tmp_path):
    """A store with one mutual trial per seed (subnets rows) beside single trials of the same sweep."""
    df = subnet_rows()
    for tid, part in df.groupby("trial_id"):
        folder = tmp_path / "subnets" / "sweep=demo"
        folder.mkdir(parents=True, exist_ok=True)
        part.to_parquet(folder / f"{tid}.parquet", index=False)
    write_store(tmp_path, "demo", [make_trial("single", 77_754, s, [0.7, 0.82], members=1, macs=700_000)
                                   for s in (0, 1)])  # fmt: skip
    return tmp_path


def test_query_table_gives_seed_mean_accuracy_and_macs_per_width_and_resolution(store):
    table = query_table(load_subnets(str(store), sweep="demo"))
    assert len(table) == len(GRID)
    row = table[(table["width_mult"] == 0.5) & (table["resolution"] == 16)].iloc[0]
    assert row["acc_mean"] == pytest.approx(0.71) and row["macs"] == 180_000 and row["n_seeds"] == 2
    assert list(table["macs"]) == sorted(table["macs"])


def test_best_under_a_flops_limit_is_the_most_accurate_subnet_within_it():
    table = query_table(subnet_rows())
    # 900,000 FLOPs = 450,000 MACs: (0.75, 16) at 0.80 beats (1.0, 12) at 0.78 and every cheaper one.
    best = best_subnet(table, max_macs=900_000 / 2)
    assert (best["width_mult"], best["resolution"]) == (0.75, 16)
    best = best_subnet(table, max_macs=399_999)
    assert (best["width_mult"], best["resolution"]) == (0.75, 12)
    assert (best_subnet(table)["width_mult"], best_subnet(table)["resolution"]) == (1.0, 16)


def test_best_under_a_latency_limit_uses_the_seed_mean_latency():
    table = query_table(subnet_rows())
    best = best_subnet(table, max_latency_ms=1.6)  # (0.75, 12) runs in 1.55 ms on average
    assert (best["width_mult"], best["resolution"]) == (0.75, 12)


def test_nothing_under_the_limit_gives_none():
    assert best_subnet(query_table(subnet_rows()), max_macs=50_000) is None


def test_pareto_front_drops_subnets_that_are_both_costlier_and_less_accurate():
    front = pareto_front(query_table(subnet_rows()))
    assert (1.0, 12) not in set(zip(front["width_mult"], front["resolution"], strict=True))
    assert list(front["acc_mean"]) == sorted(front["acc_mean"])


def test_accuracy_vs_macs_figure_shows_subnets_beside_fixed_designs(store, tmp_path):
    paths = figures.accuracy_vs_cost(load_trials(str(store)), query_table(subnet_rows()), "demo", tmp_path, "acc",
                                     formats=("png", "svg"))
    text = paths[1].read_text()
    for label in ("MACs per sample", "test accuracy (%)", "mutual sub-network, 16 px", "single (fixed design)"):
        assert label in text


def test_report_has_a_mutual_section_when_the_sweep_has_subnets(store, tmp_path):
    page = write_report(store, "demo", tmp_path / "report").read_text()
    assert "MutualNet sub-networks" in page
    assert "best under its MACs: mutual width 1 at 16 px: 86.00%" in page
    assert (tmp_path / "report" / "mutual_query_table.csv").exists()


def test_advise_considers_each_subnet_as_a_candidate(store):
    from analysis.advise import advise
    from analysis.store import load_trials

    trials = load_trials(str(store), sweep="demo")
    a = advise(trials, max_latency_ms=1.6, subnets=load_subnets(str(store), sweep="demo"))
    assert a.best["design_class"] == "mutual"
    assert (a.best["width_mult"], a.best["resolution"]) == (0.75, 12)
    assert "sub-network 0.75x at 12 px" in a.text


def test_accuracy_vs_latency_figure_labels_milliseconds(store, tmp_path):
    paths = figures.accuracy_vs_cost(
        load_trials(str(store)), query_table(subnet_rows()), "demo", tmp_path, "acc_lat", cost="latency_ms_p50",
        formats=("png", "svg"),
    )
    svg = paths[1].read_text()
    assert paths[0].stat().st_size > 0
    assert "inference latency, p50 at batch 1 (ms" in svg and "Accuracy vs latency" in svg


def test_pareto_front_by_latency_keeps_only_rows_nothing_faster_beats():
    rows = pd.DataFrame(
        {"acc_mean": [0.5, 0.7, 0.6, 0.9], "latency_ms_p50": [1.0, 2.0, 3.0, 4.0], "macs": [4, 3, 2, 1]}
    )
    front = pareto_front(rows, cost="latency_ms_p50")
    assert front["latency_ms_p50"].tolist() == [1.0, 2.0, 4.0]
