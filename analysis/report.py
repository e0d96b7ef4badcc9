"""One report page per sweep: EST per (dataset, family, k, fit) with its uncertainty, the figures, the DCT table,
and what is missing (failed / diverged / absent trials, missing epochs, unreadable files).

`write_report(store, sweep, out_dir) -> Path` is what run_sweep.py calls at the end of a sweep; it works on a store
that is still being written or holds failed trials, and says what is missing instead of failing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import re
import resource
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import tables
from analysis.est import (
    CLASS_ORDER,
    DEFAULT_RULE,
    GROUP_KEYS,
    MAX_BUDGET_DEVIATION_PCT,
    ESTResult,
    Rule,
    assign_groups,
    compute_est_staged,
    fmt_params,
    fmt_width,
)
from analysis.store import over_seeds
from spaces.classes import ADAPTIVE_CLASSES, ENSEMBLE_CLASSES

IDENTITY = ["design_class", "family", "depth", "width", "members", "budget", "fit", "seed"]


# The epochs table's columns the report and the explorer use (EST, what is missing); the rest (per-member lists,
# losses) is most of the table's bytes and is not read.
EPOCH_COLUMNS = ["trial_id", "schema_version", "dataset", "family", "design_class", "members", "depth", "width",
                 "budget", "fit", "seed", "epochs", "epoch", "test_acc", "member_acc_mean", "cum_time_s",
                 "budget_deviation_pct"]  # fmt: skip


# The share of the trials files read by the forked reader (`read_store`); this process reads the epochs table, then the
# rest. Measured at the More-or-Less scale (3,780 files each; issue 23): a trials file (about 60 columns) took 1.3 ms
# to read, an epochs file (120 rows of the 17 EPOCH_COLUMNS) 0.6 ms, so 70% balances the two processes.
TRIALS_FORKED_SHARE = 0.7


def read_store(
    store: str | Path, sweep: str | None, epoch_columns: list[str] | None = EPOCH_COLUMNS
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Return (trials, epochs, warnings) of one sweep; unreadable files are skipped and named in `warnings`.

    The epochs table holds `epoch_columns` (those it has; None: all of them). Where forking is safe
    (`analysis.store.forking_is_safe`), a forked process reads the first TRIALS_FORKED_SHARE of the trials files while
    this one reads the epochs table and then the rest of the trials files: reading a file costs about a millisecond of
    Python-bound work whatever its size (3,780 one-row trials files took longer than the 453,600 epoch rows), which
    threads do not spread over the cores."""
    from analysis.store import forking_is_safe, frame_of_parts, load_epochs, read_part, table_files

    files = table_files(str(store), "trials", sweep)
    split = round(TRIALS_FORKED_SHARE * len(files)) if forking_is_safe() else 0
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("fork")) if split else None
    try:
        reading = pool.submit(read_part, str(store), files[:split]) if pool else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            epochs = load_epochs(str(store), sweep=sweep, columns=epoch_columns)
        rest, rest_problems = read_part(str(store), files[split:])
        first, first_problems = reading.result() if reading else (None, [])
    finally:
        if pool is not None:
            pool.shutdown()
    trials, cost_warnings = _with_isolated_costs(store, sweep, frame_of_parts([first, rest]))
    # The trials' warnings first, as when the tables were read one after the other.
    return trials, epochs, first_problems + rest_problems + cost_warnings + [str(w.message) for w in caught]


def _with_isolated_costs(store: str | Path, sweep: str | None, trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Return (the trials table `trials` of one sweep, each row with its design point's isolated costs (the cost
    pass's) where the store has them; the warnings raised while reading those)."""
    from analysis.costs import load_costs, with_costs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trials = with_costs(trials, load_costs(str(store), sweep=sweep))
    return trials, [str(w.message) for w in caught]


@contextlib.contextmanager
def timed(steps: dict | None, name: str):
    """Add the wall time (s) of the `with` block to `steps[name]["s"]` and record the process's peak resident memory
    so far (MB, ru_maxrss) in `steps[name]["peak_mb"]`; a no-op when `steps` is None. `analysis.bench` reads these."""
    if steps is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        rec = steps.setdefault(name, {"s": 0.0})
        rec["s"] = round(rec["s"] + time.perf_counter() - t0, 3)
        rec["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def sweeps_in(store: str | Path) -> list[str]:
    """Return the sweep names that have a folder in the store's trials or epochs table."""
    from analysis.store import sweep_names

    return sweep_names(str(store))


def _slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(str(p) for p in parts)).strip("-")


# --- what is missing --------------------------------------------------------------------------------------------


def _lacking_epochs(epochs: pd.DataFrame, info: pd.DataFrame) -> list:
    """Return, sorted, the trial ids of `epochs` whose rows do not cover epochs 1..want, want as `missing_report`
    takes it (the trial's `epochs`, else its last epoch; `epochs_done` for a finished trial that is not ok): group-wise,
    so that only those trials are looked at one by one."""
    first = epochs.drop_duplicates("trial_id").set_index("trial_id")  # each trial's first row, as g.iloc[0]
    want = first["epochs"].astype(float) if "epochs" in first else pd.Series(np.nan, index=first.index)
    want = want.fillna(epochs.groupby("trial_id")["epoch"].max().astype(float))
    if not info.empty and "epochs_done" in info:
        done = info.loc[info.index.intersection(want.index)]
        done = done[(done["status"] != "ok") & done["epochs_done"].notna() & ~done.index.duplicated(keep="last")]
        want.loc[done.index] = done["epochs_done"].astype(float)
    want = np.floor(want)
    seen = epochs[["trial_id", "epoch"]].drop_duplicates()
    e = seen["epoch"].astype(float).to_numpy()
    inside = seen[(e >= 1) & (e <= want.reindex(seen["trial_id"]).to_numpy())]
    have = inside.groupby("trial_id").size().reindex(want.index, fill_value=0)
    return sorted(want.index[have.to_numpy() < want.to_numpy()])


def missing_report(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return tables of what is missing or incomplete; each may be empty.

    "not ok": trials whose status is not "ok" (diverged / error) with their error text.
    "no trials row": trials with epoch rows but no trials row (running, or killed before the end).
    "absent": (class, members, budget, seed) combinations of the grid with no row at all (queued, running, or lost);
      the grid is every class x budget seen for a (dataset, family, fit) times every seed seen in the sweep.
    "missing epochs": trials whose epoch rows do not cover 1..epochs (for non-ok trials: 1..epochs_done).
    """
    out = {}
    cols = ["trial_id"] + [c for c in IDENTITY if c in trials] + ["status", "epochs_done", "epochs", "error"]
    if not trials.empty:
        bad = trials[trials["status"] != "ok"]
        out["not ok"] = bad[[c for c in cols if c in bad]].assign(
            error=lambda d: d["error"].fillna("").astype(str).str.slice(0, 120) if "error" in d else ""
        )
    else:
        out["not ok"] = pd.DataFrame(columns=cols)
    known = set(trials["trial_id"]) if not trials.empty else set()
    if not epochs.empty:
        ep_ids = epochs.groupby("trial_id", sort=True)
        no_row = epochs[~epochs["trial_id"].isin(known)]
        out["no trials row"] = (
            no_row.groupby(["trial_id"] + [c for c in IDENTITY if c in no_row], sort=True)["epoch"]
            .max()
            .rename("last_epoch")
            .reset_index()
        )
    else:
        ep_ids = None
        out["no trials row"] = pd.DataFrame(columns=["trial_id", "last_epoch"])
    out["absent"] = _absent(trials, epochs)
    rows = []
    if ep_ids is not None:
        info = trials.set_index("trial_id") if not trials.empty else pd.DataFrame()
        for tid in _lacking_epochs(epochs, info):
            g = ep_ids.get_group(tid)
            have = set(int(e) for e in g["epoch"])
            want = int(g["epochs"].iloc[0]) if "epochs" in g and pd.notna(g["epochs"].iloc[0]) else max(have)
            if tid in info.index:
                status = info.loc[tid, "status"]
                if status != "ok" and pd.notna(info.loc[tid, "epochs_done"]):
                    want = int(info.loc[tid, "epochs_done"])
            else:
                status = "no trials row"
            lost = sorted(set(range(1, want + 1)) - have)
            if lost:
                r = g.iloc[0]
                rows.append(
                    {
                        "trial_id": tid,
                        **{c: r[c] for c in IDENTITY if c in g},
                        "status": status,
                        "missing_epochs": _ranges(lost),
                    }
                )
        with_epochs = set(epochs["trial_id"])  # once: rebuilt per trial it made 1,600 trials take 4 minutes
        done_no_epochs = [t for t in known if t not in with_epochs]
        for tid in sorted(done_no_epochs):
            r = info.loc[tid]
            if int(r.get("epochs_done", 0) or 0) > 0:
                rows.append(
                    {
                        "trial_id": tid,
                        **{c: r[c] for c in IDENTITY if c in info},
                        "status": r["status"],
                        "missing_epochs": "all (no epoch rows)",
                    }
                )
    out["missing epochs"] = pd.DataFrame(rows)
    return out


def _ranges(xs: list[int]) -> str:
    parts, start = [], None
    for i, x in enumerate(xs):
        if start is None:
            start = x
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            parts.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ", ".join(parts)


def _absent(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    keys = ["dataset", "family", "fit", "design_class", "members", "budget", "seed"]
    frames = [df[keys] for df in (trials, epochs) if not df.empty and all(k in df for k in keys)]
    if not frames:
        return pd.DataFrame(columns=keys)
    seen = pd.concat(frames).drop_duplicates()
    seeds = sorted(seen["seed"].unique())
    rows = []
    for (dataset, family, fit), g in seen.groupby(["dataset", "family", "fit"], sort=True):
        have = set(map(tuple, g[["design_class", "members", "budget", "seed"]].values))
        classes = g[["design_class", "members"]].drop_duplicates().values
        for cls, m in classes:
            for b in sorted(g["budget"].unique()):
                for s in seeds:
                    if (cls, m, b, s) not in have:
                        rows.append(
                            {
                                "dataset": dataset,
                                "family": family,
                                "fit": fit,
                                "design_class": cls,
                                "members": int(m),
                                "budget": int(b),
                                "seed": int(s),
                            }
                        )
    return pd.DataFrame(rows, columns=keys)


# --- the page --------------------------------------------------------------------------------------------------


class _Page:
    """A page as blocks, rendered to Markdown and to HTML from the same content."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, object]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append((f"h{level}", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def img(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def table(self, df: pd.DataFrame, max_rows: int = 50) -> None:
        more = len(df) - max_rows
        self.blocks.append(("table", df.head(max_rows)))
        if more > 0:
            self.p(f"... and {more} more rows (see the CSV files).")

    def markdown(self) -> str:
        out = []
        for kind, x in self.blocks:
            if kind.startswith("h"):
                out.append("#" * int(kind[1]) + " " + x)
            elif kind == "p":
                out.append(x)
            elif kind == "ul":
                out.append("\n".join(f"- {i}" for i in x))
            elif kind == "img":
                out.append(f"![{x[1]}]({x[0]})")
            elif kind == "table":
                out.append(x.to_markdown(index=False, disable_numparse=True) if len(x) else "_(none)_")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}img{max-width:100%}"
            "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
            "</head><body>",
        ]
        for kind, x in self.blocks:
            if kind.startswith("h"):
                out.append(f"<{kind}>{html.escape(x)}</{kind}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(x)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in x) + "</ul>")
            elif kind == "img":
                out.append(f"<img src='{html.escape(x[0])}' alt='{html.escape(x[1])}'>")
            elif kind == "table":
                out.append(x.to_html(index=False, na_rep="") if len(x) else "<p><em>(none)</em></p>")
        out.append("</body></html>")
        return "\n".join(out)


def est_sentence(row: dict, grid: pd.DataFrame) -> str:
    """Return one sentence on a group's overall EST: found (with interval and noise) or not (and why)."""
    from analysis import figures

    name = figures.group_title(row["dataset"], row["family"], row["k"], row["fit"])
    fe = row["final_epoch"]
    if row["status"] == "found":
        e_at = row["est_earliest_epoch"]
        e_txt = f"; at that budget ensembles win from epoch {int(e_at)} on" if pd.notna(e_at) else ""
        boot = f" ({row['est_interval']} over seed resamples)" if row.get("est_interval") else ""
        return (
            f"{name}: EST = {fmt_params(row['est_budget'])} parameters{boot} at the final epoch ({fe}); the "
            f"switchover lies in {row['interval']}{e_txt}. Winner at EST: {row['est_winner']}. {row['decision']}. "
            f"Cells at the final epoch: {row.get('final_verdicts') or 'none'}. "
            f"Seeds: {row['seeds']} ({row['tie_note']})."
        )
    if row["status"] == "none":
        last = grid[(grid["epoch"] == fe) & (grid["winner"] != "missing")].sort_values("budget")
        top = last.iloc[-1] if not last.empty else None
        at_top = f" (at {fmt_params(top['budget'])}: {top['winner']})" if top is not None else ""
        return (
            f"{name}: no EST in the grid — ensembles do not beat the single network at the largest budget "
            f"with data at the final epoch ({fe}){at_top}. Cells at the final epoch: "
            f"{row.get('final_verdicts') or 'none'}. Seeds: {row['seeds']} ({row['tie_note']})."
        )
    return f"{name}: EST cannot be computed ({row['status']})."


def write_report(
    store: str | Path,
    sweep: str | None,
    out_dir: str | Path,
    tie_rule: str = DEFAULT_RULE,
    write_html: bool = True,
    make_figures: bool = True,
    max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
    rule: Rule | None = None,
    steps: dict | None = None,
    figure_jobs: int | None = None,
    formats: tuple[str, ...] | None = None,
) -> Path:
    """Write figures (PNG, and the other `formats`), tables (MD/CSV/TeX), est.json and index.md (+ index.html) to
    out_dir.

    `rule` (an `analysis.est.Rule`, default `Rule(tie_rule)`) decides the cells; the page's caption names it.

    Designs further than `max_budget_deviation_pct` % from their budget are kept and marked: hatched heatmap cells,
    a flag per cell in est.json, a footnote under the tables that hold them.

    Returns the path of index.md. A sweep with no rows yet still gets a page saying so. `make_figures=False` writes
    the text and tables only (a quick look at a running sweep; drawing is most of the time). `steps`, when given, gets
    the wall time and peak memory of each step (load, est, tables, figures, page; see `timed`). The figures are drawn
    in `figure_jobs` processes (default: one per CPU available, see `figures.Drawing`), in `formats` (default
    `figures.DEFAULT_FORMATS`, PNG only; e.g. ("png", "svg") adds vector files; PNG is always written: the page shows
    it). A format not in `figures.FORMATS` raises ValueError before anything is read.
    """
    from analysis import figures  # seaborn/matplotlib load only when a report is drawn

    formats = figures.check_formats(formats or figures.DEFAULT_FORMATS)

    out = Path(out_dir)
    fig_dir = out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    with timed(steps, "load"):
        trials, epochs, load_warnings = read_store(store, sweep)
    page = _Page()
    title = f"Sweep report: {sweep or 'all sweeps'}"
    page.h(1, title)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = store if "://" in str(store) else Path(store).resolve()  # a URI is printed as given
    rule = rule or Rule(tie_rule)
    page.p(f"Store: {where} — generated {now}. Verdicts: {rule.text()}.")
    n_status = trials["status"].value_counts().to_dict() if not trials.empty else {}
    counts = ", ".join(f"{v} {k}" for k, v in sorted(n_status.items())) or "none"
    n_running = len(set(epochs["trial_id"]) - set(trials.get("trial_id", []))) if not epochs.empty else 0
    page.p(
        f"Trials finished: {counts}. Trials with epoch rows but no trials row (running or interrupted): {n_running}."
    )

    with timed(steps, "tables"):
        tg, _ = assign_groups(trials) if not trials.empty else (pd.DataFrame(), [])
    # The groups' cost figures need the trials only: they start drawing (in worker processes) before the cells are
    # decided here, which leaves the other core idle for seconds at the scale of a study (issue 23).
    drawing = figures.Drawing(FIGURES_PER_GROUP * (len(tg.groupby(GROUP_KEYS)) if not tg.empty else 0), figure_jobs,
                              formats)  # fmt: skip
    try:
        early = _early_cost_figures(drawing, tg, fig_dir) if make_figures else {}
        with timed(steps, "est"):
            cells, complete_est = compute_est_staged(epochs, trials if not trials.empty else None, rule=rule,
                                                     max_budget_deviation_pct=max_budget_deviation_pct)  # fmt: skip
        # The groups' sections need the decided cells only: their tables are written and their figures start drawing
        # before the EST's bootstrap runs here; the sections follow the EST's on the page.
        groups = _Page()
        tasks = _group_sections(groups, cells, tg, rule, out, fig_dir, make_figures, max_budget_deviation_pct, steps,
                                drawing, early)  # fmt: skip
        with timed(steps, "est"):
            est = complete_est()
    except BaseException:
        drawing.wait()  # the workers are waited for (and shut down) also when the EST fails
        raise
    page.h(2, "Ensemble Switchover Threshold (EST)")
    if est.summary.empty:
        page.p("No group has both a single network and an ensemble class with epoch rows: EST cannot be computed yet.")
    else:
        page.ul([est_sentence(r, _group_rows(est.grid, r)) for r in est.summary.to_dict("records")])
        page.p(
            "EST = the smallest budget from which ensembles beat the single network at every larger budget in the "
            "grid. The switchover interval runs from the last non-winning budget (exclusive) to the EST; the EST's "
            "95% interval comes from resampling seeds within each cell (stratified bootstrap) and locating it again."
            + (" 'unresolved' cells need more seeds; 'equivalent' cells are an answer (the classes agree within the "
               "margin)." if rule.name == "welch" else " 'tie' cells: the seed intervals overlap.")
        )
        page.table(_md_summary(est))
        if est.summary.get("est_deviation_marked", pd.Series(dtype=bool)).fillna(False).astype(bool).any():
            page.p(f"† The EST rests on a cell (its own or the one below it) where a design's parameter count is "
                   f"further than {max_budget_deviation_pct:g}% from its budget: the comparison there is not at equal "
                   "budgets (see the decision text and the hatched heatmap cells).")  # fmt: skip
        page.p("Files: est.json, est_summary.md/.csv, est_per_epoch.csv, est_earliest_epoch.csv, winner_grid.csv.")
    if est.notes:
        page.p("Notes:")
        page.ul(est.notes)

    offset = len(page.blocks)
    page.blocks += groups.blocks
    tasks = [(block + offset, index) for block, index in tasks]
    page.h(2, "Divide and co-train comparison")
    try:
        with timed(steps, "tables"):
            _write_est(est, out)
            _tables_sections(page, store, sweep, trials, epochs, load_warnings, out, fig_dir, make_figures,
                             max_budget_deviation_pct, formats)  # fmt: skip
    finally:  # the workers are always waited for (and shut down), also when a table fails
        with timed(steps, "figures"):
            drawn = drawing.wait()
    for block, index in tasks:
        alt = page.blocks[block][1][1]
        page.blocks[block] = ("img", (str(drawn[index][0].relative_to(out)), alt))
    for index in early.values():  # a cost figure of a group without an EST section: not part of the report
        for path in drawn[index]:
            path.unlink(missing_ok=True)
    with timed(steps, "page"):
        md_path = out / "index.md"
        md_path.write_text(page.markdown(), encoding="utf-8")
        if write_html:
            (out / "index.html").write_text(page.html(title), encoding="utf-8")
    return md_path


# The figures of a group's section (winner and class-verdict heatmaps, error, time to accuracy, costs): the count
# `figures.Drawing` plans its workers by.
FIGURES_PER_GROUP = 5


def _group_slug(key: dict) -> str:
    return _slug(key["dataset"], key["family"], f"k{key['k']}", key["fit"])


def _early_cost_figures(drawing, tg: pd.DataFrame, fig_dir: Path) -> dict[tuple, int]:
    """Hand the cost figure of each group of the trials `tg` (`assign_groups`) to `drawing`, with the arguments its
    section gives it (`_group_sections`); return {group key as a tuple in GROUP_KEYS' order: the figure's index in
    `drawing`}. A group whose section never comes (no EST group) leaves its index here."""
    from analysis import figures

    early = {}
    if tg.empty:
        return early
    for values in tg[GROUP_KEYS].drop_duplicates().itertuples(index=False):
        key = dict(zip(GROUP_KEYS, values, strict=True))
        trows = _group_rows(tg, key)
        if trows.empty:  # a key that equals no row (a missing value): no figure, as in its section
            continue
        gtitle = figures.group_title(**key)
        early[tuple(values)] = drawing.add("costs", (trows, gtitle, fig_dir, f"{_group_slug(key)}_costs"))
    return early


def _group_sections(page: _Page, est: ESTResult, tg: pd.DataFrame, rule: Rule, out: Path, fig_dir: Path,
                    make_figures: bool, max_budget_deviation_pct: float, steps: dict | None, drawing,
                    early: dict[tuple, int]) -> list:  # fmt: skip
    """Add each EST group's section to `page` (its title, an image block per figure, notes) and write its time to
    accuracy table; hand its figures to `drawing` (`figures.Drawing`), its cost figure unless `early` holds it (it is
    then taken out of `early`); return (index of the page's image block, index of its figure in `drawing`) pairs.
    `tg` is the trials table with its groups (`assign_groups`); `est` needs its cells only (its summary's bootstrap
    interval is not read)."""
    from analysis import figures

    tasks = []  # (index of the page's image block, index of the figure in `drawing`)
    for r in est.summary.to_dict("records"):
        key = {k: r[k] for k in GROUP_KEYS}
        gtitle = figures.group_title(**key)
        slug = _group_slug(key)
        grid, stats = _group_rows(est.grid, r), _group_rows(est.stats, r)
        page.h(2, gtitle)
        note = figures.tie_rule_note(rule, r["seeds"])
        trows = _group_rows(tg, r) if not tg.empty else tg
        with timed(steps, "tables"):
            cost_tab = figures.cost_table(trows) if not trows.empty else None
            tta = figures.time_to_accuracy_table(stats, costs=cost_tab)
            tta.to_csv(out / f"{slug}_time_to_acc.csv", index=False)
        never = tta[~tta["reached"]]
        never_txt = "Never reached the single network's best accuracy: " + (
            "; ".join(f"{c} at {fmt_params(b)}" for b, c in zip(never["budget"], never["role"], strict=True)) or "none"
        )
        if not make_figures:
            page.p(never_txt + ".")
            continue
        made = [
            ("winner heatmap", "winner_heatmap", (grid, gtitle, fig_dir, f"{slug}_winners", note)),
        ]
        if any(f"verdict_{c}" in grid for c in ENSEMBLE_CLASSES):  # a test per comparison: each class's verdicts
            made.append(("each ensemble class against single", "class_verdicts_heatmap",
                         (grid, gtitle, fig_dir, f"{slug}_class_verdicts", note)))  # fmt: skip
        made.append(("test error vs budget", "error_vs_budget", (stats, gtitle, fig_dir, f"{slug}_error")))
        if (stats["budget_deviation_pct"].abs() > max_budget_deviation_pct).any():
            # Designs far from their budget: also show each at its real size.
            made.append(("test error vs real parameter count", "error_vs_budget",
                         (stats, gtitle, fig_dir, f"{slug}_error_params", None, True)))  # fmt: skip
        made.append(("time to accuracy", "time_to_accuracy",
                     (stats, gtitle, fig_dir, f"{slug}_time_to_acc", cost_tab)))  # fmt: skip
        if not trows.empty:
            made.append(("costs", "costs", (trows, gtitle, fig_dir, f"{slug}_costs")))
        else:
            page.p("No finished trials yet for this group: no cost figure (training time, latency, memory).")
        for alt, name, args in made:
            drawn_early = early.pop(tuple(key[k] for k in GROUP_KEYS), None) if name == "costs" else None
            tasks.append((len(page.blocks), drawing.add(name, args) if drawn_early is None else drawn_early))
            page.img("", f"{alt} — {gtitle}")
        if not trows.empty:
            page.p(figures.MEMORY_NOTE)
            page.p(figures.cost_source_note(trows))
        page.p(never_txt + ".")
    return tasks


def _tables_sections(page, store, sweep, trials, epochs, load_warnings, out: Path, fig_dir: Path, make_figures: bool,
                     max_budget_deviation_pct: float, formats: tuple[str, ...]) -> None:  # fmt: skip
    """Add the DCT table, the adaptive classes' sections and what is missing to the page (and their files)."""
    dct_paths = tables.write_dct_table(trials, out, max_budget_deviation_pct=max_budget_deviation_pct)
    if dct_paths:
        dct = tables.dct_table(trials)
        page.table(tables.display_frame(dct, max_budget_deviation_pct))  # a real <table> in the HTML page
        page.p(tables.caption(dct, max_budget_deviation_pct))
        page.p("Files: " + ", ".join(p.name for p in dct_paths.values()) + ".")
    else:
        page.p("No dct designs with finished (ok) trials in this sweep: no comparison table.")

    for cls in ADAPTIVE_CLASSES:
        _adaptive_section(page, store, sweep, trials, out, fig_dir, make_figures, cls, formats)

    page.h(2, "What is missing")
    miss = missing_report(trials, epochs)
    page.ul(
        [
            f"Unreadable files skipped: {len(load_warnings)}."
            + (" " + " | ".join(load_warnings) if load_warnings else ""),
            f"Trials not ok (diverged / error): {len(miss['not ok'])}.",
            f"Trials with epoch rows but no trials row (running or interrupted): {len(miss['no trials row'])}.",
            f"Grid combinations (class x budget x seed) with no row at all (queued, running or lost): "
            f"{len(miss['absent'])}.",
            f"Trials with missing epochs: {len(miss['missing epochs'])}.",
        ]
    )
    for name, df in miss.items():
        if len(df):
            page.h(3, name)
            page.table(df)
            df.to_csv(out / f"missing_{_slug(name)}.csv", index=False)


def _load_subnets(store, sweep) -> pd.DataFrame:
    from analysis.store import load_subnets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable files are already listed from the trials/epochs tables
        return load_subnets(str(store), sweep=sweep)


def _fixed_points(trials: pd.DataFrame) -> list[dict]:
    """Return the fixed designs (ok rows of single/deq/weq/dct) as seed means of design-time MACs and final_acc."""
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    fixed = ok[ok["design_class"].isin(CLASS_ORDER)] if "design_class" in ok else ok
    if fixed.empty:
        return []
    keys = ["design_class", "members", "depth", "width"]
    return over_seeds(fixed, keys, "final_acc", "acc", "acc_std", macs="macs").to_dict("records")


def _fixed_line(r: dict, got: str) -> str:
    return (f"{r['design_class']} (k={int(r['members'])}, depth {int(r['depth'])}, width {fmt_width(r['width'])}): "
            f"{100 * r['acc']:.2f}% at {r['macs']:,.0f} MACs; best under its MACs: {got}")  # fmt: skip


def _mutual_rows(query: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    from analysis.subnets import pareto_front

    front = pareto_front(query)
    return front, {"width multiplier": front["width_mult"].round(2), "resolution (px)": front["resolution"]}


def _coop_rows(query: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    tab = query.sort_values(["network", "scale"], ascending=[True, False], kind="stable")
    return tab, {"network": tab["network"], "scale": tab["scale"].round(2),
                 "blocks run": tab["blocks_executed"].round().astype("Int64")}  # fmt: skip


# Per adaptive class: section title, what its sub-networks are, (the query-table rows shown, their sub-network
# columns), and the name of one sub-network.
ADAPTIVE_SECTIONS = {
    "mutual": (
        "MutualNet sub-networks (width x resolution)",
        " (BN statistics recalibrated for each). Accuracy-optimal front (no other sub-network is both cheaper and more "
        "accurate); the full table is",
        _mutual_rows,
        lambda best: f"mutual width {best['width_mult']:g} at {int(best['resolution'])} px",
    ),
    "coop": (
        "Cooperative depth-adaptive sub-networks (teammates x scale, leader)",
        ": each teammate at every scaling factor with its learned hard block mask, and the leader at full depth. The "
        "full table is",
        _coop_rows,
        lambda best: f"coop {best['network']} at scale {best['scale']:g}",
    ),
}


def _adaptive_section(page, store, sweep, trials: pd.DataFrame, out: Path, fig_dir: Path, make_figures: bool,
                      cls: str, formats: tuple[str, ...]) -> None:  # fmt: skip
    """Add the section of adaptive class `cls` (query table, the best sub-network under each fixed design's MACs,
    accuracy-vs-MACs and -latency figures) when the sweep has subnets rows of that class."""
    from analysis.subnets import of_class, query_table

    subnets = of_class(_load_subnets(store, sweep), cls)
    if subnets.empty:
        return
    title, what, rows_shown, name_of = ADAPTIVE_SECTIONS[cls]
    page.h(2, title)
    query = query_table(subnets)
    query.to_csv(out / f"{cls}_query_table.csv", index=False)
    page.p(f"{len(query)} evaluated sub-networks{what} {cls}_query_table.csv.")
    tab, shown = rows_shown(query)
    page.table(pd.DataFrame({
        "family": tab["family"], "depth": tab["depth"], "width": tab["width"].map(fmt_width), **shown,
        "test acc (%)": (100 * tab["acc_mean"]).round(2), "MACs/sample": tab["macs"].round().astype("Int64"),
        "params": tab["params"].round().astype("Int64"), "latency p50 (ms)": tab["latency_ms_p50"].round(3),
    }))  # fmt: skip
    _best_under_fixed_macs(page, trials, query, cls, name_of)
    if make_figures:
        _adaptive_figures(page, trials, query, sweep, out, fig_dir, cls, formats)


def _best_under_fixed_macs(page, trials: pd.DataFrame, query: pd.DataFrame, kind: str, name_of) -> None:
    """Add, for each fixed design, the most accurate `kind` sub-network within its MACs per sample (named by
    `name_of(row)`), or that none fits."""
    from analysis.subnets import best_subnet

    lines = []
    for r in _fixed_points(trials):
        best = best_subnet(query, max_macs=r["macs"])
        got = "no sub-network fits" if best is None else (
            f"{name_of(best)}: {100 * best['acc_mean']:.2f}% with {best['macs']:,.0f} MACs"
        )  # fmt: skip
        lines.append(_fixed_line(r, got))
    if lines:
        page.p(f"Under each fixed design's MACs (per sample), the best {kind} sub-network:")
        page.ul(lines)


def _adaptive_figures(page, trials, query, sweep: str | None, out: Path, fig_dir: Path, kind: str,
                      formats: tuple[str, ...]) -> None:  # fmt: skip
    """Draw accuracy vs MACs and accuracy vs latency for one adaptive class beside the fixed designs; show both."""
    from analysis import figures

    for cost, name in (("macs", "MACs"), ("latency_ms_p50", "latency")):
        stem = _slug(kind, sweep or "all") + ("" if cost == "macs" else "_latency")
        paths = figures.accuracy_vs_cost(trials, query, sweep or "all sweeps", fig_dir, stem, cost=cost,
                                         formats=formats)
        page.img(str(paths[0].relative_to(out)), f"accuracy vs {name} — {kind} sub-networks and fixed designs")


def _group_rows(df: pd.DataFrame, key: dict) -> pd.DataFrame:
    if df.empty:
        return df
    m = pd.Series(True, index=df.index)
    for k in GROUP_KEYS:
        m &= df[k] == key[k]
    return df[m]


def _md_summary(est: ESTResult) -> pd.DataFrame:
    t = est.summary
    return pd.DataFrame(
        {
            "dataset": t["dataset"],
            "family": t["family"],
            "k": t["k"].astype(str),
            "fit": t["fit"],
            "final epoch": t["final_epoch"].astype(str),
            "seeds": t["seeds"],
            "EST": [
                (fmt_params(b) + (" †" if marked is True else "")) if s == "found"
                else ("no EST in grid" if s == "none" else s)
                for b, s, marked in zip(t["est_budget"], t["status"], t.get("est_deviation_marked", [None] * len(t)),
                                        strict=True)
            ],
            "EST 95% interval": t["est_interval"].fillna("") if "est_interval" in t else "",
            "interval": t["interval"],
            "earliest epoch at EST": [("" if pd.isna(e) else str(int(e))) for e in t["est_earliest_epoch"]],
            "winner at EST": t["est_winner"].astype(object).fillna(""),
            "cells at the final epoch": t.get("final_verdicts", ""),
            "margin / noise (pp)": [
                ("" if m is None or pd.isna(m) else f"{m:.2f} / {'n/a' if pd.isna(n) else f'{n:.2f}'}")
                for m, n in zip(t["est_margin_pp"], t["est_noise_pp"], strict=True)
            ],
        }
    )


def _write_est(est: ESTResult, out: Path) -> None:
    (out / "est.json").write_text(est.to_json(), encoding="utf-8")
    (out / "est_summary.md").write_text(est.summary_markdown() + "\n", encoding="utf-8")
    est.summary.to_csv(out / "est_summary.csv", index=False)
    est.per_epoch.to_csv(out / "est_per_epoch.csv", index=False)
    est.earliest.to_csv(out / "est_earliest_epoch.csv", index=False)
    est.grid.to_csv(out / "winner_grid.csv", index=False)
