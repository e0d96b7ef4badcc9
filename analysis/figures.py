"""Figures in the style of the studies (DESIGN section 6), drawn with matplotlib's Agg backend, saved as PNG (and, when
asked, SVG or PDF).

Every function takes the rows of ONE (dataset, family, k, fit) group, writes `<out_dir>/<stem>.<ext>` for each of its
`formats` (default PNG only, see DEFAULT_FORMATS) and returns the paths in that order. Error bars are the same seed
intervals the EST tie rule uses (see analysis.est).
"""

from __future__ import annotations

import gc
import math
import os
import textwrap
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; must precede any pyplot import elsewhere

import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib._tight_bbox import adjust_bbox  # noqa: E402  (private: pyproject caps matplotlib for it)
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, PathPatch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from analysis.costs import COST_PASS, IN_RUN, prefer_isolated, source_of  # noqa: E402
from analysis.est import (  # noqa: E402
    CATEGORIES,
    CLASS_ORDER,
    EQUIVALENT,
    MISSING,
    TIE,
    TIE_RULE_TEXT,
    UNRESOLVED,
    WIN_CATEGORIES,
    Rule,
    fmt_params,
)
from analysis.store import comparable_latency_ms, distinct_joined, forking_is_safe  # noqa: E402
from spaces.classes import CLASS_COLORS, ENSEMBLE_CLASSES  # noqa: E402  (the same colour in every figure)

CATEGORY_COLORS = {
    **CLASS_COLORS,
    "all ensembles": "#6a3d9a",
    # An answer (the classes agree within the margin): a pale green; an open question: a mid grey, hatched.
    EQUIVALENT: "#c7e9c0",
    UNRESOLVED: "#bdbdbd",
    TIE: "#bdbdbd",
    MISSING: "#ffffff",
}
CATEGORY_ORDER = list(CATEGORIES)
# What each verdict category means, in the heatmap's legend.
CATEGORY_LABELS = {
    EQUIVALENT: "equivalent (within ±{margin:g} pp)",
    UNRESOLVED: "unresolved (more seeds needed)",
    TIE: "tie (seed intervals overlap)",
}
# The formats a figure can be written in: PNG (what the report page shows), and vector files for a paper (SVG, with its
# text kept as text; PDF).
FORMATS = ("png", "svg", "pdf")
# PNG only unless asked: a report is looked at, in its page, each time the analysis is rerun, and a vector copy of every
# figure costs about 40% more drawing time (108-135 figures at the More-or-Less scale, issue 23); vector files are for
# the figures that go into a paper, asked for with `--formats png,svg` or `png,pdf`. Our choice.
DEFAULT_FORMATS = ("png",)


def check_formats(formats: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return `formats` as a tuple without repeats, PNG first; raise ValueError in one line if one is not in FORMATS or
    PNG is missing (the report page shows the PNGs)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"figure formats: {', '.join(map(repr, unknown))} not allowed; allowed: {', '.join(FORMATS)}")
    if "png" not in formats:
        raise ValueError(f"figure formats {','.join(formats)} lack png, which the report page shows; e.g. png,svg")
    return tuple(dict.fromkeys(["png", *formats]))


# Fewer figures than this are drawn in the calling process: starting a worker (importing matplotlib) costs about as
# much as drawing a few figures. Our choice, from the issue-23 benchmark on 2 cores.
MIN_FIGURES_PER_WORKER = 8


def default_jobs() -> int:
    """Return the number of processes that draw figures: the CPUs this process may use (at most 8)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus))


def _draw(task: tuple[str, tuple], formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:
    name, args = task
    return globals()[name](*args, formats=formats)


def draw_many(tasks: list[tuple[str, tuple]], jobs: int | None = None,
              formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[list[Path]]:  # fmt: skip
    """Draw figures, each task (name of a figure function of this module, its positional args), in `formats`; return
    each one's paths (one per format) in the tasks' order. See `Drawing` for where they are drawn."""
    drawing = Drawing(len(tasks), jobs, formats)
    for name, args in tasks:
        drawing.add(name, args)
    return drawing.wait()


class Drawing:
    """Figures handed over one by one (`add`) and drawn while the caller works on; `wait` returns their paths.

    With `jobs` > 1 (default `default_jobs()`) and at least MIN_FIGURES_PER_WORKER of the `expected` figures per
    worker, the figures are drawn in that many forked processes, from the first `add` on: matplotlib's drawing is
    single-threaded, and a report of 27 groups draws over 100 figures. Only where forking is safe and cheap (a platform
    with fork, and no other Python thread in this process: a sweep's Ray client holds some); elsewhere they are drawn
    here, one after another, in `wait`.
    """

    def __init__(self, expected: int, jobs: int | None = None, formats: tuple[str, ...] = DEFAULT_FORMATS) -> None:
        jobs = default_jobs() if jobs is None else jobs
        self.jobs = min(jobs, expected // MIN_FIGURES_PER_WORKER)
        self.formats = formats
        self.pool = None
        self.items: list = []  # futures (drawn by the workers) or tasks (drawn in `wait`), in the order added
        if self.jobs > 1 and forking_is_safe():
            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=get_context("fork"))

    def add(self, name: str, args: tuple) -> int:
        """Hand over one figure (the name of a figure function of this module, its positional args); return its index
        in `wait`'s list."""
        if self.pool is None:
            self.items.append((name, args))
            return len(self.items) - 1
        first = not self.items
        # The workers fork at the first submit, before the pool's own thread starts, with this process's objects
        # frozen (gc.freeze): the workers' garbage collections then skip the objects they inherit (about 180,000 at the
        # More-or-Less scale; collecting them took a tenth of the drawing time) and leave their pages shared. Unfrozen
        # here at once.
        if first:
            gc.freeze()
        try:
            self.items.append(self.pool.submit(_draw, (name, args), self.formats))
        finally:
            if first:
                gc.unfreeze()
        return len(self.items) - 1

    def wait(self) -> list[list[Path]]:
        """Return each figure's paths (one per format) in the order added, once all are drawn; shut the workers
        down (also when a figure fails)."""
        if self.pool is None:
            return [_draw(t, self.formats) for t in self.items]
        try:
            return [f.result() for f in self.items]
        finally:
            self.pool.shutdown(cancel_futures=True)


def group_title(dataset: str, family: str, k: int, fit: str | None = None) -> str:
    """Return the figure title naming dataset, family and k (and the fit rule when given)."""
    fit_txt = f", fit={fit}" if fit else ""
    return f"{dataset} / {family} / k={k}{fit_txt}"


def _new_figure(width: float, height: float) -> Figure:
    # Figure() without pyplot: no global state, safe to call from a sweep process.
    sns.set_theme(style="whitegrid", context="notebook")
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _pixel_box(box: Bbox, dpi: float) -> tuple[Bbox, tuple[int, int, int, int]]:
    """Return `box` (inches) grown to whole pixels at `dpi`, and its pixel bounds (x0, y0, x1, y1; origin at the
    bottom left)."""
    x0, y0 = math.floor(box.x0 * dpi), math.floor(box.y0 * dpi)
    x1, y1 = math.ceil(box.x1 * dpi), math.ceil(box.y1 * dpi)
    return Bbox([[x0 / dpi, y0 / dpi], [x1 / dpi, y1 / dpi]]), (x0, y0, x1, y1)


# Drawn around the figure (inches, beyond savefig's padding) so that what reaches a little past its edge (a long axis
# label) is on the canvas too; what reaches further is drawn again by savefig. Our choice: our labels reach 0.01 in.
CANVAS_MARGIN_INCHES = 0.25


def _save(fig: Figure, out_dir: Path, stem: str, formats: tuple[str, ...]) -> list[Path]:
    """Write `fig` as `<out_dir>/<stem>.<ext>` for each of `formats`, cut to its tight box; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Laid out, drawn and measured once, as savefig(bbox_inches="tight") would lay it out but without its extra draws:
    # the constrained layout runs at the figure's size, then the figure is drawn once on a canvas a margin larger
    # (savefig's own way of drawing a box other than the figure), and the tight box is measured there. The box is
    # savefig's: the tight one (axis labels wider than narrow axes stay whole), padded as savefig pads it, here grown to
    # whole pixels. The PNG is that box cut from the canvas, the same pixels savefig(bbox_inches=box) draws (a
    # whole-pixel box moves nothing between pixels; only hatch patterns, tiled from the canvas corner, start at
    # another phase; tests/analysis/test_figures.py checks it). Other formats are drawn for the same box.
    canvas = FigureCanvasAgg(fig)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    fig.set_layout_engine("none")
    dpi, pad = fig.dpi, matplotlib.rcParams["savefig.pad_inches"]
    frame, (fx0, fy0, fx1, fy1) = _pixel_box(fig.bbox_inches.padded(pad + CANVAS_MARGIN_INCHES), dpi)
    restore = adjust_bbox(fig, frame, canvas.get_renderer())
    try:
        canvas.draw()
        # Inches from the canvas's lower left corner, in whole pixels.
        _, (x0, y0, x1, y1) = _pixel_box(fig.get_tightbbox(canvas.get_renderer()).padded(pad), dpi)
        pixels = np.asarray(canvas.buffer_rgba())
    finally:
        restore()
    box = Bbox(np.array([[x0 + fx0, y0 + fy0], [x1 + fx0, y1 + fy0]]) / dpi)
    on_canvas = x0 >= 0 and y0 >= 0 and x1 <= fx1 - fx0 and y1 <= fy1 - fy0
    paths = []
    for ext in formats:
        p = out_dir / f"{stem}.{ext}"
        if ext == "png" and on_canvas:
            _write_png(pixels[pixels.shape[0] - y1 : pixels.shape[0] - y0, x0:x1], p, dpi)
        else:
            with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable, editable
                fig.savefig(p, format=ext, bbox_inches=box)
        paths.append(p)
    return paths


# zlib's level for the PNGs: 3 encodes a figure in about two thirds of the time of Pillow's default 6, for files 3-20%
# larger (measured on the More-or-Less report's heatmaps, cost and time-to-accuracy figures; issue 23). Our choice.
PNG_COMPRESS_LEVEL = 3


def _write_png(rgba: np.ndarray, path: Path, dpi: float) -> None:
    """Write RGBA pixels (rows from the top) as a PNG, as savefig writes one (matplotlib's imsave, its metadata), at
    PNG_COMPRESS_LEVEL."""
    matplotlib.image.imsave(path, rgba, format="png", origin="upper", dpi=dpi,
                            pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})  # fmt: skip


# Horizontal offset between the classes' points at one budget on the log budget axis (a factor of the budget).
DODGE_FACTOR = 1.04


def dodge(budgets: np.ndarray, index: int, count: int) -> np.ndarray:
    """Return the x positions of class `index` of `count` at `budgets` on a log axis: spread symmetrically around
    each budget by DODGE_FACTOR per class, so that error bars at one budget sit side by side."""
    return np.asarray(budgets, dtype=float) * DODGE_FACTOR ** (index - (count - 1) / 2)


# The space a budget's tick label takes along a budget axis (inches): a label such as "0.127M", rotated by 45 degrees,
# spans about 0.5 in of the axis at the figures' font size. Our choice, with a margin: labels closer than this overlap.
BUDGET_LABEL_INCHES = 0.6


def _budget_axis(ax, budgets: list[int], thin: bool = False) -> None:
    """Log x-axis over the budgets, ticks labelled in millions of parameters: one per budget, or with `thin` only as
    many as fit the axes' width at BUDGET_LABEL_INCHES each (`tick_positions`: evenly spread, the first and last
    budget always labelled)."""
    ax.set_xscale("log")
    if thin:
        inches = ax.get_position().width * ax.get_figure().get_figwidth()
        budgets = [budgets[i] for i in tick_positions(len(budgets), max(2, int(inches / BUDGET_LABEL_INCHES)))]
    ax.set_xticks(budgets)
    ax.set_xticklabels([fmt_params(b) for b in budgets], rotation=45, ha="right")
    ax.minorticks_off()
    ax.set_xlabel("parameter budget (parameters, M = 10^6)")


# The frame and hatch of cells whose design is far from its budget: black shows on every class colour.
DEVIATION_EDGE = "#000000"


# The most tick labels an axis of the heatmap carries (a reader cannot read 120 epoch labels), and the largest
# figure it draws (inches): beyond these sizes a grid is drawn smaller, as one image either way.
MAX_TICK_LABELS = {"x": 25, "y": 15}
MAX_HEATMAP_INCHES = (16.0, 9.0)


def tick_positions(n: int, most: int) -> np.ndarray:
    """Return the indices of `n` ordered cells that get a tick label: every one when n <= `most`, else every k-th
    (k the smallest step that keeps at most `most`), always including the last cell."""
    if n <= most:
        return np.arange(n)
    step = -(-(n - 1) // (most - 1))  # ceil: index 0 and the last, with at most `most` labels in all
    picked = np.arange(0, n, step)
    if picked[-1] != n - 1:
        # The last cell replaces the last pick when it is close to it (or the labels are full), else it is added.
        close = len(picked) == most or n - 1 - picked[-1] < step / 2
        picked = np.append(picked[:-1] if close else picked, n - 1)
    return picked


def grid_cells(grid: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (the grid's budgets and epochs, sorted; each row's image row (epoch index) and column (budget index))
    for a budget x epoch image of `grid`'s cells."""
    budgets = np.sort(grid["budget"].astype(int).unique())
    epochs = np.sort(grid["epoch"].astype(int).unique())
    return (budgets, epochs, np.searchsorted(epochs, grid["epoch"].astype(int).to_numpy()),
            np.searchsorted(budgets, grid["budget"].astype(int).to_numpy()))  # fmt: skip


def hatch_grid_cells(ax, rows: np.ndarray, cols: np.ndarray, hatch: str, edgecolor: str, linewidth: float = 0) -> None:
    """Hatch the unit cells at (`rows`, `cols`) of an image drawn with cell centres at integers, as one path of unit
    squares: the hatch is drawn once over all of them, not once per cell (a thousand hatched cells took a second to
    draw as a collection)."""
    x, y = cols - 0.5, rows - 0.5
    corners = np.stack([np.stack([x, y], 1), np.stack([x + 1, y], 1), np.stack([x + 1, y + 1], 1),
                        np.stack([x, y + 1], 1), np.stack([x, y], 1)], 1)  # fmt: skip
    codes = np.tile([MplPath.MOVETO, MplPath.LINETO, MplPath.LINETO, MplPath.LINETO, MplPath.CLOSEPOLY], len(x))
    # add_artist and the cells' extremes as data limits: what add_patch does, without its walk over every segment of
    # the path to find those limits (a tenth of a heatmap's drawing time at 20 budgets x 120 epochs).
    ax.add_artist(PathPatch(MplPath(corners.reshape(-1, 2), codes), facecolor="none", hatch=hatch,
                            edgecolor=edgecolor, linewidth=linewidth))  # fmt: skip
    if len(x):
        ax.update_datalim([(x.min(), y.min()), (x.max() + 1, y.max() + 1)])


def winner_heatmap(grid: pd.DataFrame, title: str, out_dir: Path, stem: str, note: str = "", *,
                   formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:  # fmt: skip
    """Draw the discrete winner heatmap (x = budget, y = epoch, one colour per category); return the paths written
    (one per format, in `formats`' order).

    `grid` holds one group's rows of `analysis.est.winner_grid` (budget, epoch, winner, assessable). The grid is one
    image (one pixel block per cell, whatever its size), with at most `MAX_TICK_LABELS` labels per axis. The per-epoch
    EST is outlined with a black step line; "unresolved" cells are dotted grey, apart from the pale green
    "equivalent" ones; cells with a 1-seed class are hatched; cells where a deciding design is further than the
    grid's `max_budget_deviation_pct` from its budget (`over_budget_deviation`) are cross-hatched in black, with a
    legend entry; where dct appears, the legend says it is compared at its real parameter count. Categories and
    colours are `CATEGORY_ORDER` and `CATEGORY_COLORS`.
    """
    budgets, epochs, row, col = grid_cells(grid)
    code = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    mat = np.full((len(epochs), len(budgets)), code[MISSING])
    mat[row, col] = grid["winner"].map(code).to_numpy()
    width = min(MAX_HEATMAP_INCHES[0], max(6.0, 0.9 * len(budgets) + 3.5))
    height = min(MAX_HEATMAP_INCHES[1], max(3.5, 0.35 * len(epochs) + 2.2))
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    cmap = ListedColormap([CATEGORY_COLORS[c] for c in CATEGORY_ORDER])
    norm = BoundaryNorm(np.arange(len(CATEGORY_ORDER) + 1) - 0.5, cmap.N)
    ax.imshow(
        mat,
        cmap=cmap,
        norm=norm,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=(-0.5, len(budgets) - 0.5, -0.5, len(epochs) - 0.5),
    )
    def hatch_cells(mask, hatch: str, edgecolor: str, linewidth: float = 0) -> None:
        hatch_grid_cells(ax, row[mask], col[mask], hatch, edgecolor, linewidth)

    winners = grid["winner"].to_numpy()
    unresolved = winners == UNRESOLVED
    if unresolved.any():  # dotted, so an open cell never reads as the pale "equivalent" in grey print
        hatch_cells(unresolved, "..", "#777777")
    by_mean = (winners != MISSING) & ~grid["assessable"].astype(bool).to_numpy()
    if by_mean.any():
        hatch_cells(by_mean, "//", "#444444")
    # Cells comparing a design far from their budget: cross-hatched and framed (kept, but not a fair cell).
    far_mask = grid["over_budget_deviation"].astype(bool).to_numpy() if "over_budget_deviation" in grid else None
    far = grid[far_mask] if far_mask is not None else grid.iloc[:0]
    if not far.empty:
        hatch_cells(far_mask, "xx", DEVIATION_EDGE, 1.2)
    # Per-epoch EST: left edge of the first cell from which every larger budget is an ensemble win.
    wins = np.isin(mat, [code[c] for c in WIN_CATEGORIES if c in code])
    has = mat != code[MISSING]
    xs, ys = [], []
    for i in range(len(epochs)):
        cols = np.flatnonzero(has[i])
        if not len(cols) or not wins[i, cols[-1]]:
            continue
        losing = cols[~wins[i, cols]]
        j0 = cols[cols > losing[-1]][0] if len(losing) else cols[0]
        xs += [j0 - 0.5, j0 - 0.5, np.nan]
        ys += [i - 0.5, i + 0.5, np.nan]
    if xs:
        ax.plot(xs, ys, color="black", linewidth=2.5 if len(epochs) <= 40 else 1.5)  # one line, broken by NaN
    xt, yt = tick_positions(len(budgets), MAX_TICK_LABELS["x"]), tick_positions(len(epochs), MAX_TICK_LABELS["y"])
    ax.set_xticks(xt)
    ax.set_xticklabels([fmt_params(budgets[j]) for j in xt], rotation=45, ha="right")
    ax.set_yticks(yt)
    ax.set_yticklabels([str(epochs[i]) for i in yt])
    ax.set_xlabel("parameter budget (parameters, M = 10^6)")
    ax.set_ylabel("training epochs (epoch)")
    ax.grid(False)
    # The legend lists only what is drawn: the categories of some cell, the EST line where there is one.
    shown = [c for c in CATEGORY_ORDER if (mat == code[c]).any()]
    margin = float(grid["equivalence_pp"].iloc[0]) if "equivalence_pp" in grid and len(grid) else float("nan")
    handles = [Patch(facecolor=CATEGORY_COLORS[c], edgecolor="#666666", hatch=".." if c == UNRESOLVED else None,
                     label=CATEGORY_LABELS.get(c, "{c}").format(margin=margin, c=c)) for c in shown]  # fmt: skip
    if xs:
        handles.append(Line2D([], [], color="black", linewidth=2.5, label="EST (per epoch)"))
    if by_mean.any():
        handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="//", label="1-seed class: by mean"))
    if not far.empty:
        pct = float(far["max_budget_deviation_pct"].iloc[0]) if "max_budget_deviation_pct" in far else float("nan")
        handles.append(Patch(facecolor="white", edgecolor=DEVIATION_EDGE, hatch="xx",
                             label=f"a deciding design > {pct:g}% from its budget"))  # fmt: skip
    if "classes" in grid and grid["classes"].astype(str).str.contains("dct").any():
        handles.append(Line2D([], [], linestyle="none", label="dct: compared at its real parameter count\n"
                                                              "(its division rule sets it; never marked)"))
    ax.legend(handles=handles, title="winner", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=True)
    fig.suptitle(f"Winner by budget and epoch — {title}", fontsize=11)
    if note:
        # Wrapped: the heatmap axes are narrower than the note, and a long line is clipped at the figure edge.
        ax.set_title(textwrap.fill(note, 60), fontsize=8)
    return _save(fig, out_dir, stem, formats)


# Each comparison's verdict in `class_verdicts_heatmap`: its colour and legend label (a win in the class's colour, a
# loss in single's; the pale green and dotted grey of the winner heatmap for the two non-decisions).
VERDICT_ORDER = ("wins", "loses", EQUIVALENT, UNRESOLVED, MISSING)


def class_verdicts_heatmap(grid: pd.DataFrame, title: str, out_dir: Path, stem: str, note: str = "", *,
                           formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:  # fmt: skip
    """Draw one panel per ensemble class: the verdict of its own test against single in each cell (x = budget,
    y = epoch; wins / loses / equivalent / unresolved); return the paths written (one per format, in `formats`' order).

    The winner heatmap's category needs every class decided (one open class leaves the cell open), so this figure
    shows what the seeds did decide, comparison by comparison: the `verdict_<class>` columns of
    `analysis.est.winner_grid` under the "welch" rule, with the same per-look levels and error control. A grid
    without those columns (an overlap rule) draws nothing and returns [].
    """
    classes = [r for r in ENSEMBLE_CLASSES if f"verdict_{r}" in grid and grid[f"verdict_{r}"].notna().any()]
    if not classes:
        return []
    budgets, epochs, row, col = grid_cells(grid)
    code = {v: i for i, v in enumerate(VERDICT_ORDER)}
    width = min(MAX_HEATMAP_INCHES[0], max(6.5, len(classes) * (0.7 * len(budgets) + 1.6) + 2.8))
    height = min(MAX_HEATMAP_INCHES[1], max(3.6, 0.35 * len(epochs) + 2.4))
    fig = _new_figure(width, height)
    axes = fig.subplots(1, len(classes), sharey=True, squeeze=False)[0]
    margin = float(grid["equivalence_pp"].iloc[0]) if "equivalence_pp" in grid and len(grid) else float("nan")
    shown: dict[str, Patch] = {}
    for ax, r in zip(axes, classes, strict=True):
        verdicts = grid[f"verdict_{r}"].fillna(MISSING).to_numpy(dtype=object)
        mat = np.full((len(epochs), len(budgets)), code[MISSING])
        mat[row, col] = [code.get(v, code[MISSING]) for v in verdicts]
        colors = {"wins": CLASS_COLORS[r], "loses": CLASS_COLORS["single"], EQUIVALENT: CATEGORY_COLORS[EQUIVALENT],
                  UNRESOLVED: CATEGORY_COLORS[UNRESOLVED], MISSING: CATEGORY_COLORS[MISSING]}  # fmt: skip
        cmap = ListedColormap([colors[v] for v in VERDICT_ORDER])
        norm = BoundaryNorm(np.arange(len(VERDICT_ORDER) + 1) - 0.5, cmap.N)
        ax.imshow(mat, cmap=cmap, norm=norm, origin="lower", aspect="auto", interpolation="nearest",
                  extent=(-0.5, len(budgets) - 0.5, -0.5, len(epochs) - 0.5))  # fmt: skip
        open_cells = verdicts == UNRESOLVED
        if open_cells.any():  # dotted, as in the winner heatmap
            hatch_grid_cells(ax, row[open_cells], col[open_cells], "..", "#777777")
        labels = {"wins": f"{r} wins", "loses": f"{r} loses (single wins)",
                  EQUIVALENT: f"equivalent (within ±{margin:g} pp)", UNRESOLVED: "unresolved (more seeds needed)"}
        for v in VERDICT_ORDER[:-1]:
            key = v if v in (EQUIVALENT, UNRESOLVED) else f"{v}:{r}"
            if (mat == code[v]).any() and key not in shown:
                shown[key] = Patch(facecolor=colors[v], edgecolor="#666666", hatch=".." if v == UNRESOLVED else None,
                                   label=labels[v])  # fmt: skip
        # The panels are narrower than a winner heatmap: as many budget labels as the panel's width holds.
        inches = ax.get_position().width * fig.get_figwidth()
        xt = tick_positions(len(budgets), min(MAX_TICK_LABELS["x"], max(2, int(inches / BUDGET_LABEL_INCHES))))
        ax.set_xticks(xt)
        ax.set_xticklabels([fmt_params(budgets[j]) for j in xt], rotation=45, ha="right")
        ax.set_title(f"{r} vs single", fontsize=10)
        ax.grid(False)
    yt = tick_positions(len(epochs), MAX_TICK_LABELS["y"])
    axes[0].set_yticks(yt)
    axes[0].set_yticklabels([str(epochs[i]) for i in yt])
    axes[0].set_ylabel("training epochs (epoch)")
    fig.supxlabel("parameter budget (parameters, M = 10^6)", fontsize=10)
    axes[-1].legend(handles=list(shown.values()), title="verdict", loc="upper left", bbox_to_anchor=(1.03, 1.0),
                    frameon=True)  # fmt: skip
    fig.suptitle(f"Each ensemble class against single — {title}" + (f"\n{textwrap.fill(note, 110)}" if note else ""),
                 fontsize=9)  # fmt: skip
    return _save(fig, out_dir, stem, formats)


def real_params(cells: pd.DataFrame) -> np.ndarray:
    """Return each cell's real parameter count, budget x (1 + budget_deviation_pct / 100) (the budget where the
    deviation is unknown)."""
    deviation = np.nan_to_num(cells["budget_deviation_pct"].to_numpy(float))
    return cells["budget"].to_numpy(float) * (1.0 + deviation / 100.0)


def error_vs_budget(stats: pd.DataFrame, title: str, out_dir: Path, stem: str, epoch: int | None = None,
                    at_params: bool = False, *, formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:  # fmt: skip
    """Draw test error (%) vs budget per class at `epoch` (default: last), members' mean error dotted; return the
    paths written (one per format).

    `stats` holds one group's rows of `analysis.est.cell_stats`; error bars are the tie rule's seed intervals. Each
    class is dodged a little to the side of the budget (a factor, on the log axis) so that error bars do not overlap;
    with `at_params` each design sits at its real parameter count (`real_params`) instead, so an ensemble far under
    its budget shows where it really is (the budgets stay the ticks).
    """
    epoch = int(stats["epoch"].max()) if epoch is None else epoch
    at = stats[stats["epoch"] == epoch]
    fig = _new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    budgets = sorted(int(b) for b in stats["budget"].unique())
    drawn = [cls for cls in CLASS_ORDER if (at["role"] == cls).any()]
    for i, cls in enumerate(drawn):
        c = at[at["role"] == cls].sort_values("budget")
        x = real_params(c) if at_params else dodge(c["budget"].to_numpy(float), i, len(drawn))
        err = 100.0 * (1.0 - c["mean_acc"].to_numpy(float))
        hw = 100.0 * np.nan_to_num(c["hw_acc"].to_numpy(float))
        ax.errorbar(x, err, yerr=hw, color=CLASS_COLORS[cls], marker="o", capsize=3, label=cls)
        if cls in ENSEMBLE_CLASSES and c["member_mean_acc"].notna().any():
            ax.plot(
                x,
                100.0 * (1.0 - c["member_mean_acc"].to_numpy(float)),
                color=CLASS_COLORS[cls],
                linestyle=":",
                marker=".",
                label=f"{cls}: members' mean",
            )
    _budget_axis(ax, budgets)
    if at_params:
        ax.set_xlabel("parameters (each design at its real count; ticks: the budgets)")
    ax.set_ylabel("test error (%)")
    ax.legend(title="class", loc="best", fontsize=9)
    where = "real parameter count" if at_params else "budget"
    ax.set_title(f"Test error at epoch {epoch} by {where} — {title}", fontsize=11)
    return _save(fig, out_dir, stem, formats)


def time_to_accuracy_table(stats: pd.DataFrame, epoch: int | None = None,
                           costs: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """Return per (budget, class) the time (s) to first reach the single network's best accuracy at that budget.

    Target = the best seed-mean test_acc of single over epochs 1..`epoch` (default: all). A class's epochs needed =
    the first epoch whose seed-mean test_acc reaches the target; its time = those epochs x the class's isolated epoch
    time where `costs` (`cost_table`) has one from the cost pass (time_source "cost pass"), else the trials' seed-mean
    cum_time_s at that epoch (time_source "in-run", measured while other trials may have shared the device). NaN
    (`reached` False) if it never does. Columns: budget, role, target_acc (fraction), epoch_reached, time_s, reached,
    time_source.
    """
    if epoch is not None:
        stats = stats[stats["epoch"] <= epoch]
    isolated = {}
    if costs is not None and not costs.empty and "epoch_time_isolated" in costs:
        isolated = {(int(b), r): float(t) for b, r, t in zip(costs["budget"], costs["role"],
                                                            costs["epoch_time_isolated"], strict=True)
                    if pd.notna(t)}  # fmt: skip
    # Group-wise: each budget's target, then per (budget, class) its first epoch at or above it.
    s = stats[stats["role"].isin(CLASS_ORDER)]
    targets = s[s["role"] == "single"].groupby("budget", sort=True)["mean_acc"].max()
    s = s[s["budget"].isin(targets.index)]
    order = {c: i for i, c in enumerate(CLASS_ORDER)}
    s = s.assign(_class=s["role"].map(order)).sort_values(["budget", "_class", "epoch"], kind="stable")
    target = s["budget"].map(targets).to_numpy(float)
    hit = s[s["mean_acc"].to_numpy(float) >= target - 1e-12].drop_duplicates(["budget", "_class"])
    first = {(int(b), r): (int(e), float(t)) for b, r, e, t in zip(hit["budget"], hit["role"], hit["epoch"],
                                                                   hit["cum_time_s"], strict=True)}  # fmt: skip
    rows = []
    for b, cls in s[["budget", "role"]].drop_duplicates().itertuples(index=False):
        reached = first.get((int(b), cls))
        per_epoch = isolated.get((int(b), cls))
        time_s = float("nan")
        if reached is not None:
            time_s = reached[0] * per_epoch if per_epoch is not None else reached[1]
        rows.append(
            {
                "budget": int(b),
                "role": cls,
                "target_acc": float(targets[b]),
                "epoch_reached": reached[0] if reached is not None else None,
                "time_s": time_s,
                "reached": reached is not None,
                "time_source": COST_PASS if per_epoch is not None else IN_RUN,
            }
        )
    return pd.DataFrame(rows, columns=["budget", "role", "target_acc", "epoch_reached", "time_s", "reached",
                                       "time_source"])  # fmt: skip


def time_source_text(tta: pd.DataFrame) -> str:
    """Return which times a time-to-accuracy table holds, in words for a title: "epochs needed x isolated epoch time
    (cost pass)", "in-run training time", or both."""
    words = {COST_PASS: "epochs needed x isolated epoch time (cost pass)", IN_RUN: "in-run training time"}
    sources = [s for s in (COST_PASS, IN_RUN) if "time_source" in tta and (tta["time_source"] == s).any()]
    return " and ".join(words[s] for s in sources) or words[IN_RUN]


def time_to_accuracy(stats: pd.DataFrame, title: str, out_dir: Path, stem: str,
                     costs: pd.DataFrame | None = None, *,
                     formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:  # fmt: skip
    """Draw time-to-accuracy bars (s) per budget and class (`time_to_accuracy_table` with `costs`), an "x never
    reached" mark for missing bars, the times' source in the axis label; return the paths written (one per format)."""
    tta = time_to_accuracy_table(stats, costs=costs)
    # 1.1 in per budget, at most as wide as a heatmap: 20 budgets drew a figure 25 in wide, a strip of small bars.
    fig = _new_figure(min(MAX_HEATMAP_INCHES[0], max(7.0, 1.1 * max(1, tta["budget"].nunique()) + 3)), 4.8)
    ax = fig.add_subplot()
    budgets = sorted(tta["budget"].unique())
    classes = [c for c in CLASS_ORDER if c in set(tta["role"])]
    width = 0.8 / max(1, len(classes))
    ymax = float(np.nanmax(tta["time_s"])) if tta["time_s"].notna().any() else 1.0
    never = False
    column = {b: j for j, b in enumerate(budgets)}
    for i, cls in enumerate(classes):
        c = tta[tta["role"] == cls]
        x = np.array([column[b] for b in c["budget"]], dtype=float) - 0.4 + width * (i + 0.5)
        reached = c["reached"].to_numpy(bool)
        if reached.any():  # one call per class: its bars, labelled once
            ax.bar(x[reached], c["time_s"].to_numpy(float)[reached], width=width, color=CLASS_COLORS[cls], label=cls)
        for xi in x[~reached]:
            never = True
            ax.text(xi, 0.02 * ymax, "×", color=CLASS_COLORS[cls], ha="center", va="bottom", fontsize=14,
                    fontweight="bold")  # fmt: skip
    # Classes that never reached the target anywhere still need a legend entry.
    labelled = {h.get_label() for h in ax.get_legend_handles_labels()[0]}
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color=CLASS_COLORS[c], label=c) for c in classes if c not in labelled]
    if never:
        handles.append(Line2D([], [], linestyle="", marker="x", color="black", label="never reached"))
    ax.set_xticks(range(len(budgets)))
    ax.set_xticklabels([fmt_params(b) for b in budgets], rotation=45, ha="right")
    ax.set_xlabel("parameter budget (parameters, M = 10^6)")
    ax.set_ylabel(textwrap.fill(f"training time to reach single's best accuracy (s): {time_source_text(tta)}", 50),
                  fontsize=9)  # fmt: skip
    ax.set_ylim(0, ymax * 1.15)
    ax.legend(
        handles=handles, title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9
    )  # outside: bars fill the axes
    # Wrapped: centred over axes narrower than the figure (the legend sits outside), a long title reaches the edge.
    ax.set_title(textwrap.fill(f"Time to the single network's best accuracy — {title}", 60), fontsize=11)
    return _save(fig, out_dir, stem, formats)


COST_METRICS = [
    ("epoch_time", "training time per epoch (s), after the first"),
    ("latency_ms_p50", "inference latency, p50 at batch 1 (ms)"),
    ("peak_mem_mb", "peak training memory above baseline (MiB)"),
]

# What peak_mem_mb measures (results/README.md), for the report under the cost figure.
MEMORY_NOTE = (
    "Peak training memory is what training adds to the process: the peak from the start of training to its end "
    "(per-epoch evaluation included) above a baseline taken after the data was loaded and before the networks were "
    "built (CPU: resident memory, VmHWM minus VmRSS; CUDA: the allocator's allocated bytes, so a device-held data set "
    "is left out). Independent ensembles (lambda_cot = 0, sequential execution) train one member at a time within each "
    "batch (member_schedule per_member), so one member's activations are alive at a time, as More-or-Less measures an "
    "ensemble's training memory; co-trained and fused ensembles train jointly."
)


# The trials' own figures, kept beside the chosen ones for contrast, and the isolated epoch time alone (NaN without a
# cost pass row), which the time to accuracy multiplies.
IN_RUN_COSTS = [
    ("epoch_time_in_run", "training time per epoch in the run (s), after the first"),
    ("peak_mem_in_run_mb", "peak training memory in the run above baseline (MiB)"),
    ("epoch_time_isolated", "training time per epoch measured alone (s)"),
]

# Columns cost_table adds beside COST_METRICS (the explorer plots and shows them; the report's figure does not).
EXTRA_COSTS = [
    ("macs_per_sample", "MACs per sample (multiply-accumulates, summed over members)"),
    ("budget_deviation_pct", "budget deviation (%, (params_total - budget) / budget)"),
]


def cost_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Return per (budget, role) the seed means of epoch_time (s), latency_ms_p50 (ms, batch 1: the sweep's
    interleaved reading where the trials have one, `analysis.store.comparable_latency_ms`), peak_mem_mb (MB),
    macs_per_sample (MACs per sample: macs_fvcore, else the design-time macs) and budget_deviation_pct (%).

    Where a trials row has its design point's cost-pass figures (`analysis.costs.with_costs`), epoch_time,
    peak_mem_mb and latency_ms_p50 are those (measured alone); `cost_source` says per row of the result which source
    was used, and epoch_time_in_run / peak_mem_in_run_mb keep the trials' own figures beside them.

    `epoch_time` is epoch_time_s_steady (epochs 2..N: no compilation or cuDNN search in it), or epoch_time_s_mean
    where a trial has no steady time (one epoch, or a store written before the column). `trials` holds one group's
    trials rows (with `role`); only status "ok" rows with a value count. Adds n_trials.
    """
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    if "epoch_time_s_mean" in ok:
        steady = ok["epoch_time_s_steady"] if "epoch_time_s_steady" in ok else pd.Series(float("nan"), index=ok.index)
        in_run = steady.fillna(ok["epoch_time_s_mean"])
        ok = ok.assign(epoch_time_in_run=in_run, epoch_time=prefer_isolated(ok, "epoch_time_isolated_s", in_run))
    if "epoch_time_isolated_s" in ok:
        ok = ok.assign(epoch_time_isolated=ok["epoch_time_isolated_s"].astype(float))
    if "latency_ms_p50" in ok:
        ok = ok.assign(latency_ms_p50=prefer_isolated(ok, "latency_isolated_ms_p50", comparable_latency_ms(ok)))
    if "peak_mem_mb" in ok:
        ok = ok.assign(peak_mem_in_run_mb=ok["peak_mem_mb"].astype(float),
                       peak_mem_mb=prefer_isolated(ok, "peak_mem_isolated_mb", ok["peak_mem_mb"].astype(float)))
    if "macs_fvcore" in ok or "macs" in ok:
        nan = pd.Series(float("nan"), index=ok.index)
        fv, design = ok.get("macs_fvcore", nan).astype(float), ok.get("macs", nan).astype(float)
        ok = ok.assign(macs_per_sample=fv.fillna(design))
    cols = [m for m, _ in COST_METRICS + EXTRA_COSTS + IN_RUN_COSTS if m in ok]
    if ok.empty or not cols:
        return pd.DataFrame(columns=["budget", "role", "n_trials", "cost_source"]
                            + [m for m, _ in COST_METRICS + EXTRA_COSTS + IN_RUN_COSTS])  # fmt: skip
    grouped = ok.groupby(["budget", "role"], sort=True)
    out = grouped[cols].mean()
    out["n_trials"] = grouped.size()
    has_source = "cost_source" in ok
    if has_source:  # analysis.costs.source_of per (budget, role), group-wise
        sources = distinct_joined(ok, ["budget", "role"], "cost_source", " and ", none=IN_RUN)
        out["cost_source"] = pd.Series(sources.reindex(out.index).tolist(), index=out.index)
    else:
        out["cost_source"] = IN_RUN
    return out.reset_index()


def cost_source_note(trials: pd.DataFrame) -> str:
    """Return one sentence saying where the cost figures of `trials` (with `analysis.costs.with_costs` columns) come
    from."""
    source = source_of(trials)
    if source == COST_PASS:
        return ("Costs (epoch time, peak memory, latency; and the time to accuracy, epochs needed x epoch time) are "
                "the cost pass's: each design point measured once, alone on its device (costs table).")  # fmt: skip
    if source == IN_RUN:
        return ("Costs are the trials' in-run figures (no cost pass rows): measured while other trials may have shared "
                "the device.")  # fmt: skip
    return ("Costs are the cost pass's (measured alone) where a design point has a costs row, else the trials' in-run "
            "figures.")  # fmt: skip


def costs(trials: pd.DataFrame, title: str, out_dir: Path, stem: str, *,
          formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Path]:  # fmt: skip
    """Draw per-epoch training time (s), inference latency (ms) and peak memory (MB) vs budget per class; return the
    paths written (one per format)."""
    return _save(costs_figure(trials, title), out_dir, stem, formats)


# Axis labels of the cost figure are wrapped at this many characters: its three panels are short (4.6 in), and a
# longer label reaches past the top of its axes into the title. Our choice.
COST_LABEL_CHARS = 36


def costs_figure(trials: pd.DataFrame, title: str) -> Figure:
    """Return the cost figure of `costs` (not yet laid out or drawn): three panels over the budgets, each with at most
    as many budget labels as its width holds (see `_budget_axis`), axis labels wrapped to COST_LABEL_CHARS."""
    tab = cost_table(trials)
    mem_src = ""
    if "mem_source" in trials and trials["mem_source"].notna().any():
        mem_src = ", ".join(sorted(trials["mem_source"].dropna().astype(str).unique()))
    fig = _new_figure(14.0, 4.6)
    axes = fig.subplots(1, 3)
    budgets = sorted(int(b) for b in tab["budget"].unique())
    legend_at, handles = None, {}
    for ax, (metric, label) in zip(axes, COST_METRICS, strict=True):
        drew = False
        for cls in CLASS_ORDER:
            c = tab[tab["role"] == cls].sort_values("budget")
            if metric not in c or c[metric].isna().all():
                continue
            ax.plot(c["budget"], c[metric], color=CLASS_COLORS[cls], marker="o", label=cls)
            drew = True
        if budgets:
            _budget_axis(ax, budgets, thin=True)
        ax.set_ylabel(textwrap.fill(label + (f" [{mem_src}]" if metric == "peak_mem_mb" and mem_src else ""),
                                    COST_LABEL_CHARS))  # fmt: skip
        if drew:
            legend_at = legend_at or ax
            handles.update({lb: h for h, lb in zip(*ax.get_legend_handles_labels(), strict=True) if lb not in handles})
        else:
            ax.text(0.5, 0.5, "no measurements (no ok trials)", transform=ax.transAxes, ha="center")
    if legend_at is not None:  # one legend for the three panels (a class has one colour in all), in the first drawn
        shown = [c for c in CLASS_ORDER if c in handles]
        legend_at.legend([handles[c] for c in shown], shown, title="class", fontsize=9)
    fig.suptitle(f"Training time, inference latency and memory ({source_of(trials)} costs) — {title}", fontsize=11)
    return fig


def tie_rule_note(rule: Rule | str, seeds: str) -> str:
    """Return the one-line caption saying how cells were decided (the rule, its error control) and how many seeds
    there were."""
    name = rule.name if isinstance(rule, Rule) else rule
    if seeds == "1":
        return ("1 seed: no test can decide a cell (all unresolved)" if name == "welch"
                else "1 seed: ties cannot be assessed; winners by mean only")  # fmt: skip
    if isinstance(rule, Rule):
        return f"seeds per cell: {seeds}; {rule.text()}"
    return f"seeds per cell: {seeds}; tie = {TIE_RULE_TEXT[rule]}"


# cost column -> (x-axis label with unit, short name) of the accuracy-vs-cost figure
COST_AXES = {
    "macs": ("MACs per sample (multiply-accumulates, FLOPs / 2)", "MACs"),
    "latency_ms_p50": ("inference latency, p50 at batch 1 (ms; members one after another)", "latency"),
}


def fixed_design_points(trials: pd.DataFrame, cost: str = "macs") -> pd.DataFrame:
    """Return the fixed designs (ok single/deq/weq/dct trials) that the accuracy-vs-cost figures draw: one row per
    (design_class, members, budget, depth, width) with x = the seed mean of `cost` ("macs": design-time MACs per
    sample; "latency_ms_p50": ms at batch 1) and acc = the seed mean of final_acc (fraction)."""
    cols = ["design_class", "members", "budget", "depth", "width", "x", "acc"]
    ok = trials[(trials["status"] == "ok") & trials["final_acc"].notna()] if "status" in trials else trials
    ok = ok[ok["design_class"].isin(CLASS_ORDER)] if "design_class" in ok else ok.iloc[0:0]
    if ok.empty or cost not in ok:
        return pd.DataFrame(columns=cols)
    pts = ok.groupby(cols[:5], sort=True).agg(x=(cost, "mean"), acc=("final_acc", "mean"))
    return pts.reset_index()


def accuracy_vs_cost(
    trials: pd.DataFrame, query: pd.DataFrame, title: str, out_dir: Path, stem: str, cost: str = "macs", *,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
) -> list[Path]:
    """Draw test accuracy (%) vs a cost, `cost` = "macs" (MACs per sample) or "latency_ms_p50" (ms, batch 1):
    every adaptive sub-network (`query`, rows of
    `analysis.subnets.query_table`: mutual with a marker per resolution, coop with a marker per network; each class's
    Pareto front as a line) next to the fixed designs of the same sweep (`trials`: ok rows, seed-mean final_acc at
    their design-time MACs or measured latency); return the paths written (one per format, in `formats`' order)."""
    from analysis.subnets import of_class, pareto_front

    fig = _new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    mutual = of_class(query, "mutual")
    for i, side in enumerate(sorted(mutual["resolution"].unique(), reverse=True)):
        q = mutual[mutual["resolution"] == side]
        ax.scatter(q[cost], 100.0 * q["acc_mean"], color=CLASS_COLORS["mutual"], marker=markers[i % len(markers)],
                   alpha=0.75, label=f"mutual sub-network, {int(side)} px")  # fmt: skip
    if not mutual.empty:
        front = pareto_front(mutual, cost)
        ax.plot(front[cost], 100.0 * front["acc_mean"], color=CLASS_COLORS["mutual"], linewidth=1.5,
                label="mutual: best front")
    coop = of_class(query, "coop")
    for i, net in enumerate(sorted(coop["network"].dropna().unique()) if "network" in coop else []):
        q = coop[coop["network"] == net]
        ax.scatter(q[cost], 100.0 * q["acc_mean"], color=CLASS_COLORS["coop"], marker=markers[i % len(markers)],
                   alpha=0.75, label=f"coop {net} (depth scales)")  # fmt: skip
    if not coop.empty:
        front = pareto_front(coop, cost)
        ax.plot(front[cost], 100.0 * front["acc_mean"], color=CLASS_COLORS["coop"], linewidth=1.5,
                label="coop: best front")
    fixed = fixed_design_points(trials, cost)
    for cls in CLASS_ORDER:
        pts = fixed[fixed["design_class"] == cls]
        if pts.empty:
            continue
        ax.scatter(pts["x"], 100.0 * pts["acc"], color=CLASS_COLORS[cls], marker="o", s=70, edgecolor="black",
                   label=f"{cls} (fixed design)")  # fmt: skip
    ax.set_xscale("log")
    axis, name = COST_AXES[cost]
    ax.set_xlabel(axis)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Accuracy vs {name}: adaptive sub-networks and fixed designs — {title}", fontsize=11)
    return _save(fig, out_dir, stem, formats)
