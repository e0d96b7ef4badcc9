"""Pick the most accurate measured design within latency / memory / parameter limits (trials table, status "ok").

A design point is one configuration over its seeds (`point_id` when the store has it). Its accuracy is the mean over
seeds of final_acc; its latency (latency_ms_p50, batch 1) and memory (peak_mem_mb) are means over seeds; its
parameters are params_total. A design fits when every given limit holds (<=). A design without a measurement that a
limit needs does not fit that limit (it is counted as "not measured").

With the store's subnets table (`mutual` and `coop` trials), every evaluated sub-network (a MutualNet width_mult x
resolution; a coop teammate at a scaling factor, or its leader) is a candidate of its own: its accuracy, latency and
executed parameters are its own, its memory is its trial's training peak (one trial trains them all); the adaptive
trial's own row then stands down for its sub-networks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.costs import IN_RUN, prefer_isolated
from analysis.est import MAX_BUDGET_DEVIATION_PCT, fmt_params, fmt_width
from analysis.store import comparable_latency_ms, distinct_joined, over_seeds
from spaces.classes import POINT_KEYS

# Without point_id in the table, the recipe columns complete a design point's identity.
FALLBACK_POINT_COLUMNS = [*(c for c in POINT_KEYS if c != "point_id"), "lr", "weight_decay", "lambda_cot", "combine",
                          "precision"]  # fmt: skip
# limit name -> (column in the design table, unit, human name)
LIMITS = {
    "max_latency_ms": ("latency_ms_p50", "ms", "latency p50 (batch 1)"),
    "max_memory_mb": ("peak_mem_mb", "MB", "peak memory"),
    "max_params": ("params_total", "params", "parameters"),
}


def design_table(trials: pd.DataFrame, max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT) -> pd.DataFrame:
    """Return one row per design point of the ok trials, sorted by accuracy (best first). A design further than
    `max_budget_deviation_pct` % from its budget is kept, flagged (`over_budget_deviation`) and its label says so.

    Columns: the point columns, n_seeds, acc_mean / acc_std (fractions; std NaN for one seed), latency_ms_p50 (ms,
    batch 1; the sweep's interleaved reading where the trials have one, see `analysis.store.comparable_latency_ms`),
    peak_mem_mb (MB), params_total (parameters), gflops (1e9 MACs per sample, macs_fvcore else macs), device_name
    (joined if several), cost_source (latency and memory from the "cost pass" -- the point measured alone, when the
    trials carry `analysis.costs.with_costs` columns -- or "in-run"), label (a short human name).
    """
    ok = trials[(trials["status"] == "ok") & trials["final_acc"].notna()] if "status" in trials else trials
    if ok.empty:
        return pd.DataFrame(
            columns=["label", "acc_mean", "acc_std", "n_seeds", "latency_ms_p50", "peak_mem_mb", "params_total"]
        )
    keys = ["point_id"] if "point_id" in ok else [c for c in FALLBACK_POINT_COLUMNS if c in ok]
    ok = ok.copy()
    macs = ok["macs_fvcore"] if "macs_fvcore" in ok else pd.Series(np.nan, index=ok.index)
    ok["gflops"] = macs.astype(float).fillna(ok["macs"].astype(float) if "macs" in ok else np.nan) / 1e9
    ok["latency_ms_p50"] = comparable_latency_ms(ok)
    for col in ("latency_ms_p50", "peak_mem_mb", "params_total"):
        if col not in ok:
            ok[col] = np.nan
    # The cost pass's figures (the design point measured alone) where the store has them, else the trials' own.
    ok["latency_ms_p50"] = prefer_isolated(ok, "latency_isolated_ms_p50", ok["latency_ms_p50"].astype(float))
    ok["peak_mem_mb"] = prefer_isolated(ok, "peak_mem_isolated_mb", ok["peak_mem_mb"].astype(float))
    if "cost_source" not in ok:
        ok["cost_source"] = IN_RUN
    if "device_name" not in ok:
        ok["device_name"] = None
    g = ok.groupby(keys, sort=False, dropna=False)
    first = g[[c for c in POINT_KEYS if c in ok and c not in keys]].first()
    stats = over_seeds(ok, keys, "final_acc", "acc_mean", "acc_std", sort=False, latency_ms_p50="latency_ms_p50",
                       peak_mem_mb="peak_mem_mb", params_total="params_total", gflops="gflops")  # fmt: skip
    devices = distinct_joined(ok, keys, "device_name", ", ")
    sources = distinct_joined(ok, keys, "cost_source", " and ", none=IN_RUN)  # as analysis.costs.source_of
    tab = first.join(stats.set_index(keys)).join(devices).join(sources).reset_index()
    dev = g["budget_deviation_pct"].first().reindex(tab.set_index(keys).index).to_numpy() if (
        "budget_deviation_pct" in ok) else np.full(len(tab), np.nan)  # fmt: skip
    tab["budget_deviation_pct"] = dev.astype(float)
    tab["over_budget_deviation"] = np.abs(tab["budget_deviation_pct"]) > max_budget_deviation_pct
    tab["label"] = [_label(r, max_budget_deviation_pct) for r in tab.to_dict("records")]
    return tab.sort_values(["acc_mean", "latency_ms_p50"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def subnet_design_table(subnets: pd.DataFrame, trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return the adaptive classes' sub-networks as design rows (the columns of `design_table`, plus width_mult and
    resolution in px, and for coop network / scale): accuracy (fraction) and latency (ms) per sub-network, params_total
    its executed parameters, gflops its 1e9 MACs per sample, peak_mem_mb the seed mean of its trial's training peak (MB;
    the cost pass's where the trials carry it) when `trials` has it."""
    from analysis.subnets import query_table

    tab = query_table(subnets)
    if tab.empty:
        return tab
    classes = tab["design_class"].fillna("mutual") if "design_class" in tab else "mutual"
    tab = tab.assign(design_class=classes, members=1, params_total=tab["params"], gflops=tab["macs"] / 1e9)
    mem = pd.Series(dtype=float)
    if trials is not None and not trials.empty and "peak_mem_mb" in trials and "point_id" in trials:
        peak = prefer_isolated(trials, "peak_mem_isolated_mb", trials["peak_mem_mb"].astype(float))
        mem = peak.groupby(trials["point_id"]).mean()
    tab["peak_mem_mb"] = tab["point_id"].map(mem) if "point_id" in tab else np.nan
    devices = subnets.groupby("point_id")["device_name"].agg(lambda s: ", ".join(sorted({str(v) for v in s.dropna()})))
    tab["device_name"] = tab["point_id"].map(devices)
    tab["label"] = [_subnet_label(r) for r in tab.to_dict("records")]
    return tab


def _subnet_label(r: dict) -> str:
    where = f"({r['dataset']}, sweep {r['sweep']})"
    if r["design_class"] == "coop":
        return (f"coop {r['family']}-{r['depth']} width {fmt_width(r['width'])} {r['network']} at scale {r['scale']:g} "
                f"({int(r['blocks_executed'])} blocks) {where}")  # fmt: skip
    return (f"mutual {r['family']}-{r['depth']} width {fmt_width(r['width'])} sub-network {r['width_mult']:g}x at "
            f"{int(r['resolution'])} px {where}")  # fmt: skip


def _label(r: dict, max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT) -> str:
    k = f" x{int(r['members'])}" if r.get("members", 1) and int(r.get("members", 1)) > 1 else ""
    sweep = f", sweep {r['sweep']}" if r.get("sweep") else ""
    dev = r.get("budget_deviation_pct")
    far = "" if dev is None or not np.isfinite(dev) or abs(dev) <= max_budget_deviation_pct else (
        f" [params {dev:+.1f}% off the budget: beyond the {max_budget_deviation_pct:g}% limit]")  # fmt: skip
    return (
        f"{r.get('design_class')} {r.get('family')}-{r.get('depth')} width {fmt_width(r.get('width'))}{k} "
        f"at budget {fmt_params(r.get('budget'))} ({r.get('dataset')}{sweep}){far}"
    )


def _numbers(r: pd.Series) -> str:
    std = "" if np.isnan(r["acc_std"]) else f" ± {100 * r['acc_std']:.2f}"
    return (
        f"accuracy {100 * r['acc_mean']:.2f}%{std} ({int(r['n_seeds'])} seed{'s' if r['n_seeds'] != 1 else ''}), "
        f"latency p50 {r['latency_ms_p50']:.3g} ms, peak memory {r['peak_mem_mb']:.4g} MB, "
        f"params {fmt_params(r['params_total'])}, {r['gflops']:.3g} GFLOPs"
        + (f" (latency and memory: {r['cost_source']})" if isinstance(r.get("cost_source"), str) else "")
    )


@dataclass
class Advice:
    """The advisor's answer: the chosen design (or None), the runner-up, the fitting designs, and the text."""

    best: pd.Series | None
    runner_up: pd.Series | None
    fitting: pd.DataFrame
    designs: pd.DataFrame
    limits: dict
    text: str
    excluded_by: list[str] = field(default_factory=list)


def _limit_text(name: str, value: float) -> str:
    col, unit, human = LIMITS[name]
    shown = fmt_params(value) if name == "max_params" else f"{value:g} {unit}"
    return f"{human} <= {shown}"


def _fits(designs: pd.DataFrame, limits: dict) -> pd.Series:
    mask = pd.Series(True, index=designs.index)
    for name, value in limits.items():
        col = LIMITS[name][0]
        mask &= designs[col].notna() & (designs[col] <= value)
    return mask


def advise(
    trials: pd.DataFrame,
    max_latency_ms: float | None = None,
    max_memory_mb: float | None = None,
    max_params: float | None = None,
    subnets: pd.DataFrame | None = None,
    max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
) -> Advice:
    """Return the Advice for the given limits (None = no limit) from the ok trials' measured numbers and, when
    `subnets` (the store's subnets table) is given, the MutualNet sub-networks."""
    limits = {
        k: v
        for k, v in {"max_latency_ms": max_latency_ms, "max_memory_mb": max_memory_mb, "max_params": max_params}.items()
        if v is not None
    }
    designs = design_table(trials, max_budget_deviation_pct)
    if subnets is not None and not subnets.empty:
        subs = subnet_design_table(subnets, trials)
        if "point_id" in designs:
            designs = designs[~designs["point_id"].isin(set(subs["point_id"]))]
        designs = pd.concat([d for d in (designs, subs) if not d.empty], ignore_index=True)
        designs = designs.sort_values(["acc_mean", "latency_ms_p50"], ascending=[False, True], kind="stable")
        designs = designs.reset_index(drop=True)
    lim_txt = ", ".join(_limit_text(k, v) for k, v in limits.items()) or "no limits"
    if designs.empty:
        return Advice(
            None,
            None,
            designs,
            designs,
            limits,
            "No measured designs: the store has no trials with "
            "status ok (nothing finished yet, or every trial failed).",
        )
    fitting = designs[_fits(designs, limits)]
    lines = []
    devices = sorted({d for ds in designs["device_name"] for d in str(ds).split(", ") if d})
    if len(devices) > 1:
        lines.append(f"Note: latency and memory were measured on different devices ({', '.join(devices)}).")
    if fitting.empty:
        excluded = []
        parts = []
        for name, value in limits.items():
            alone = _fits(designs, {name: value})
            col, unit, human = LIMITS[name]
            lowest = designs[col].min()
            low = fmt_params(lowest) if name == "max_params" else f"{lowest:.4g} {unit}"
            parts.append(
                f"- {_limit_text(name, value)} alone keeps {int(alone.sum())} of {len(designs)} designs "
                f"(lowest measured: {low})"
            )
            if not alone.any():
                excluded.append(name)
        head = f"No measured design fits all limits ({lim_txt})."
        if excluded:
            names = " and ".join(_limit_text(n, limits[n]) for n in excluded)
            head += f" Excluded everything on its own: {names}."
        else:
            combos = [
                c
                for r in range(2, len(limits) + 1)
                for c in itertools.combinations(limits, r)
                if not _fits(designs, {n: limits[n] for n in c}).any()
            ]
            smallest = [c for c in combos if len(c) == len(combos[0])] if combos else []
            names = "; ".join(" with ".join(_limit_text(n, limits[n]) for n in c) for c in smallest)
            head += f" No single limit excludes everything; together these do: {names}."
            excluded = [n for c in smallest for n in c]
        text = "\n".join([head, "Each limit alone:", *parts, *lines])
        return Advice(None, None, fitting, designs, limits, text, excluded)
    best = fitting.iloc[0]
    runner = fitting.iloc[1] if len(fitting) > 1 else None
    lines.insert(0, f"Best design within {lim_txt} ({len(fitting)} of {len(designs)} designs fit):")
    lines.insert(1, f"  {best['label']}: {_numbers(best)}")
    if runner is None:
        lines.append("No runner-up: it is the only design within the limits.")
    else:
        d_acc = 100 * (best["acc_mean"] - runner["acc_mean"])
        lines.append(f"Runner-up: {runner['label']}: {_numbers(runner)}")
        lines.append(
            f"  Runner-up vs best: accuracy {-d_acc:+.2f} pp, latency {_delta(runner, best, 'latency_ms_p50', 'ms')}, "
            f"memory {_delta(runner, best, 'peak_mem_mb', 'MB')}, "
            f"params {_delta(runner, best, 'params_total', 'params')}."
        )
        noise = np.nansum([best["acc_std"], runner["acc_std"]])
        if np.isnan(best["acc_std"]) or np.isnan(runner["acc_std"]):
            lines.append("  One seed for at least one of them: whether the difference is real cannot be assessed.")
        elif abs(d_acc) <= 100 * noise:
            lines.append(f"  The difference is within seed noise (±1 std intervals overlap: {100 * noise:.2f} pp).")
    return Advice(best, runner, fitting, designs, limits, "\n".join(lines))


def _delta(a: pd.Series, b: pd.Series, col: str, unit: str) -> str:
    d = float(a[col] - b[col])
    if np.isnan(d):
        return "unknown"
    if unit == "params":
        return f"{'+' if d >= 0 else '-'}{fmt_params(abs(d))}"
    return f"{d:+.3g} {unit}"
