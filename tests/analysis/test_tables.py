"""The divide-and-co-train table: error, params, GFLOPs at each S and the gain over S = 1, in MD, CSV and LaTeX."""

import pandas as pd
import pytest

from analysis.tables import dct_table, to_latex, to_markdown, write_dct_table
from tests.analysis.synth import frames, make_trial

ERR = {1: 0.20, 2: 0.18, 4: 0.17}  # error fraction per S


def dct_trials(**kw):
    return [
        make_trial("dct", 100_000, s, [1 - ERR[m] + (0.002 if s else -0.002)], members=m, **kw)
        for s in (0, 1)
        for m in (1, 2, 4)
    ]


def test_error_and_gain_over_s1_are_in_percent_and_percentage_points():
    t, _ = frames(dct_trials())
    tab = dct_table(t).set_index("S")
    assert list(tab.index) == [1, 2, 4]
    assert tab.loc[2, "error_pct"] == pytest.approx(18.0)
    assert tab.loc[2, "error_std_pct"] == pytest.approx(0.2828, rel=1e-3)
    assert tab.loc[4, "gain_pp"] == pytest.approx(3.0)
    assert tab.loc[1, "gain_pp"] == pytest.approx(0.0)
    assert tab.loc[2, "params_m"] == pytest.approx(0.098)


def test_gflops_are_the_design_time_conv_and_linear_macs_not_fvcore():
    # DCT paper: GFLOPs count convolution and linear MACs, no BatchNorm; fvcore adds BN and reads about 3% high.
    t, _ = frames(dct_trials(macs=7_000_000_000, macs_fvcore=7_200_000_000))
    tab = dct_table(t)
    assert set(tab["gflops_source"]) == {"macs"}
    assert tab["gflops"].iloc[0] == pytest.approx(7.0)
    assert "design-time conv + linear MACs (macs = flops_torch / 2)" in to_markdown(tab)
    assert "no BatchNorm" in to_markdown(tab)


def test_single_network_stands_in_for_s1_when_the_sweep_has_no_dct_s1():
    trials = [t for t in dct_trials() if t[0]["members"] != 1]
    trials += [make_trial("single", 100_000, s, [0.75]) for s in (0, 1)]
    t, _ = frames(trials)
    tab = dct_table(t).set_index("S")
    assert tab.loc[1, "error_pct"] == pytest.approx(25.0)
    assert tab.loc[2, "gain_pp"] == pytest.approx(7.0)


def test_failed_trials_do_not_count_and_no_dct_rows_give_an_empty_table():
    t, _ = frames(dct_trials() + [make_trial("dct", 100_000, 5, [0.1], members=2, status="diverged")])
    assert dct_table(t).set_index("S").loc[2, "n_seeds"] == 2
    t2, _ = frames([make_trial("single", 100_000, 0, [0.8])])
    assert dct_table(t2).empty


def test_files_are_markdown_csv_and_latex_with_the_gflops_definition_in_the_caption(tmp_path):
    t, _ = frames(dct_trials())
    paths = write_dct_table(t, tmp_path)
    assert sorted(paths) == ["csv", "md", "tex"]
    csv = pd.read_csv(paths["csv"])
    assert list(csv["S"]) == [1, 2, 4]
    md = paths["md"].read_text()
    assert "| 18.00 ± 0.28 |" in md.replace("  ", " ") or "18.00 ± 0.28" in md
    assert "+3.00" in md and "10^9 multiply-accumulates" in md
    tex = paths["tex"].read_text()
    assert tex.startswith("\\begin{table}") and "\\caption{" in tex and "\\label{tab:dct}" in tex
    assert "18.00 $\\pm$ 0.28" in tex and "macs = flops\\_torch / 2" in tex
    assert tex == to_latex(dct_table(t))
