"""Coop (depth-adaptive) sub-networks in the subnets table: a query row per (network, scale), next to mutual rows,
in the accuracy-vs-MACs figure, the report and the advisor."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import figures
from analysis.advise import advise
from analysis.report import write_report
from analysis.store import load_subnets, load_trials
from analysis.subnets import best_subnet, of_class, query_table
from tests.analysis.synth import make_trial, write_store
from tests.analysis.test_subnets import subnet_rows

# (network, scale) -> (test_acc, MACs per sample, latency ms, blocks executed)
COOP = {
    ("teammate_1", 0.5): (0.70, 150_000, 0.9, 4),
    ("teammate_1", 1.0): (0.84, 300_000, 1.7, 6),
    ("teammate_2", 0.5): (0.68, 150_000, 0.9, 4),
    ("teammate_2", 1.0): (0.83, 300_000, 1.7, 6),
    ("leader", 1.0): (0.88, 300_000, 1.7, 6),
}


def coop_rows() -> pd.DataFrame:
    return pd.DataFrame([
        {"schema_version": 1, "trial_id": "c0", "point_id": "pc", "dataset": "digits", "split": "test", "seed": 0,
         "design_class": "coop", "family": "resnet", "depth": 14, "width": 8, "members": 3, "budget": 44_226,
         "fit": "floor", "epochs": 4, "budget_depth": 14, "budget_width": 8, "width_mult": 1.0, "resolution": 16,
         "subnet_kind": "depth", "network": net, "scale": s, "blocks_executed": blocks, "test_acc": acc,
         "params": 20_000 + 4_000 * blocks, "macs": macs, "flops_torch": 2 * macs, "latency_ms_p50": lat,
         "latency_ms_p90": lat + 0.1, "bn_calib_samples": None, "device_name": "cpu"}
        for (net, s), (acc, macs, lat, blocks) in COOP.items()
    ])  # fmt: skip


@pytest.fixture
def store(tmp_path):
    """A store with a coop trial's and two mutual trials' subnets rows beside single trials of the same sweep."""
    folder = tmp_path / "subnets" / "sweep=demo"
    folder.mkdir(parents=True)
    mutual = subnet_rows().assign(subnet_kind="width_resolution")
    for tid, part in pd.concat([mutual, coop_rows()], ignore_index=True).groupby("trial_id"):
        part.to_parquet(folder / f"{tid}.parquet", index=False)
    write_store(tmp_path, "demo", [make_trial("single", 77_754, s, [0.7, 0.82], members=1, macs=700_000)
                                   for s in (0, 1)])  # fmt: skip
    return tmp_path


def test_query_table_has_one_row_per_coop_network_and_scale_beside_the_mutual_grid(store):
    table = query_table(load_subnets(str(store), sweep="demo"))
    coop = of_class(table, "coop")
    assert sorted(zip(coop["network"], coop["scale"], strict=True)) == sorted(COOP)
    assert len(of_class(table, "mutual")) == 6
    row = coop[(coop["network"] == "teammate_1") & (coop["scale"] == 0.5)].iloc[0]
    assert row["acc_mean"] == pytest.approx(0.70) and row["macs"] == 150_000 and row["blocks_executed"] == 4


def test_best_coop_subnet_under_a_macs_limit_is_the_most_accurate_within_it():
    table = query_table(coop_rows())
    best = best_subnet(table, max_macs=200_000)
    assert (best["network"], best["scale"]) == ("teammate_1", 0.5)
    assert best_subnet(table)["network"] == "leader"


def test_accuracy_vs_macs_figure_shows_coop_networks_next_to_mutual_and_fixed_designs(store, tmp_path):
    query = query_table(load_subnets(str(store), sweep="demo"))
    paths = figures.accuracy_vs_cost(load_trials(str(store)), query, "demo", tmp_path, "acc", formats=("png", "svg"))
    text = paths[1].read_text()
    for label in ("coop teammate_1 (depth scales)", "coop: best front", "mutual sub-network, 16 px", "single (fixed"):
        assert label in text


def test_report_has_a_coop_section_and_keeps_the_mutual_one(store, tmp_path):
    page = write_report(store, "demo", tmp_path / "report").read_text()
    assert "Cooperative depth-adaptive sub-networks" in page and "MutualNet sub-networks" in page
    assert "best under its MACs: coop leader at scale 1: 88.00%" in page
    assert "best under its MACs: mutual width 1 at 16 px: 86.00%" in page
    assert (tmp_path / "report" / "coop_query_table.csv").exists()


def test_advise_considers_each_coop_subnet_as_a_candidate(store):
    trials = load_trials(str(store), sweep="demo")
    a = advise(trials, max_latency_ms=1.0, subnets=load_subnets(str(store), sweep="demo"))
    assert a.best["design_class"] == "coop"
    assert (a.best["network"], a.best["scale"]) == ("teammate_1", 0.5)
    assert "teammate_1 at scale 0.5 (4 blocks)" in a.text
