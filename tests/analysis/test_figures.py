"""Figures: PNG (SVG when asked) written, axes labelled with units, legend names the classes, title names the group."""

import pandas as pd

from analysis import figures
from analysis.est import Rule, compute_est
from tests.analysis.synth import assign, frames, grid_trials
from tests.analysis.test_est import BUDGETS, known_est_acc

TITLE = figures.group_title("digits", "resnet", 2, "floor")
SVG = ("png", "svg")  # the SVG keeps its text as text: the tests read the labels there


def est_and_trials():
    t, e = frames(grid_trials(known_est_acc, BUDGETS, classes=("single", "deq", "weq", "dct")))
    return compute_est(e, t), t


def svg_text(paths):
    png, svg = paths
    assert png.suffix == ".png" and png.stat().st_size > 5_000
    assert svg.suffix == ".svg"
    return svg.read_text()


def test_winner_heatmap_has_budget_and_epoch_axes_and_a_category_legend(tmp_path):
    res, _ = est_and_trials()
    text = svg_text(figures.winner_heatmap(res.grid, TITLE, tmp_path, "heat", formats=SVG))
    for label in ("parameter budget (parameters, M = 10^6)", "training epochs (epoch)", "0.04M", TITLE):
        assert label in text
    drawn = set(res.grid["winner"])
    assert ">EST (per epoch)<" in text
    for category in ("single", "deq", "weq", "dct", "all ensembles", "tie"):
        assert (f">{category}<" in text) == (category in drawn), category


def test_winner_heatmap_legend_lists_only_what_is_drawn(tmp_path):
    res, _ = est_and_trials()
    grid = res.grid.assign(winner="single")  # the single network wins everywhere: no ensemble colour, no EST line
    text = svg_text(figures.winner_heatmap(grid, TITLE, tmp_path, "heat", formats=SVG))
    assert ">single<" in text
    for absent in ("deq", "weq", "dct", "all ensembles", "tie", "EST (per epoch)"):
        assert f">{absent}<" not in text


def test_error_bars_of_the_classes_are_dodged_around_each_budget():
    xs = [float(figures.dodge([10_000], i, 4)[0]) for i in range(4)]
    assert xs == sorted(xs) and len(set(xs)) == 4  # side by side, in class order
    assert abs(xs[0] * xs[3] - 10_000**2) < 1e-3 and abs(xs[1] * xs[2] - 10_000**2) < 1e-3  # centred (log axis)
    assert xs[3] / xs[0] < 1.15  # still read as one budget
    assert float(figures.dodge([10_000], 0, 1)[0]) == 10_000  # one class: on the budget


def test_error_plot_shows_percent_error_per_class_and_members_mean(tmp_path):
    res, _ = est_and_trials()
    text = svg_text(figures.error_vs_budget(res.stats, TITLE, tmp_path, "err", formats=SVG))
    assert "test error (%)" in text and "epoch 4" in text
    assert "deq: members&#39; mean" in text or "deq: members' mean" in text


def test_time_to_accuracy_marks_classes_that_never_reach_the_single_best(tmp_path):
    res, _ = est_and_trials()
    tta = figures.time_to_accuracy_table(res.stats)
    small = tta[tta["budget"] == 10_000].set_index("role")
    assert small.loc["single", "reached"] and not small.loc["deq", "reached"]
    big = tta[tta["budget"] == 160_000].set_index("role")
    assert big.loc["deq", "epoch_reached"] == 2
    assert big.loc["deq", "time_s"] < big.loc["single", "time_s"]
    text = svg_text(figures.time_to_accuracy(res.stats, TITLE, tmp_path, "tta", formats=SVG))
    assert "never reached" in text and "(s)" in text


def test_cost_figure_labels_seconds_milliseconds_and_megabytes(tmp_path):
    _, t = est_and_trials()
    assert svg_text(figures.costs(assign(t), TITLE, tmp_path, "costs", formats=SVG))
    labels = [ax.get_ylabel().replace("\n", " ") for ax in figures.costs_figure(assign(t), TITLE).axes]
    assert labels == ["training time per epoch (s), after the first", "inference latency, p50 at batch 1 (ms)",
                      "peak training memory above baseline (MiB) [rss]"]


def study_cost_trials(n_budgets: int):
    """Trials rows of single, deq and weq at `n_budgets` budgets from 0.1M to 10M (the More-or-Less grid has 20), with
    the memory source the harness records on a CPU (rss)."""
    import numpy as np

    budgets = np.unique(np.round(np.logspace(5, 7, n_budgets)).astype(int))
    rows = [{"budget": int(b), "role": role, "status": "ok", "epoch_time_s_mean": b / 1e5, "latency_ms_p50": b / 1e6,
             "peak_mem_mb": b / 1e4, "mem_source": "rss"} for b in budgets for role in ("single", "deq", "weq")]
    return pd.DataFrame(rows)


def drawn(fig):
    """Lay out and draw `fig` (as `figures._save` does); return its renderer, for the artists' extents."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_cost_figure_memory_label_keeps_its_unit_and_stays_clear_of_the_title():
    fig = figures.costs_figure(study_cost_trials(20), TITLE)
    renderer = drawn(fig)
    title = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        label = ax.yaxis.label.get_window_extent(renderer)
        assert not label.overlaps(title), ax.get_ylabel()
        assert label.y1 <= title.y0
    assert "(MiB) [rss]" in fig.axes[2].get_ylabel()


def test_cost_figure_budget_labels_do_not_overlap_at_the_scale_of_a_study():
    for n_budgets in (5, 8, 12, 20, 50):
        fig = figures.costs_figure(study_cost_trials(n_budgets), TITLE)
        renderer = drawn(fig)
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            shown = [t for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
            boxes = [t.get_window_extent(renderer) for t in shown]
            assert 2 <= len(shown) <= 8, (n_budgets, [t.get_text() for t in shown])
            assert shown[0].get_text() == "0.1M" and shown[-1].get_text() == "10M"  # the range stays labelled
            overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
            assert not overlapping, (n_budgets, [t.get_text() for t in shown])


def test_the_cost_figure_times_epochs_after_the_first_and_falls_back_to_the_mean():
    trials = pd.DataFrame({
        "budget": [1000, 1000], "role": ["single", "deq"], "status": ["ok", "ok"],
        "epoch_time_s_mean": [20.0, 3.0], "epoch_time_s_steady": [2.0, None],  # compiled single; one-epoch deq
        "latency_ms_p50": [1.0, 2.0], "peak_mem_mb": [5.0, 6.0],
    })  # fmt: skip
    tab = figures.cost_table(trials).set_index("role")
    assert tab.loc["single", "epoch_time"] == 2.0 and tab.loc["deq", "epoch_time"] == 3.0


def test_the_cost_table_reads_the_interleaved_latency_where_a_trial_has_one():
    _, t = est_and_trials()
    t = t.assign(role=t["design_class"])
    t.loc[t["design_class"] == "deq", "latency_interleaved_ms_p50"] = 0.25
    tab = figures.cost_table(t).set_index(["role", "budget"])["latency_ms_p50"]
    assert (tab.loc["deq"] == 0.25).all() and (tab.loc["single"] != 0.25).all()


def test_winner_heatmap_shows_unresolved_apart_from_equivalent_with_their_meaning(tmp_path):
    res, _ = est_and_trials()
    grid = res.grid.copy()
    grid["winner"] = ["equivalent" if b < 40_000 else "unresolved" for b in grid["budget"]]
    text = svg_text(figures.winner_heatmap(grid, TITLE, tmp_path, "verdicts", formats=SVG))
    assert "equivalent (within ±0.5 pp)" in text and "unresolved (more seeds needed)" in text
    assert figures.CATEGORY_COLORS["equivalent"] != figures.CATEGORY_COLORS["unresolved"]
    assert ">tie<" not in text


def test_heatmap_caption_names_the_test_and_the_error_control():
    note = figures.tie_rule_note(Rule(error_control="holm"), "3")
    assert note.startswith("seeds per cell: 3; Welch t-test")
    assert "Holm over each epoch's cells" in note


def test_class_verdicts_heatmap_draws_each_classs_own_verdict_in_a_panel_of_its_own(tmp_path):
    # One known verdict per class: deq wins, weq equivalent, dct loses; the winner heatmap would show this cell as a
    # win (any class wins), but the panels keep what each test decided.
    res, _ = est_and_trials()
    grid = res.grid.assign(verdict_deq="wins", verdict_weq="equivalent", verdict_dct="loses")
    text = svg_text(figures.class_verdicts_heatmap(grid, TITLE, tmp_path, "verdicts", formats=SVG))
    for label in ("deq vs single", "weq vs single", "dct vs single", "deq wins", "dct loses (single wins)",
                  "equivalent (within ±0.5 pp)", "training epochs (epoch)", "parameter budget (parameters, M = 10^6)"):
        assert label in text, label
    assert "unresolved (more seeds needed)" not in text and "weq wins" not in text


def test_class_verdicts_heatmap_draws_nothing_under_an_overlap_rule(tmp_path):
    t, e = frames(grid_trials(known_est_acc, BUDGETS, classes=("single", "deq", "dct")))
    grid = compute_est(e, t, rule=Rule("std")).grid
    assert figures.class_verdicts_heatmap(grid, TITLE, tmp_path, "verdicts") == []
    assert not list(tmp_path.iterdir())


def _savefig_png(fig, path):
    """Draw `fig` (laid out already) again with savefig for the whole-pixel tight box `figures._save` used."""
    import matplotlib

    tight = fig.get_tightbbox(fig.canvas.get_renderer())
    box, _ = figures._pixel_box(tight.padded(matplotlib.rcParams["savefig.pad_inches"]), fig.dpi)
    fig.savefig(path, format="png", bbox_inches=box)
    return path


def _pixels(path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path))


def _labelled_figure(ylabel: str):
    import numpy as np

    fig = figures._new_figure(4.0, 2.0)
    ax = fig.add_subplot()
    ax.plot(np.arange(10), np.arange(10) ** 2, marker="o", label="single")
    ax.set_ylabel(ylabel)
    ax.set_xlabel("parameter budget (parameters, M = 10^6)")
    ax.legend(title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def test_png_is_the_pixels_savefig_draws_for_the_same_box(tmp_path):
    fig = _labelled_figure("test error (%)")
    png = figures._save(fig, tmp_path, "f", ("png",))[0]
    assert (_pixels(png) == _pixels(_savefig_png(fig, tmp_path / "ref.png"))).all()


def test_png_keeps_an_axis_label_longer_than_the_figure_is_high(tmp_path):
    # Reaches past the figure's top and bottom edges (as the cost figure's memory label does): drawn on the margin.
    fig = _labelled_figure("peak training memory above baseline (MiB) [rss]")
    png = figures._save(fig, tmp_path, "f", ("png",))[0]
    ref = _pixels(_savefig_png(fig, tmp_path / "ref.png"))
    assert (_pixels(png) == ref).all()
    assert ref.shape[0] > 2.0 * fig.dpi  # taller than the figure: the label is whole


def test_png_of_a_label_far_past_the_margin_is_drawn_by_savefig(tmp_path):
    fig = _labelled_figure("error (%)")
    fig.text(1.3, 0.5, "a note far to the right of the figure")  # further out than CANVAS_MARGIN_INCHES
    png = figures._save(fig, tmp_path, "f", ("png", "svg"))[0]
    ref = _pixels(_savefig_png(fig, tmp_path / "ref.png"))
    assert (_pixels(png) == ref).all()
    assert ref.shape[1] > 4.0 * 1.3 * fig.dpi
    assert "a note far to the right" in (tmp_path / "f.svg").read_text()
