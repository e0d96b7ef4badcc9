"""The interactive results explorer: one offline HTML page per store (`python -m analysis explore`).

    write_explorer("results", None, "explorer")     # every sweep of the store -> explorer/index.html

The page carries seed-aggregated tables and ready plotly figures built here by the report's own code
(`analysis.est.compute_est`, the tables of `analysis.figures`, `analysis.advise.advise`, `analysis.subnets`), so the
page and the report cannot disagree. Its JavaScript only picks the precomputed figures of the chosen sweep and group,
writes the heatmap's hover text from the group's compact cell table (`cell_table`: the numbers rounded here to the
digits shown), filters the advisor's candidate table by the limits (the same `<=` test and ranking as
`analysis.advise`), and lists the trials behind the view. No epoch rows are embedded: the size grows with groups x
budgets x epochs, not with the number of trials. plotly's JavaScript (shipped inside the plotly package) is written
beside the page as plotly.min.js, so the page opens from a file:// URL with no network and no server.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures, report
from analysis.advise import LIMITS, advise
from analysis.costs import IN_RUN, source_of
from analysis.est import (
    CLASS_ORDER,
    DEFAULT_RULE,
    ENSEMBLE_CLASSES,
    GROUP_KEYS,
    MAX_BUDGET_DEVIATION_PCT,
    MISSING,
    Rule,
    assign_groups,
    compute_est,
    fmt_params,
    fmt_width,
)
from analysis.explore_page import TEMPLATE

PAGE = "index.html"
PLOTLY_JS = "plotly.min.js"
# The trials table of the page (what a reader filters on and downloads); epoch rows are never embedded.
TRIAL_COLUMNS = ["trial_id", "status", "design_class", "role", "family", "depth", "width", "members", "budget",
                 "params_total", "budget_deviation_pct", "seed", "epochs", "epochs_done", "final_acc", "best_acc",
                 "train_time_s", "epoch_time_s_mean", "latency_ms_p50", "peak_mem_mb", "mem_source", "macs_fvcore",
                 "macs", "device_name", "epoch_time_isolated_s", "peak_mem_isolated_mb", "latency_isolated_ms_p50",
                 "cost_source", "error"]  # fmt: skip
# Advisor candidates: the columns the page shows plus every column a limit tests (LIMITS), unrounded.
ADVISOR_COLUMNS = ["label", "design_class", "acc_mean", "acc_std", "n_seeds", "latency_ms_p50", "peak_mem_mb",
                   "params_total", "gflops", "device_name", "cost_source"]  # fmt: skip


class ExploreError(ValueError):
    """Bad input for the explorer (empty store, unknown sweep); the message is one line naming what is there."""


def sweeps_to_show(store: str | Path, sweep: str | None) -> list[str]:
    """Return the sweep names the page shows: `sweep`, or every sweep of the store when it is None.

    Raises ExploreError for a store without sweeps or a sweep name the store does not hold.
    """
    names = report.sweeps_in(store)
    if not names:
        raise ExploreError(f"the store {store} holds no sweeps (no trials/ or epochs/ partitions): run a sweep first")
    if sweep is None:
        return names
    if sweep not in names:
        raise ExploreError(f"no sweep {sweep!r} in the store {store}; it holds: {', '.join(names)}")
    return [sweep]


# --- numbers to JSON ------------------------------------------------------------------------------------------


def _js(x):
    """Return x as plain JSON values: NaN/inf/NA -> null, numpy scalars and arrays -> Python numbers and lists."""
    if isinstance(x, dict):
        return {str(k): _js(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray | pd.Series):
        return [_js(v) for v in list(x)]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if x is None or x is pd.NA or x is pd.NaT:
        return None
    if isinstance(x, pd.Timestamp | dt.datetime):
        return x.isoformat()
    return x


def _figure(fig) -> dict:
    """Return a plotly figure as a JSON-able dict without its template (the page applies one shared template)."""
    d = fig.to_plotly_json()
    d["layout"].pop("template", None)
    return _js(d)


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f}"


# --- the figures of one group ----------------------------------------------------------------------------------


def _budget_axis(budgets: list[int]) -> dict:
    return dict(type="log", tickvals=budgets, ticktext=[fmt_params(b) for b in budgets],
                title=dict(text="parameter budget (parameters, M = 10^6)"))  # fmt: skip


def _per_epoch_rows(per_epoch: pd.DataFrame) -> dict[int, dict]:
    """Return `compute_est`'s per-epoch rows of one group by epoch (the first row of an epoch)."""
    rows: dict[int, dict] = {}
    for r in per_epoch.to_dict("records"):
        rows.setdefault(int(r["epoch"]), r)
    return rows


def _est_line(r: dict | None, epoch: int | str) -> str:
    """Return the hover's EST line at `epoch` from its per-epoch row (None: no decision at this epoch); `epoch` may be
    a placeholder such as "{epoch}"."""
    if r is None:
        return "EST line: no decision at this epoch"
    if r["status"] == "found":
        below = "below grid" if pd.isna(r["below_budget"]) else fmt_params(r["below_budget"])
        return f"EST line at epoch {epoch}: {fmt_params(r['est_budget'])} (switchover in ({below}, " \
               f"{fmt_params(r['est_budget'])}])"  # fmt: skip
    if r["status"] == "none":
        return f"EST line at epoch {epoch}: none (ensembles do not win at the largest budget)"
    return f"EST line at epoch {epoch}: {r['status']}"


# --- compact tables: the heatmap's cells ---------------------------------------------------------------------
#
# The hover of a heatmap cell shows ~15 numbers; written out as text for every cell of every group it was 95% of the
# page (39 of 41 MB at the More-or-Less scale, issue 23). The page embeds them instead once, per group, as columns of
# numbers rounded to what the hover displays (integers in units of the last shown digit), strings dictionary-encoded,
# constant and mostly-empty columns shortened; the page's script writes a group's hover text when it shows the group.


# Integer types of the page's binary columns, smallest first; the lowest value of each marks a missing one.
_INT_TYPES = (("i1", np.int8), ("i2", np.int16), ("i4", np.int32))


def encode_column(values) -> list | dict:
    """Return one column of a page table (a sequence of JSON values: numbers, strings, booleans, None) in its compact
    JSON form, which the page's `column()` decodes back to the same values in the same order:

    - `{"c": v}`: every value is `v` (None included);
    - `{"d": [strings...], "k": codes}`: strings dictionary-encoded (in order of first appearance), `codes` the indices
      into `d` (None for a missing value), themselves a compact column;
    - `{"s": [indices...], "v": [values...]}`: at most a third of the values are set, the rest None;
    - `{"dtype": "i1"|"i2"|"i4", "bdata": base64}`: integers as little-endian binary (plotly's own form for numeric
      arrays) in the smallest type that holds them, with `"null": v` the value that stands for None (the type's
      lowest) and `"neg0": [indices...]` where a value is a negative zero (-0.0, a display such as "-0.00");
    - `[v, ...]`: otherwise, as is.
    """
    values = list(values)
    if len({repr(v) for v in values}) <= 1:
        return {"c": values[0] if values else None}
    if any(isinstance(v, str) for v in values):
        return _encode_strings(pd.Series(values, dtype=object))
    set_at = [i for i, v in enumerate(values) if v is not None]
    if 3 * len(set_at) > len(values) and all(type(v) is int or (type(v) is float and v == 0.0) for v in values
                                             if v is not None):  # fmt: skip
        units = np.array([np.nan if v is None else float(v) for v in values])
        return _encode_units(units, np.array([type(v) is float and math.copysign(1.0, v) < 0 for v in values]))
    if 3 * len(set_at) <= len(values):
        return {"s": set_at, "v": [values[i] for i in set_at]}
    return values


def _unit(u: float, neg0: bool) -> int | float:
    return -0.0 if neg0 else int(u)


def _encode_units(units: np.ndarray, neg0: np.ndarray) -> list | dict:
    """Return `encode_column` of integers given as an array of floats (NaN: missing) and where a value is -0.0."""
    present = ~np.isnan(units)
    n, count = len(units), int(present.sum())
    if count == 0:
        return {"c": None}
    first = np.flatnonzero(present)[0]
    if count == n and (units == units[first]).all() and (neg0 == neg0[first]).all():
        return {"c": _unit(units[first], neg0[first])}
    if 3 * count <= n:
        at = np.flatnonzero(present)
        return {"s": at.tolist(), "v": [_unit(units[i], neg0[i]) for i in at]}
    low, high = units[present].min(), units[present].max()
    for name, kind in _INT_TYPES:
        info = np.iinfo(kind)
        if info.min < low and high <= info.max:
            array = np.where(present, units, info.min).astype(np.dtype(kind).newbyteorder("<"))
            out: dict = {"dtype": name, "bdata": base64.b64encode(array.tobytes()).decode("ascii")}
            if count < n:
                out["null"] = int(info.min)
            if neg0.any():
                out["neg0"] = np.flatnonzero(neg0).tolist()
            return out
    return [_unit(u, z) if ok else None for u, z, ok in zip(units, neg0, present, strict=True)]


def _encode_strings(series: pd.Series) -> dict:
    """Return `encode_column` of a column of strings (None or NaN: missing), dictionary-encoded."""
    codes, words = pd.factorize(series, use_na_sentinel=True)  # words in order of first appearance
    if len(words) == 1 and (codes == 0).all():
        return {"c": str(words[0])}
    if not len(words):
        return {"c": None}
    units = np.where(codes < 0, np.nan, codes.astype(float))
    return {"d": [str(w) for w in words], "k": _encode_units(units, np.zeros(len(codes), dtype=bool))}


def _display(values, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (units, negative zero) of `display_units` as arrays: units as floats, NaN where missing."""
    v = np.asarray(values, dtype=float)
    scaled = v * 10.0**decimals
    units = np.rint(scaled)
    finite = np.isfinite(v)
    # rint rounds the scaled product, the format the exact value: they can differ only right next to a half.
    with np.errstate(invalid="ignore"):
        near_half = finite & (np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < 1e-6)
    for i in np.flatnonzero(near_half):
        units[i] = round(float(f"{v[i]:.{decimals}f}") * 10**decimals)
    units[~finite] = np.nan
    return units, finite & (units == 0) & np.signbit(v)


def display_units(values, decimals: int) -> list:
    """Return each value as the integer that `f"{value:.{decimals}f}"` shows, in units of 10**-decimals (e.g. 84.375
    at 2 decimals -> 8438 for "84.38"): None where the value is not finite, -0.0 where the display is a negative zero
    ("-0.00"). Dividing by 10**decimals and printing that many decimals gives back Python's display, digit for digit.
    """
    units, neg0 = _display(values, decimals)
    return [None if np.isnan(u) else _unit(u, z) for u, z in zip(units, neg0, strict=True)]


def encode_display(values, decimals: int) -> list | dict:
    """Return `encode_column(display_units(values, decimals))`, computed on arrays."""
    return _encode_units(*_display(values, decimals))


def three_digits(values) -> list:
    """Return each value rounded to the 3 significant digits that `f"{value:.3g}"` shows (None where not finite)."""
    return [float(f"{x:.3g}") if math.isfinite(x) else None for x in np.asarray(values, dtype=float)]


def _column_of(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


def cell_table(grid: pd.DataFrame, stats: pd.DataFrame, per_epoch: pd.DataFrame, costs: pd.DataFrame,
               tie_rule: str) -> dict:  # fmt: skip
    """Return what the heatmap's hover shows for one EST group, as a compact table (`encode_column`), one row per cell
    in the heatmap's order (epochs, then budgets): the cell's marks, each class's mean, std and half-width over seeds
    (percent, 2 decimals) and seeds, each ensemble class's verdict against single with its difference and interval
    (pp, 2 decimals), adjusted p (3 significant digits) and probability of outperforming, the runner-up test, the
    margin and seed noise under an overlap rule; beside it the budget labels, epochs, each class's budget deviation
    per budget (%, 1 decimal) and the EST line per epoch ("{epoch}" in it stands for the epoch). The page's `hoverText`
    writes the hover from it."""
    budgets = sorted(int(b) for b in grid["budget"].unique())
    epochs = sorted(int(e) for e in grid["epoch"].unique())
    cells = pd.MultiIndex.from_product([epochs, budgets], names=["epoch", "budget"])
    g = grid.assign(epoch=grid["epoch"].astype(int), budget=grid["budget"].astype(int))
    g = g.set_index(["epoch", "budget"]).reindex(cells)
    cols: dict[str, list | dict] = {"assessable": encode_column([bool(a) for a in g["assessable"].fillna(True)])}
    if "over_budget_deviation" in g:
        cols["marked"] = encode_column(g["over_budget_deviation"].fillna(False).astype(bool).tolist())
        cols["deviating"] = _encode_strings(_column_of(g, "deviating_classes"))
        cols["max_deviation"] = encode_column([f"{x:g}" for x in _column_of(g, "max_budget_deviation_pct")])
    st = stats.assign(epoch=stats["epoch"].astype(int), budget=stats["budget"].astype(int))
    roles = [r for r in CLASS_ORDER if (st["role"] == r).any()]
    for role in roles:
        s = st[st["role"] == role].set_index(["epoch", "budget"]).reindex(cells)
        cols[f"n_{role}"] = _encode_units(s["n_seeds"].to_numpy(float), np.zeros(len(s), dtype=bool))
        for name, column in (("mean", "mean_acc"), ("std", "std_acc"), ("hw", "hw_acc")):
            if name == "hw" and tie_rule == "std":
                continue  # the std rule's interval is the std itself: the hover shows it once
            cols[f"{name}_{role}"] = encode_display(100.0 * s[column].to_numpy(float), 2)
    ensembles = [r for r in ENSEMBLE_CLASSES if f"verdict_{r}" in g and g[f"verdict_{r}"].notna().any()]
    for role in ensembles:
        cols[f"verdict_{role}"] = _encode_strings(g[f"verdict_{role}"])
        for name in ("diff_pp", "ci_lo_pp", "ci_hi_pp"):
            cols[f"{name}_{role}"] = encode_display(_column_of(g, f"{name}_{role}"), 2)
        cols[f"p_{role}"] = encode_column(three_digits(_column_of(g, f"p_{role}")))
        cols[f"p_outperform_{role}"] = encode_display(_column_of(g, f"p_outperform_{role}"), 2)
    if "runner_up" in g and g["runner_up"].notna().any():
        cols["runner_up"] = _encode_strings(g["runner_up"])
        cols["vs_runner_up_pp"] = encode_display(g["vs_runner_up_pp"], 2)
        cols["vs_runner_up_p"] = encode_column(three_digits(g["vs_runner_up_p"]))
        cols["vs_runner_up_verdict"] = _encode_strings(g["vs_runner_up_verdict"])
    if tie_rule != "welch":
        cols["margin_pp"] = encode_display(_column_of(g, "margin_pp"), 2)
        cols["noise_pp"] = encode_display(_column_of(g, "noise_pp"), 2)
    by_epoch = _per_epoch_rows(per_epoch)
    deviation = {}
    if not costs.empty and "budget_deviation_pct" in costs:
        c = costs.assign(budget=costs["budget"].astype(int))
        for role in roles:
            rows = c[c["role"] == role].drop_duplicates("budget", keep="last")
            per_budget = rows.set_index("budget")["budget_deviation_pct"]
            if len(per_budget):
                deviation[role] = display_units(per_budget.reindex(budgets).to_numpy(float), 1)
    return {
        "budgets": [fmt_params(b) for b in budgets],
        "epochs": epochs,
        # Mostly the same few lines but for the epoch: dictionary-encoded with "{epoch}" standing for it.
        "est_lines": encode_column([_est_line(by_epoch.get(e), "{epoch}") for e in epochs]),
        "roles": roles,
        "ensembles": ensembles,
        "deviation": deviation,
        "cols": cols,
    }


def heatmap_figure(grid: pd.DataFrame, per_epoch: pd.DataFrame, title: str, tie_rule: str, note: str) -> dict:
    """Return the winner heatmap (x = budget, y = epoch; one cell per grid row, z the index of its winner in
    `figures.CATEGORY_ORDER`), the per-epoch EST line (from `compute_est`'s per-epoch table) and a mark on cells
    decided by means only. Its hover text is not in it: the page writes it from the group's `cell_table`."""
    import plotly.graph_objects as go

    budgets = sorted(int(b) for b in grid["budget"].unique())
    epochs = sorted(int(e) for e in grid["epoch"].unique())
    code = {c: i for i, c in enumerate(figures.CATEGORY_ORDER)}
    winners = grid.pivot(index="epoch", columns="budget", values="winner").reindex(index=epochs, columns=budgets)
    winners = winners.fillna(MISSING)  # a (budget, epoch) without a grid row shows as missing
    z = [[code[w] for w in row] for row in winners.to_numpy(dtype=object)]
    n = len(figures.CATEGORY_ORDER)
    scale = []
    for i, c in enumerate(figures.CATEGORY_ORDER):
        scale += [[i / n, figures.CATEGORY_COLORS[c]], [(i + 1) / n, figures.CATEGORY_COLORS[c]]]
    fig = go.Figure()
    # No text: the page writes each cell's hover from the group's `cell_table` when it shows the group.
    fig.add_trace(go.Heatmap(x=list(range(len(budgets))), y=epochs, z=z,
                             hovertemplate="%{text}<extra></extra>", colorscale=scale, zmin=-0.5, zmax=n - 0.5,
                             showscale=False, xgap=1, ygap=1,
                             name="winner"))  # fmt: skip
    shown = set(grid["winner"])
    margin = float(grid["equivalence_pp"].iloc[0]) if "equivalence_pp" in grid and len(grid) else float("nan")
    for c in figures.CATEGORY_ORDER:
        # The verdict categories of the rule in use (never "tie" under welch, never equivalent/unresolved under
        # an overlap rule) and whatever else some cell shows.
        other_rule = (c == "tie") if tie_rule == "welch" else c in ("equivalent", "unresolved")
        if (c != MISSING and not other_rule) or c in shown:
            name = figures.CATEGORY_LABELS.get(c, "{c}").format(margin=margin, c=c)
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup="winner",
                                     marker=dict(symbol="square", size=12, color=figures.CATEGORY_COLORS[c],
                                                 line=dict(color="#666", width=1))))  # fmt: skip
    xs, ys = [], []
    for r in per_epoch[per_epoch["status"] == "found"].to_dict("records"):
        if int(r["est_budget"]) in budgets and int(r["epoch"]) in epochs:
            j = budgets.index(int(r["est_budget"])) - 0.5
            xs += [j, j, None]
            ys += [r["epoch"] - 0.5, r["epoch"] + 0.5, None]
    fig.add_trace(go.Scatter(x=xs or [None], y=ys or [None], mode="lines", line=dict(color="black", width=4),
                             name="EST (per epoch)", hoverinfo="skip"))  # fmt: skip
    by_mean = grid[(grid["winner"] != MISSING) & ~grid["assessable"].astype(bool)]
    if not by_mean.empty:
        fig.add_trace(go.Scatter(x=[budgets.index(int(b)) for b in by_mean["budget"]], y=list(by_mean["epoch"]),
                                 mode="markers", marker=dict(symbol="x-thin", size=9, line=dict(width=1.5,
                                 color="#333")), name="1-seed class: by mean", hoverinfo="skip"))  # fmt: skip
    fig.update_layout(
        title=dict(text=f"Winner by budget and epoch — {title}<br><sup>{html.escape(note)}</sup>"),
        xaxis=dict(tickvals=list(range(len(budgets))), ticktext=[fmt_params(b) for b in budgets],
                   title=dict(text="parameter budget (parameters, M = 10^6)"), range=[-0.5, len(budgets) - 0.5],
                   showgrid=False, zeroline=False),
        yaxis=dict(title=dict(text="training epochs (epoch)"), range=[min(epochs) - 0.5, max(epochs) + 0.5],
                   showgrid=False, zeroline=False, dtick=max(1, len(epochs) // 12)),
        legend=dict(title=dict(text="winner")), height=460, margin=dict(t=80),
    )  # fmt: skip
    return _figure(fig)


def error_figure(stats: pd.DataFrame, title: str, tie_rule: str) -> dict:
    """Return test error (%) vs budget per class at the final epoch, members' mean dotted; error bars are the tie
    rule's seed intervals (as the report's figure)."""
    import plotly.graph_objects as go

    epoch = int(stats["epoch"].max())
    at = stats[stats["epoch"] == epoch]
    budgets = sorted(int(b) for b in stats["budget"].unique())
    fig = go.Figure()
    for cls in CLASS_ORDER:
        c = at[at["role"] == cls].sort_values("budget")
        if c.empty:
            continue
        err = 100.0 * (1.0 - c["mean_acc"].to_numpy(float))
        hw = 100.0 * c["hw_acc"].to_numpy(float)
        color = figures.CLASS_COLORS[cls]
        fig.add_trace(go.Scatter(x=list(c["budget"]), y=err, error_y=dict(type="data", array=hw, visible=True),
                                 mode="lines+markers", name=cls, line=dict(color=color), customdata=c["n_seeds"],
                                 hovertemplate=f"{cls}: %{{y:.2f}}% error ± %{{error_y.array:.2f}} "
                                               "(%{customdata} seeds)<extra></extra>"))  # fmt: skip
        if cls in ENSEMBLE_CLASSES and c["member_mean_acc"].notna().any():
            fig.add_trace(go.Scatter(x=list(c["budget"]), y=100.0 * (1.0 - c["member_mean_acc"].to_numpy(float)),
                                     mode="lines+markers", name=f"{cls}: members' mean",
                                     line=dict(color=color, dash="dot"), marker=dict(size=5),
                                     hovertemplate=f"{cls} members' mean: %{{y:.2f}}% error<extra></extra>"),
                          )  # fmt: skip
    interval = "± 1 std over seeds" if tie_rule == "std" else "± 95% CI over seeds"
    fig.update_layout(title=dict(text=f"Test error at epoch {epoch} ({interval}) — {title}"),
                      xaxis=_budget_axis(budgets), yaxis=dict(title=dict(text="test error (%)")), height=420,
                      hovermode="x unified")  # fmt: skip
    return _figure(fig)


def time_to_accuracy_figure(stats: pd.DataFrame, title: str, costs: pd.DataFrame | None = None) -> dict:
    """Return the time-to-accuracy bars (s) per budget and class (`figures.time_to_accuracy_table` with `costs`, whose
    source the axis names); a class that never reaches the single network's best accuracy gets a "× never" label at
    zero."""
    import plotly.graph_objects as go

    tta = figures.time_to_accuracy_table(stats, costs=costs)
    fig = go.Figure()
    for cls in CLASS_ORDER:
        c = tta[tta["role"] == cls].sort_values("budget")
        if c.empty:
            continue
        reached = c["reached"].astype(bool).to_numpy()
        fig.add_trace(go.Bar(x=[fmt_params(b) for b in c["budget"]], y=np.where(reached, c["time_s"], 0.0), name=cls,
                             marker_color=figures.CLASS_COLORS[cls], text=["" if r else "× never" for r in reached],
                             textposition="outside", customdata=np.stack([c["epoch_reached"].astype(float),
                                                                          100 * c["target_acc"]], axis=-1),
                             hovertemplate=f"{cls}: %{{y:.2f}} s (epoch %{{customdata[0]}}; target "
                                           "%{customdata[1]:.2f}%)<extra></extra>"))  # fmt: skip
    fig.update_layout(title=dict(text=f"Time to the single network's best accuracy — {title}"), barmode="group",
                      xaxis=dict(title=dict(text="parameter budget (parameters, M = 10^6)"), type="category"),
                      yaxis=dict(title=dict(text="time to single's best accuracy (s)<br>"
                                                f"{figures.time_source_text(tta)}", font=dict(size=11))),
                      height=420)  # fmt: skip
    return _figure(fig)


COST_PANELS = [  # cost_table column, axis title with its unit
    ("epoch_time", "training time per epoch (s), after the first"),
    ("latency_ms_p50", "inference latency, p50 at batch 1 (ms)"),
    ("peak_mem_mb", "peak training memory (MB)"),
    ("macs_per_sample", "MACs per sample (multiply-accumulates)"),
]


def costs_figure(costs: pd.DataFrame, mem_source: str, title: str, source: str = IN_RUN) -> dict:
    """Return the four cost panels vs budget per class (seed means of `figures.cost_table`): epoch time (s),
    latency (ms), peak memory (MB, with the memory source) and MACs per sample; the title names the costs' `source`
    (`analysis.costs.source_of`)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    budgets = sorted(int(b) for b in costs["budget"].unique())
    fig = make_subplots(rows=2, cols=2, horizontal_spacing=0.12, vertical_spacing=0.2)
    for i, (col, axis) in enumerate(COST_PANELS):
        row, cc = divmod(i, 2)
        for cls in CLASS_ORDER:
            c = costs[costs["role"] == cls].sort_values("budget")
            if c.empty or col not in c or c[col].isna().all():
                continue
            fig.add_trace(go.Scatter(x=list(c["budget"]), y=c[col], mode="lines+markers", name=cls, legendgroup=cls,
                                     showlegend=i == 0, line=dict(color=figures.CLASS_COLORS[cls]),
                                     hovertemplate=f"{cls}: %{{y:.4g}}<extra>{axis}</extra>"), row=row + 1,
                          col=cc + 1)  # fmt: skip
        label = axis + (f" [{mem_source}]" if col == "peak_mem_mb" and mem_source else "")
        fig.update_yaxes(title=dict(text=label, font=dict(size=11)), row=row + 1, col=cc + 1)
        fig.update_xaxes(**_budget_axis(budgets), row=row + 1, col=cc + 1)
    fig.update_layout(title=dict(text=f"Training time, inference latency, memory and MACs ({source} costs) — {title}"),
                      height=640)  # fmt: skip
    return _figure(fig)


def subnet_figure(query: pd.DataFrame, trials: pd.DataFrame, cost: str, sweep: str) -> dict:
    """Return test accuracy (%) vs a cost ("macs" per sample or "latency_ms_p50" in ms) of every mutual/coop
    sub-network (`analysis.subnets.query_table`), each class's Pareto front, and the fixed designs of the sweep
    (`figures.fixed_design_points`), as the report's accuracy-vs-cost figure."""
    import plotly.graph_objects as go

    from analysis.subnets import of_class, pareto_front

    fig = go.Figure()
    axis, name = figures.COST_AXES[cost]
    unit = "MACs" if cost == "macs" else "ms"
    mutual = of_class(query, "mutual")
    for side in sorted(mutual["resolution"].unique(), reverse=True) if not mutual.empty else []:
        q = mutual[mutual["resolution"] == side]
        fig.add_trace(go.Scatter(x=q[cost], y=100 * q["acc_mean"], mode="markers", name=f"mutual, {int(side)} px",
                                 marker=dict(color=figures.CLASS_COLORS["mutual"], size=9, opacity=0.8),
                                 customdata=q["width_mult"],
                                 hovertemplate=f"mutual width %{{customdata}}x at {int(side)} px: %{{y:.2f}}% at "
                                               f"%{{x:.4g}} {unit}<extra></extra>"))  # fmt: skip
    coop = of_class(query, "coop")
    for net in sorted(coop["network"].dropna().unique()) if "network" in coop and not coop.empty else []:
        q = coop[coop["network"] == net]
        fig.add_trace(go.Scatter(x=q[cost], y=100 * q["acc_mean"], mode="markers", name=f"coop {net}",
                                 marker=dict(color=figures.CLASS_COLORS["coop"], size=9, opacity=0.8, symbol="diamond"),
                                 customdata=q["scale"],
                                 hovertemplate=f"coop {net} at scale %{{customdata}}: %{{y:.2f}}% at %{{x:.4g}} "
                                               f"{unit}<extra></extra>"))  # fmt: skip
    for kind, sub in (("mutual", mutual), ("coop", coop)):
        color = figures.CLASS_COLORS[kind]
        if not sub.empty:
            front = pareto_front(sub, cost)
            fig.add_trace(go.Scatter(x=front[cost], y=100 * front["acc_mean"], mode="lines", name=f"{kind}: best front",
                                     line=dict(color=color), hoverinfo="skip"))  # fmt: skip
    fixed = figures.fixed_design_points(trials, cost)
    for cls in CLASS_ORDER:
        pts = fixed[fixed["design_class"] == cls]
        if pts.empty:
            continue
        labels = [f"{cls} k={int(m)} depth {int(d)} width {fmt_width(w)} at {fmt_params(b)}"
                  for m, d, w, b in zip(pts["members"], pts["depth"], pts["width"], pts["budget"], strict=True)]
        fig.add_trace(go.Scatter(x=pts["x"], y=100 * pts["acc"], mode="markers", name=f"{cls} (fixed design)",
                                 text=labels, marker=dict(color=figures.CLASS_COLORS[cls], size=12,
                                                          line=dict(color="black", width=1)),
                                 hovertemplate=f"%{{text}}: %{{y:.2f}}% at %{{x:.4g}} {unit}<extra></extra>"))
    fig.update_layout(title=dict(text=f"Accuracy vs {name}: sub-networks and fixed designs — sweep {sweep}"),
                      xaxis=dict(type="log", title=dict(text=axis)), yaxis=dict(title=dict(text="test accuracy (%)")),
                      height=440)  # fmt: skip
    return _figure(fig)


# --- one sweep ------------------------------------------------------------------------------------------------


def _group_rows(df: pd.DataFrame, key: dict) -> pd.DataFrame:
    return report._group_rows(df, key)


def _status(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    """Return the sweep's trial counts and a one-line message (it says when only running trials are there)."""
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    running = len(report.missing_report(trials, epochs)["no trials row"]) if not epochs.empty else 0
    finished = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"
    only_running = bool(trials.empty and running)
    if only_running:
        msg = (f"Only running trials: {running} trial(s) have epoch rows but no finished row yet. The heatmaps use "
               "the epochs so far; costs, the advisor and the trials table fill in as trials finish.")  # fmt: skip
    elif trials.empty:
        msg = "No trials in this sweep yet."
    else:
        msg = f"Trials finished: {finished}. Running or interrupted (epoch rows, no trials row): {running}."
    return {"counts": _js(counts), "running": running, "only_running": only_running, "message": msg}


def _trials_table(trials: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Return (the page's trials table as columns + rows, the trials with EST group columns and their row index)."""
    if trials.empty:
        return {"columns": ["trial_id"], "rows": []}, pd.DataFrame()
    t = trials.assign(_row=np.arange(len(trials)))
    grouped, _ = assign_groups(t)
    t = t.assign(role=t["design_class"].astype(str))
    roles = grouped.drop_duplicates("_row").set_index("_row")["role"]
    t.loc[roles.index, "role"] = roles.to_numpy()  # a DCT S = 1 baseline shows as role single, as in EST
    cols = [c for c in TRIAL_COLUMNS if c in t]
    return {"columns": cols, "rows": _js(t[cols].to_numpy(dtype=object).tolist())}, grouped


def sweep_data(store: str | Path, sweep: str, tie_rule: str = DEFAULT_RULE,
               max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
               rule: Rule | None = None, steps: dict | None = None) -> dict:  # fmt: skip
    """Return everything the page shows for one sweep, as JSON-able values: status, notes, per EST group its figures
    and the indices of its trials, the sweep's trials table, the mutual/coop figures and the advisor's candidates.
    `rule` (default `Rule(tie_rule)`) decides the cells."""
    rule = rule or Rule(tie_rule)
    with report.timed(steps, "load"):
        trials, epochs, load_warnings = report.read_store(store, sweep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unreadable files are already in load_warnings
            from analysis.store import load_subnets

            subnets = load_subnets(str(store), sweep=sweep)
    with report.timed(steps, "est"):
        est = compute_est(epochs, trials if not trials.empty else None, rule=rule,
                          max_budget_deviation_pct=max_budget_deviation_pct)  # fmt: skip
    with report.timed(steps, "tables"):
        table, grouped = _trials_table(trials)
    with report.timed(steps, "figures"):
        groups = _groups(est, grouped, rule)
    with report.timed(steps, "tables"):
        rest = _advisor_and_subnets(trials, subnets, sweep, max_budget_deviation_pct)
    return {
        "name": sweep,
        "status": _status(trials, epochs),
        "notes": [*est.notes, *(f"unreadable file skipped: {w}" for w in load_warnings)],
        "groups": groups,
        "trials": table,
        **rest,
    }


def _groups(est, grouped: pd.DataFrame, rule: Rule) -> list[dict]:
    """Return per EST group its keys, title, EST sentence, figures and the indices of its trials."""
    tie_rule = rule.name
    groups = []
    for r in est.summary.to_dict("records"):
        key = {k: r[k] for k in GROUP_KEYS}
        title = figures.group_title(**key)
        grid, stats = _group_rows(est.grid, r), _group_rows(est.stats, r)
        per_epoch = _group_rows(est.per_epoch, r)
        trows = _group_rows(grouped, r) if not grouped.empty else grouped
        costs = figures.cost_table(trows) if not trows.empty else pd.DataFrame()
        mem = ""
        if not trows.empty and "mem_source" in trows and trows["mem_source"].notna().any():
            mem = ", ".join(sorted(trows["mem_source"].dropna().astype(str).unique()))
        note = figures.tie_rule_note(rule, r["seeds"])
        groups.append({
            **_js(key),
            "title": title,
            "est": report.est_sentence(r, grid),
            "cells": len(grid),
            "cell_table": cell_table(grid, stats, per_epoch, costs, tie_rule),
            "figs": {
                "heatmap": heatmap_figure(grid, per_epoch, title, tie_rule, note),
                "error": error_figure(stats, title, tie_rule),
                "tta": time_to_accuracy_figure(stats, title, costs if not costs.empty else None),
                "costs": costs_figure(costs, mem, title, source_of(trows)) if not costs.empty else None,
            },
            "trials": sorted(int(i) for i in trows["_row"].unique()) if not trows.empty else [],
        })  # fmt: skip
    return groups


def _advisor_and_subnets(trials: pd.DataFrame, subnets: pd.DataFrame, sweep: str,
                         max_budget_deviation_pct: float) -> dict:  # fmt: skip
    """Return the mutual/coop figures and the advisor's candidates of one sweep."""
    from analysis.subnets import query_table

    query = query_table(subnets) if not subnets.empty else pd.DataFrame()
    sub_figs = None
    if not query.empty:
        sub_figs = {cost: subnet_figure(query, trials, cost, sweep) for cost in ("macs", "latency_ms_p50")}
    adv = advise(trials, subnets=subnets if not subnets.empty else None,
                 max_budget_deviation_pct=max_budget_deviation_pct)  # fmt: skip
    cand = adv.designs
    for c in ADVISOR_COLUMNS:
        if c not in cand:
            cand = cand.assign(**{c: np.nan})
    devices = sorted({d for ds in cand["device_name"].dropna() for d in str(ds).split(", ") if d})
    return {
        "subnets": sub_figs,
        "advisor": {"columns": ADVISOR_COLUMNS, "rows": _js(cand[ADVISOR_COLUMNS].to_numpy(dtype=object).tolist()),
                    "devices": devices},  # fmt: skip
    }


# --- the page -------------------------------------------------------------------------------------------------


def explorer_data(store: str | Path, sweep: str | None = None, tie_rule: str = DEFAULT_RULE,
                  max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
                  rule: Rule | None = None, steps: dict | None = None) -> dict:  # fmt: skip
    """Return the page's data for `sweep` (None: every sweep of the store); raises ExploreError on bad input."""
    rule = rule or Rule(tie_rule)
    import plotly.io as pio

    names = sweeps_to_show(store, sweep)
    template = pio.templates["plotly_white"].to_plotly_json()
    return {
        "store": str(Path(store).resolve()),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "tie_rule": rule.text(),
        "rule": rule.name,
        "categories": figures.CATEGORY_ORDER,
        "missing": MISSING,
        "limits": {k: {"column": c, "unit": u, "name": n} for k, (c, u, n) in LIMITS.items()},
        "template": _js(template),
        "sweeps": {name: sweep_data(store, name, rule.name, max_budget_deviation_pct, rule, steps) for name in names},
    }


def page_html(data: dict) -> str:
    """Return the explorer page: styles, the data as embedded JSON, and the script that shows it (plotly.min.js is
    loaded from beside the page)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = "Results explorer: " + ", ".join(data["sweeps"])
    return (TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__PLOTLY__", PLOTLY_JS)
            .replace("__DATA__", payload))  # fmt: skip


def write_explorer(store: str | Path, sweep: str | None, out_dir: str | Path, tie_rule: str = DEFAULT_RULE,
                   max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
                   rule: Rule | None = None, steps: dict | None = None) -> Path:  # fmt: skip
    """Write out_dir/index.html and out_dir/plotly.min.js; return the page's path.

    `sweep` None shows every sweep of the store. Raises ExploreError (one line naming what the store holds) for an
    empty store or an unknown sweep. A sweep with only running trials gets a page that says so. `steps`, when given,
    gets the wall time and peak memory of each step (`analysis.report.timed`).
    """
    import plotly

    data = explorer_data(store, sweep, tie_rule, max_budget_deviation_pct, rule, steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with report.timed(steps, "page"):
        shutil.copyfile(Path(plotly.__file__).parent / "package_data" / PLOTLY_JS, out / PLOTLY_JS)
        page = out / PAGE
        page.write_text(page_html(data), encoding="utf-8")
    return page
