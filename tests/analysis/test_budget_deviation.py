"""Designs far from their budget are kept but marked wherever they are compared: the winner grid and est.json (a
flag per cell), an EST resting on such a cell, the heatmap (hatched cell and legend entry), the dct table, the
advisor and the explorer's hover."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis import figures, tables
from analysis.advise import advise
from analysis.est import compute_est
from analysis.explore import cell_table
from tests.analysis.synth import assign, frames, grid_trials
from tests.analysis.test_est import BUDGETS, SEED_NOISE, known_est_acc
from tests.analysis.test_explore import cell_column

TITLE = figures.group_title("digits", "resnet", 2, "floor")
SVG = ("png", "svg")  # the SVG keeps its text as text: the tests read the labels there


def trials_with_deviation(cls: str, budget: int, deviation_pct: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The known-EST grid (EST at 40k, 20k below it) with `cls`'s design at `budget` `deviation_pct` % off."""
    t, e = frames(grid_trials(known_est_acc, BUDGETS))
    at = (t["design_class"] == cls) & (t["budget"] == budget)
    t.loc[at, "budget_deviation_pct"] = deviation_pct
    return t, e


def final_cells(res) -> pd.DataFrame:
    return res.grid[res.grid["epoch"] == res.grid["epoch"].max()].set_index("budget")


def test_a_cell_with_a_design_beyond_the_limit_is_flagged_with_its_class():
    res = compute_est(*reversed(trials_with_deviation("weq", 160_000, -30.0)))
    cells = final_cells(res)
    assert bool(cells.loc[160_000, "over_budget_deviation"]) and cells.loc[160_000, "deviating_classes"] == "weq"
    assert not cells.drop(index=160_000)["over_budget_deviation"].any()  # the synthetic -2% elsewhere is fine


def test_a_far_design_that_does_not_decide_the_cell_leaves_it_unmarked():
    def acc(cls, budget, epoch, seed):  # deq wins clearly; weq (+0.3 pp) stays unresolved, so deq decides
        base = 0.8 + SEED_NOISE[seed]
        return {"single": base, "deq": base + 0.03, "weq": base + 0.003}[cls]

    t, e = frames(grid_trials(acc, BUDGETS))
    t.loc[t["design_class"] == "weq", "budget_deviation_pct"] = -30.0
    grid = compute_est(e, t).grid
    assert set(grid["winner"]) == {"deq"}
    assert not grid["over_budget_deviation"].any()
    t.loc[t["design_class"] == "deq", "budget_deviation_pct"] = -30.0
    assert compute_est(e, t).grid["over_budget_deviation"].all()


def test_dct_is_compared_at_its_real_count_and_never_marked(tmp_path):
    t, e = frames(grid_trials(known_est_acc, BUDGETS, classes=("single", "deq", "dct")))
    t.loc[t["design_class"] == "dct", "budget_deviation_pct"] = 13.0  # its division rule's overshoot
    grid = compute_est(e, t).grid
    assert not grid["over_budget_deviation"].any()
    svg = figures.winner_heatmap(grid, TITLE, tmp_path, "dct", formats=SVG)[1].read_text()
    assert "dct: compared at its real parameter count" in svg


def test_the_limit_is_a_parameter():
    t, e = trials_with_deviation("weq", 160_000, -30.0)
    assert not compute_est(e, t, max_budget_deviation_pct=35.0).grid["over_budget_deviation"].any()


def test_est_json_holds_a_flag_per_cell_and_the_limit():
    t, e = trials_with_deviation("deq", 80_000, 12.5)
    data = json.loads(compute_est(e, t).to_json())
    assert data["max_budget_deviation_pct"] == 10.0
    cells = {c["budget"]: c for c in data["groups"][0]["cells"]}
    assert sorted(cells) == BUDGETS
    assert cells[80_000]["over_budget_deviation"] is True and cells[80_000]["deviating_classes"] == "deq"
    assert [b for b, c in cells.items() if c["over_budget_deviation"]] == [80_000]


def test_an_est_resting_on_a_marked_cell_says_so():
    t, e = trials_with_deviation("weq", 40_000, -25.0)  # the EST's own cell
    summary = compute_est(e, t).summary.iloc[0]
    assert summary["est_budget"] == 40_000
    assert bool(summary["est_deviation_marked"])
    assert "further than 10% from its budget" in summary["decision"] and "weq" in summary["decision"]


def test_an_est_away_from_the_marked_cell_is_not_marked():
    t, e = trials_with_deviation("weq", 160_000, -25.0)
    summary = compute_est(e, t).summary.iloc[0]
    assert summary["est_deviation_marked"] is not None and not summary["est_deviation_marked"]
    assert summary["deviating_budgets"] == [160_000]


def test_the_heatmap_hatches_marked_cells_and_names_them_in_the_legend(tmp_path):
    t, e = trials_with_deviation("weq", 160_000, -30.0)
    grid = compute_est(e, t).grid
    marked = figures.winner_heatmap(grid, TITLE, tmp_path, "marked", formats=SVG)[1].read_text()
    clean = figures.winner_heatmap(grid.assign(over_budget_deviation=False), TITLE, tmp_path, "clean",
                                   formats=SVG)[1].read_text()
    assert "a deciding design &gt; 10% from its budget" in marked
    assert "from its budget" not in clean
    # One hatched cell per epoch at 160k, drawn with the deviation colour.
    assert marked.count(figures.DEVIATION_EDGE) > clean.count(figures.DEVIATION_EDGE)


def test_the_explorer_hover_table_marks_the_cell_and_names_the_deviating_class():
    t, e = trials_with_deviation("weq", 160_000, -30.0)
    res = compute_est(e, t, tie_rule="std")
    costs = figures.cost_table(assign(t))
    table = {"cell_table": cell_table(res.grid, res.stats, res.per_epoch, costs, "std")}
    final = {name: cell_column(table, name)[-1] for name in ("marked", "deviating", "max_deviation")}
    assert final["marked"] == [False, False, False, False, True]  # budgets 10k ... 160k at the last epoch
    assert (final["deviating"][-1], final["max_deviation"][-1]) == ("weq", "10")
    assert table["cell_table"]["deviation"]["weq"] == [-20, -20, -20, -20, -300]  # 0.1 %


def test_the_advisor_labels_a_design_beyond_the_limit():
    t, _ = trials_with_deviation("deq", 160_000, -30.0)
    designs = advise(t).designs
    far = designs[designs["over_budget_deviation"]]
    assert set(zip(far["design_class"], far["budget"], strict=True)) == {("deq", 160_000)}
    assert all("beyond the 10% limit" in label for label in far["label"])
    assert not any("beyond" in label for label in designs.loc[~designs["over_budget_deviation"], "label"])


def test_the_dct_table_footnotes_a_design_beyond_the_limit():
    t, _ = frames(grid_trials(known_est_acc, BUDGETS, classes=("single", "dct")))
    t.loc[(t["design_class"] == "dct") & (t["budget"] == 20_000), "budget_deviation_pct"] = -15.0
    tab = tables.dct_table(t)
    text = tables.to_markdown(tab)
    assert text.count("†") == 2  # the marked row and the footnote
    assert "further than 10% from the budget" in text
    assert "†" not in tables.to_markdown(tables.dct_table(frames(grid_trials(known_est_acc, BUDGETS,
                                                                             classes=("single", "dct")))[0]))


def test_the_error_figure_can_place_each_design_at_its_real_parameter_count(tmp_path):
    t, e = trials_with_deviation("weq", 160_000, -30.0)
    stats = compute_est(e, t).stats
    final = stats[(stats["epoch"] == stats["epoch"].max()) & (stats["role"] == "weq")].sort_values("budget")
    x = figures.real_params(final)
    assert x[-1] == 112_000  # 30% under its 160k budget
    assert list(x[:-1]) == pytest.approx(list(final["budget"][:-1] * (1 + final["budget_deviation_pct"][:-1] / 100)))
    text = figures.error_vs_budget(stats, TITLE, tmp_path, "err", at_params=True, formats=SVG)[1].read_text()
    assert "by real parameter count" in text and "each design at its real count" in text
