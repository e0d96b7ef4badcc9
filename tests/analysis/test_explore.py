"""The explorer page's data and command line: the same numbers as the report and the advisor, bad input, running
trials. The page itself is driven in a real browser in test_explore_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analysis.__main__ import main
from analysis.advise import advise
from analysis.est import compute_est
from analysis.explore import explorer_data, write_explorer
from analysis.report import read_store
from analysis.store import load_subnets, load_trials
from tests.analysis.synth import grid_trials, make_trial, write_store
from tests.analysis.test_est import SEED_NOISE, known_est_acc
from tests.analysis.test_subnets import subnet_rows

BUDGETS_RESNET = [10_000, 20_000, 40_000, 80_000, 160_000]
BUDGETS_WRN = [30_000, 60_000, 120_000]
CLASS_BONUS = {"single": 0.0, "deq": 0.03, "weq": 0.02, "dct": 0.025}  # distinct, so the advisor has one best


def wrn_acc(cls, budget, epoch, seed):
    """WRN k=4: ensembles win only at the largest budget, each class by its own margin."""
    base = 0.70 + 0.02 * epoch + SEED_NOISE[seed]
    return base + (CLASS_BONUS[cls] if budget >= 120_000 else -CLASS_BONUS[cls])


def demo_store(root: Path) -> Path:
    """Write two sweeps: `demo` with two EST groups (resnet k=2: 5 budgets x 4 epochs; wrn k=4: 3 budgets x 3
    epochs), and `adaptive` with MutualNet sub-networks beside single networks."""
    write_store(root, "demo", grid_trials(known_est_acc, BUDGETS_RESNET, classes=("single", "deq", "weq"), k=2))
    write_store(root, "demo", grid_trials(wrn_acc, BUDGETS_WRN, classes=("single", "deq", "weq", "dct"), epochs=3,
                                          k=4, family="wrn"))  # fmt: skip
    df = subnet_rows().assign(point_id="pm")
    for tid, part in df.groupby("trial_id"):
        folder = root / "subnets" / "sweep=adaptive"
        folder.mkdir(parents=True, exist_ok=True)
        part.to_parquet(folder / f"{tid}.parquet", index=False)
    write_store(root, "adaptive", [make_trial("single", 77_754, s, [0.7, 0.82], members=1, macs=700_000)
                                   for s in (0, 1)])  # fmt: skip
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return demo_store(tmp_path_factory.mktemp("explore") / "store")


@pytest.fixture(scope="module")
def data(store) -> dict:
    return explorer_data(store)


def group(data: dict, sweep: str, family: str) -> dict:
    return next(g for g in data["sweeps"][sweep]["groups"] if g["family"] == family)


def test_heatmap_has_one_cell_per_budget_and_epoch_of_the_est_grid(store, data):
    _, epochs, _ = read_store(store, "demo")
    grid = compute_est(epochs).grid
    for family, (n_budgets, n_epochs) in {"resnet": (5, 4), "wrn": (3, 3)}.items():
        heat = group(data, "demo", family)["figs"]["heatmap"]["data"][0]
        assert heat["type"] == "heatmap"
        assert len(heat["y"]) == n_epochs and all(len(row) == n_budgets for row in heat["z"])
        assert n_budgets * n_epochs == len(grid[grid["family"] == family]) == group(data, "demo", family)["cells"]


def test_heatmap_hover_shows_each_class_mean_and_spread_seeds_deviation_and_the_est_line(data):
    heat = group(data, "demo", "resnet")["figs"]["heatmap"]["data"][0]
    # Epoch 4 (last row), budget 40k (third column): ensembles lead by 3 pp; seeds at -0.2, 0, +0.2 pp.
    text = heat["text"][-1][2]
    assert "budget 0.04M parameters, epoch 4" in text
    assert "single: 84.00% ± 0.20 (95% CI ± 0.50) over 3 seeds, budget deviation -2.0%" in text
    assert "deq: 87.00% ± 0.20 (95% CI ± 0.50) over 3 seeds" in text and "weq: 87.00% ± 0.20" in text
    assert "deq − single: +3.00 pp [+2.55, +3.45]" in text and "P(outperform) 1.00: <b>wins</b>" in text
    assert "EST line at epoch 4: 0.04M (switchover in (0.02M, 0.04M])" in text
    assert "winner: <b>all ensembles</b>" in text


def test_est_sentence_is_the_reports(data):
    assert group(data, "demo", "resnet")["est"].startswith("digits / resnet / k=2, fit=floor: EST = 0.04M parameters")


def test_advisor_candidates_are_analysis_advise_designs_in_its_order(store, data):
    for sweep in ("demo", "adaptive"):
        trials = load_trials(str(store), sweep=sweep)
        subnets = load_subnets(str(store), sweep=sweep)
        designs = advise(trials, subnets=subnets if not subnets.empty else None).designs
        page = data["sweeps"][sweep]["advisor"]
        assert [r[page["columns"].index("label")] for r in page["rows"]] == list(designs["label"])
        lat = page["columns"].index("latency_ms_p50")
        assert [r[lat] for r in page["rows"]] == pytest.approx(list(designs["latency_ms_p50"]))


def test_adaptive_sweep_carries_accuracy_vs_macs_and_latency_of_its_subnetworks(data):
    subs = data["sweeps"]["adaptive"]["subnets"]
    assert set(subs) == {"macs", "latency_ms_p50"}
    names = [t["name"] for t in subs["macs"]["data"]]
    assert "mutual, 16 px" in names and "single (fixed design)" in names
    assert subs["latency_ms_p50"]["layout"]["xaxis"]["title"]["text"].startswith("inference latency, p50")
    assert data["sweeps"]["demo"]["subnets"] is None


def test_cost_axes_name_their_units(data):
    layout = group(data, "demo", "resnet")["figs"]["costs"]["layout"]
    titles = [layout[k]["title"]["text"] for k in ("yaxis", "yaxis2", "yaxis3", "yaxis4")]
    assert titles[0].endswith("(s), after the first") and titles[1].endswith("(ms)")
    assert titles[2].startswith("peak training memory (MB)") and titles[3].startswith("MACs per sample")


def test_group_trials_are_the_groups_rows_with_the_single_baseline(data):
    sweep = data["sweeps"]["demo"]
    rows = [sweep["trials"]["rows"][i] for i in group(data, "demo", "wrn")["trials"]]
    cols = sweep["trials"]["columns"]
    assert len(rows) == 4 * 3 * 3  # 4 classes x 3 budgets x 3 seeds
    assert {r[cols.index("family")] for r in rows} == {"wrn"}
    assert {r[cols.index("design_class")] for r in rows} == {"single", "deq", "weq", "dct"}


def test_page_embeds_its_data_and_loads_plotly_from_beside_it(store, tmp_path):
    page = write_explorer(store, "demo", tmp_path / "x")
    text = page.read_text()
    assert (tmp_path / "x" / "plotly.min.js").stat().st_size > 1_000_000
    assert re.findall(r"<script[^>]*src=\"([^\"]+)\"", text) == ["plotly.min.js"]
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)
    payload = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S).group(1)
    assert list(json.loads(payload)["sweeps"]) == ["demo"]
    assert "test_acc" not in payload  # aggregated tables only: no epoch rows


def test_cli_on_an_empty_store_says_so_in_one_line_and_exits_2(tmp_path, capsys):
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    assert main(["explore", "--store", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no sweeps" in err
    assert not (tmp_path / "x").exists()


def test_cli_on_a_store_that_does_not_exist_says_so_in_one_line_and_exits_2(tmp_path, capsys):
    assert main(["explore", "--store", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: no results store at {tmp_path / 'nothing'}; stores in {tmp_path}: none"
    assert not (tmp_path / "x").exists()


def test_cli_on_an_unknown_sweep_lists_the_sweeps_and_exits_2(store, tmp_path, capsys):
    assert main(["explore", "--store", str(store), "--sweep", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: no sweep 'nope' in the store {store}; it holds: adaptive, demo"


def test_cli_writes_the_page(store, tmp_path, capsys):
    assert main(["explore", "--store", str(store), "--sweep", "adaptive", "--out", str(tmp_path / "x")]) == 0
    assert "explorer written" in capsys.readouterr().out
    assert (tmp_path / "x" / "index.html").exists()


def test_a_sweep_with_only_running_trials_gets_a_page_that_says_so(tmp_path):
    running = [make_trial(c, 20_000, s, [0.7, 0.75], epochs=8, with_trial_row=False)
               for c in ("single", "deq") for s in (0, 1)]  # fmt: skip
    write_store(tmp_path / "s", "live", running)
    text = write_explorer(tmp_path / "s", None, tmp_path / "x").read_text()
    assert "Only running trials: 4 trial(s) have epoch rows but no finished row yet." in text
    status = explorer_data(tmp_path / "s")["sweeps"]["live"]["status"]
    assert status["only_running"] and status["running"] == 4



def test_coop_subnetworks_are_plotted_per_network_with_their_front(tmp_path):
    from tests.analysis.test_subnets_coop import coop_rows

    folder = tmp_path / "s" / "subnets" / "sweep=coop"
    folder.mkdir(parents=True)
    coop_rows().to_parquet(folder / "c0.parquet", index=False)
    write_store(tmp_path / "s", "coop", [make_trial("single", 44_226, 0, [0.7, 0.8], members=1)])
    subs = explorer_data(tmp_path / "s")["sweeps"]["coop"]["subnets"]
    names = [t["name"] for t in subs["macs"]["data"]]
    assert {"coop leader", "coop teammate_1", "coop teammate_2", "coop: best front", "single (fixed design)"} <= set(
        names
    )
