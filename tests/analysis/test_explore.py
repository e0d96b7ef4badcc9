"""The explorer page's data and command line: the same numbers as the report and the advisor, bad input, running
trials. The page itself is driven in a real browser in test_explore_browser.py."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from analysis import figures
from analysis.__main__ import main
from analysis.advise import advise
from analysis.est import compute_est
from analysis.explore import (
    display_units,
    encode_column,
    encode_display,
    explorer_data,
    three_digits,
    write_explorer,
)
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


def decode_column(enc, n: int) -> list:
    """The page's `column()` in Python: the values of a compact column (`analysis.explore.encode_column`) of n rows."""
    if isinstance(enc, list):
        return enc
    if "c" in enc:
        return [enc["c"]] * n
    if "d" in enc:
        return [None if i is None else enc["d"][i] for i in decode_column(enc["k"], n)]
    if "bdata" in enc:
        kind = {"i1": "<i1", "i2": "<i2", "i4": "<i4"}[enc["dtype"]]
        out = [None if v == enc.get("null") else int(v) for v in np.frombuffer(base64.b64decode(enc["bdata"]), kind)]
        for i in enc.get("neg0", []):
            out[i] = -0.0
        return out
    out = [None] * n
    for i, v in zip(enc["s"], enc["v"], strict=True):
        out[i] = v
    return out


def cell_column(g: dict, name: str) -> list:
    """One column of a group's heatmap cell table, decoded, as rows of epochs x columns of budgets."""
    t = g["cell_table"]
    nb = len(t["budgets"])
    values = decode_column(t["cols"][name], nb * len(t["epochs"]))
    return [values[i : i + nb] for i in range(0, len(values), nb)]


ROUND_TRIP = {  # columns of every kind encode_column writes, and the kind it chooses
    "constant": ([3, 3, 3, 3], "c"),
    "all missing": ([None, None, None], "c"),
    "strings": (["wins", "loses", None, "wins", "unresolved"], "d"),
    "mostly missing": ([None, 2.5, None, None, None, None, -1, None], "s"),
    "small integers": ([0, -5, None, 127, 3, -0.0], "i1"),
    "integers": ([8400, -10000, None, 87, -0.0, 0], "i2"),
    "large integers": ([40_000, -3, None, 7], "i4"),
    "fractions": ([0.00132, 1.36e-07, None, 1.0], list),
    "booleans": ([True, False, True], list),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_compact_columns_decode_to_the_values_encoded(name):
    values, kind = ROUND_TRIP[name]
    enc = encode_column(values)
    assert json.loads(json.dumps(enc, allow_nan=False)) == enc  # plain JSON
    assert isinstance(enc, list) if kind is list else (kind in enc or enc.get("dtype") == kind)
    back = decode_column(enc, len(values))
    assert back == values and [type(v) for v in back] == [type(v) for v in values]
    assert [math.copysign(1, v) for v in back if v == 0] == [math.copysign(1, v) for v in values if v == 0]


def test_display_units_are_the_digits_python_formats_show():
    values = [84.375, 84.385, 0.125, -0.001, -0.0, 2.675, 1e-9, float("nan"), float("inf"), 99.995]
    units = display_units(values, 2)
    for x, u in zip(values, units, strict=True):
        if not math.isfinite(x):
            assert u is None
        else:  # the integer, read with 2 decimals, is what f"{x:.2f}" prints, "-0.00" included
            assert ("-" if math.copysign(1, u) < 0 else "") + f"{abs(u) / 100:.2f}" == f"{x:.2f}"
    assert three_digits([0.000758347342248017, 1.355364e-07, 1.0, float("nan")]) == [0.000758, 1.36e-07, 1.0, None]
    assert encode_display(values, 2) == encode_column(units)  # the array path writes what the list path writes


def test_heatmap_cells_carry_each_class_mean_spread_seeds_deviation_and_test_as_displayed(data):
    g = group(data, "demo", "resnet")
    t = g["cell_table"]
    assert t["budgets"][2] == "0.04M" and t["epochs"][-1] == 4
    # Epoch 4 (last row), budget 40k (third column): ensembles lead by 3 pp; seeds at -0.2, 0, +0.2 pp.
    at = {name: cell_column(g, name)[-1][2] for name in t["cols"]}
    assert (at["mean_single"], at["std_single"], at["hw_single"], at["n_single"]) == (8400, 20, 50, 3)  # 0.01 %
    assert (at["mean_deq"], at["mean_weq"]) == (8700, 8700)
    assert (at["diff_pp_deq"], at["ci_lo_pp_deq"], at["ci_hi_pp_deq"]) == (300, 255, 345)  # 0.01 pp
    assert at["verdict_deq"] == "wins" and at["p_outperform_deq"] == 100 and 0 < at["p_deq"] < 0.05
    assert t["deviation"]["single"][2] == -20  # 0.1 %
    lines = decode_column(t["est_lines"], len(t["epochs"]))
    assert lines[-1] == "EST line at epoch {epoch}: 0.04M (switchover in (0.02M, 0.04M])"
    heat = g["figs"]["heatmap"]["data"][0]
    assert "text" not in heat and heat["z"][-1][2] == figures.CATEGORY_ORDER.index("all ensembles")


def test_the_page_embeds_the_hover_numbers_not_their_text(store, tmp_path):
    page = write_explorer(store, "demo", tmp_path / "x").read_text()
    assert "84.00%" not in page and "over 3 seeds" not in page and "budget deviation -2.0%" not in page


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
