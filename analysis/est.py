"""Ensemble Switchover Threshold (EST) from the epochs table (DESIGN section 6).

Groups. EST is computed per (dataset, family, k, fit), k = members of the ensemble classes. The single-network
baseline (design_class "single") of the same dataset, family and fit joins every k group; a DCT sweep without
"single" rows uses its S = 1 "dct" rows as the baseline. Ensemble rows with one member are otherwise left out.

Cells. For each budget and epoch, every class is summarised over seeds by the mean test_acc at that epoch. When a
seed has several rows for the same class and budget (several configurations in one sweep), they are averaged first
and the pooling is noted.

Tie rule (one rule, used everywhere, including the error bars of the figures): a class's interval is
mean +/- 1 sample standard deviation over seeds (`tie_rule="std"`, the default) or mean +/- the t-based 95%
confidence half-width t(0.975, n-1) * std / sqrt(n) (`tie_rule="ci95"`). Class A beats class B when A's interval
lies entirely above B's; overlapping intervals are a tie. With fewer than two seeds for a compared class the interval
does not exist: the cell is decided by the means alone and marked not assessable (only equal means tie).

Winner of a cell: the class with the best mean. If it is an ensemble class that beats single, the cell is that
class, or "all ensembles" when at least two ensemble classes are present and every one of them beats single. If the
best ensemble does not beat single, or single is best but the best ensemble is within noise of it, the cell is
"tie". A cell without single or without any ensemble is "missing".

EST at an epoch: the smallest budget B in the grid such that ensembles win (a class or "all ensembles"; a tie is not
a win) at B and at every larger budget with data at that epoch. Its uncertainty: the true switchover lies in the
budget interval (last non-winning budget, EST], and the report says whether the cells at and below it were decided
beyond the seed noise. The overall EST is the EST at the final epoch of the grid. Per budget, the earliest epoch is
the first epoch from which ensembles win at that and every later epoch with data.

Budget deviation. A design's parameter count differs from its budget by `budget_deviation_pct` (integer knobs and the
fit rule). A cell whose class's design deviates by more than `max_budget_deviation_pct` (default 10%, the spec key of
the same name) is kept but marked (`over_budget_deviation`, `deviating_classes`); an EST whose cell or the cell below
it is marked says so (`est_deviation_marked`, and the decision text).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.store import over_seeds
from spaces.classes import ENSEMBLE_CLASSES, FIXED_CLASSES

# The classes EST compares, in a fixed order (ties in the mean go to the earlier one).
CLASS_ORDER = FIXED_CLASSES
MISSING = "missing"
WIN_CATEGORIES = (*ENSEMBLE_CLASSES, "all ensembles")
TIE_RULES = ("std", "ci95")
# Designs further than this from their budget (in %, either side) are marked wherever they are compared.
MAX_BUDGET_DEVIATION_PCT = 10.0
GROUP_KEYS = ["dataset", "family", "k", "fit"]

TIE_RULE_TEXT = {
    "std": "mean ± 1 sample std over seeds; overlapping intervals are a tie",
    "ci95": "mean ± t-based 95% CI half-width over seeds; overlapping intervals are a tie",
}


def fmt_params(n: float | None) -> str:
    """Return a parameter count as millions with 3 significant digits, e.g. 123456 -> "0.123M" ("n/a" if None)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    return f"{float(n) / 1e6:.3g}M"


def fmt_width(width: float | None) -> str:
    """Return a member width as its knob reads: "16" for a whole width (the store keeps widths as doubles), "11.31"
    for a real one (width_granularity = "channel"), "n/a" if None."""
    if width is None or (isinstance(width, float) and math.isnan(width)):
        return "n/a"
    return f"{float(width):g}"


def half_width(std: float, n: int, tie_rule: str = "std") -> float:
    """Return the half-width of a class's seed interval (same unit as `std`); NaN with fewer than 2 seeds."""
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    if n < 2 or std is None or not np.isfinite(std):
        return float("nan")
    if tie_rule == "std":
        return float(std)
    from scipy.stats import t  # a declared dependency; imported here so importing est stays light

    return float(t.ppf(0.975, n - 1) * std / math.sqrt(n))


def assign_groups(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Return (rows with a `k` column and a `role` column, notes): baseline rows are repeated for every k group.

    `role` is the design class, except that a DCT S = 1 baseline is role "single". Works for the trials and the
    epochs table alike (both carry the identity columns).
    """
    notes: list[str] = []
    if df.empty:
        return df.assign(k=pd.Series(dtype="int64"), role=pd.Series(dtype="object")), notes
    df = df.copy()
    df["role"] = df["design_class"].astype(str)
    # (dataset, family) pairs with a single row, as one index: a membership test for every row at once.
    pair = pd.MultiIndex.from_frame(df[["dataset", "family"]].astype(object))
    has_single = pair[(df["role"] == "single").to_numpy()].unique()
    dct1 = (df["role"] == "dct") & (df["members"] == 1)
    promote = dct1 & ~pd.Series(pair.isin(has_single), index=df.index)
    if promote.any():
        df.loc[promote, "role"] = "single"
        notes.append("no 'single' rows: the S = 1 dct rows serve as the single-network baseline")
    dropped = dct1 & ~promote
    if dropped.any():
        notes.append(f"{int(dropped.sum())} dct rows with S = 1 left out of EST (a 'single' baseline exists)")
    ens = df[df["role"].isin(ENSEMBLE_CLASSES) & (df["members"] > 1)].copy()
    ens["k"] = ens["members"].astype(int)
    base = df[df["role"] == "single"]
    by_pair = dict(iter(base.groupby(["dataset", "family"], sort=False, dropna=False)))
    parts = [ens]
    for (dataset, family, k, fit), _ in ens.groupby(GROUP_KEYS, sort=True):
        b = by_pair.get((dataset, family), base.iloc[:0])
        same_fit = b[b["fit"] == fit]
        if same_fit.empty and not b.empty:
            notes.append(f"{dataset}/{family}: no single rows with fit={fit}; used single rows of any fit")
            same_fit = b
        parts.append(same_fit.assign(k=k, fit=fit))
    out = pd.concat(parts, ignore_index=True) if parts else ens
    return out, notes


def cell_stats(epochs: pd.DataFrame, tie_rule: str = "std") -> tuple[pd.DataFrame, list[str]]:
    """Return (per (group, role, budget, epoch) stats, notes).

    Columns: GROUP_KEYS, role, budget, epoch, n_seeds, mean_acc, std_acc, hw_acc (half-width by the tie rule; NaN
    below 2 seeds), member_mean_acc (mean over seeds of member_acc_mean), cum_time_s (mean over seeds). Accuracies
    are fractions.
    """
    grouped, notes = assign_groups(epochs)
    cols = GROUP_KEYS + ["role", "budget", "epoch"]
    empty = pd.DataFrame(columns=cols + ["n_seeds", "mean_acc", "std_acc", "hw_acc", "member_mean_acc", "cum_time_s"])
    if grouped.empty:
        return empty, notes
    grouped = grouped[np.isfinite(grouped["test_acc"].astype(float))]
    if "member_acc_mean" not in grouped:
        grouped = grouped.assign(member_acc_mean=np.nan)
    if "cum_time_s" not in grouped:
        grouped = grouped.assign(cum_time_s=np.nan)
    per_seed = grouped.groupby(cols + ["seed"], sort=True).agg(
        test_acc=("test_acc", "mean"),
        member_acc_mean=("member_acc_mean", "mean"),
        cum_time_s=("cum_time_s", "mean"),
        n_rows=("test_acc", "size"),
    )
    pooled = per_seed[per_seed["n_rows"] > 1]
    if not pooled.empty:
        notes.append(
            f"{len(pooled)} (class, budget, seed, epoch) cells hold rows of several configurations; they were averaged"
        )
    stats = over_seeds(per_seed.reset_index(), cols, "test_acc", "mean_acc", "std_acc",
                       member_mean_acc="member_acc_mean", cum_time_s="cum_time_s")  # fmt: skip
    stats["hw_acc"] = half_widths(stats["std_acc"].to_numpy(float), stats["n_seeds"].to_numpy(), tie_rule)
    stats["budget_deviation_pct"] = float("nan")
    if "budget_deviation_pct" in grouped and not stats.empty:
        # The deviation furthest from 0 among the cell's rows (several configurations may share a cell).
        dev = _furthest_from_zero(grouped, cols, "budget_deviation_pct")
        stats["budget_deviation_pct"] = dev.reindex(pd.MultiIndex.from_frame(stats[cols])).to_numpy()
    return stats, notes


def half_widths(std: np.ndarray, n: np.ndarray, tie_rule: str = "std") -> np.ndarray:
    """Return `half_width` of every (std, n) pair at once (same unit as `std`; NaN below 2 seeds)."""
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    ok = (n >= 2) & np.isfinite(std)
    out = np.full(std.shape, np.nan)
    if tie_rule == "std":
        out[ok] = std[ok]
    elif ok.any():
        from scipy.stats import t

        out[ok] = t.ppf(0.975, n[ok] - 1) * std[ok] / np.sqrt(n[ok])
    return out


def _furthest_from_zero(df: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
    """Return per group of `df` by `keys` the value of `column` furthest from 0 (the first such row on a tie in
    absolute value, NaN where the group has no value), indexed by the keys."""
    v = df[column].astype(float)
    has = v.notna().to_numpy()
    groups = df.groupby(keys, sort=True, dropna=False)
    out = pd.Series(np.nan, index=groups.size().index, dtype=float)
    if has.any():
        ab = v.abs()
        # The rows holding their group's largest |value|; the first of them per group, in row order.
        top = has & (ab == ab.groupby([df[k] for k in keys], sort=True, dropna=False).transform("max")).to_numpy()
        first = v[top].groupby([df.loc[top, k] for k in keys], sort=True, dropna=False).first()
        out.loc[first.index] = first.to_numpy()
    return out


def _beats(a: pd.Series, b: pd.Series) -> bool:
    """True when class a beats class b: interval above b's, or (no interval) mean above b's."""
    if np.isfinite(a["hw_acc"]) and np.isfinite(b["hw_acc"]):
        return bool(a["mean_acc"] - a["hw_acc"] > b["mean_acc"] + b["hw_acc"])
    return bool(a["mean_acc"] > b["mean_acc"])


def _decide(cell: pd.DataFrame) -> dict:
    """Return the decision for one (group, budget, epoch) cell given its per-role stats rows."""
    by_role = {r: row for r, row in zip(cell["role"], cell.to_dict("records"), strict=True)}
    by_role = {r: pd.Series(v) for r, v in by_role.items()}
    ens = [r for r in ENSEMBLE_CLASSES if r in by_role]
    n_min = int(cell["n_seeds"].min())
    out = {
        "n_seeds_min": n_min,
        "n_seeds_max": int(cell["n_seeds"].max()),
        "assessable": bool(n_min >= 2),
        "classes": ",".join(r for r in CLASS_ORDER if r in by_role),
        "single_mean_acc": float(by_role["single"]["mean_acc"]) if "single" in by_role else float("nan"),
        "best_ensemble": None,
        "best_ensemble_mean_acc": float("nan"),
        "margin_pp": float("nan"),
        "noise_pp": float("nan"),
    }
    if "single" not in by_role or not ens:
        out.update(winner=MISSING, best_class=None, ensembles_win=False)
        return out
    single = by_role["single"]
    # Best-mean ensemble; ties in the mean go to the earlier class in CLASS_ORDER, for a stable answer.
    best_ens = max(ens, key=lambda r: (by_role[r]["mean_acc"], -ENSEMBLE_CLASSES.index(r)))
    be = by_role[best_ens]
    out.update(
        best_ensemble=best_ens,
        best_ensemble_mean_acc=float(be["mean_acc"]),
        margin_pp=100.0 * float(be["mean_acc"] - single["mean_acc"]),
        noise_pp=100.0 * float(be["hw_acc"] + single["hw_acc"]),
    )
    if be["mean_acc"] > single["mean_acc"]:
        best_class = best_ens
        if not _beats(be, single):
            winner = "tie"
        elif len(ens) >= 2 and all(_beats(by_role[r], single) for r in ens):
            winner = "all ensembles"
        else:
            winner = best_ens
    elif be["mean_acc"] == single["mean_acc"]:
        best_class, winner = "single", "tie"
    else:
        best_class = "single"
        winner = "single" if _beats(single, be) else "tie"
    out.update(winner=winner, best_class=best_class, ensembles_win=winner in WIN_CATEGORIES)
    return out


def winner_grid(
    epochs: pd.DataFrame, tie_rule: str = "std", max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Return (grid, stats, notes): one grid row per (dataset, family, k, fit, budget, epoch).

    grid columns: GROUP_KEYS, budget, epoch, winner (a class of CLASS_ORDER, "all ensembles", "tie" or "missing"),
    best_class, ensembles_win, n_seeds_min/max, assessable, classes, single_mean_acc, best_ensemble,
    best_ensemble_mean_acc (fractions),
    margin_pp (best ensemble minus single, percentage points), noise_pp (sum of the two half-widths, pp),
    deviating_classes (the cell's classes whose design is further than `max_budget_deviation_pct` % from the budget,
    comma-separated), over_budget_deviation (any such class), max_budget_deviation_pct.
    stats is `cell_stats`'s table (with budget_deviation_pct per class, %).
    """
    stats, notes = cell_stats(epochs, tie_rule)
    keys = GROUP_KEYS + ["budget", "epoch"]
    if stats.empty:
        return pd.DataFrame(columns=keys + ["winner", "ensembles_win"]), stats, notes
    # Every (budget, epoch) of a group's grid gets a row, so missing cells show as "missing".
    rows = []
    for gkey, g in stats.groupby(GROUP_KEYS, sort=True):
        cells = {(b, e): c for (b, e), c in g.groupby(["budget", "epoch"], sort=True)}
        for b in sorted(g["budget"].unique()):
            for e in sorted(g["epoch"].unique()):
                cell = cells.get((b, e))
                if cell is None:
                    d = {
                        "winner": MISSING,
                        "best_class": None,
                        "ensembles_win": False,
                        "n_seeds_min": 0,
                        "n_seeds_max": 0,
                        "assessable": False,
                        "classes": "",
                    }
                else:
                    d = _decide(cell)
                far = [] if cell is None else [
                    r for r, dev in zip(cell["role"], cell["budget_deviation_pct"], strict=True)
                    if np.isfinite(dev) and abs(dev) > max_budget_deviation_pct
                ]  # fmt: skip
                d.update(deviating_classes=",".join(r for r in CLASS_ORDER if r in far),
                         over_budget_deviation=bool(far), max_budget_deviation_pct=float(max_budget_deviation_pct))
                rows.append(dict(zip(GROUP_KEYS, gkey, strict=True), budget=int(b), epoch=int(e), **d))
    return pd.DataFrame(rows), stats, notes


def _est_at(cells: pd.DataFrame) -> dict:
    """Return the EST decision over one epoch's cells (columns budget, winner, ensembles_win, ...)."""
    have = cells[cells["winner"] != MISSING].sort_values("budget")
    missing = sorted(int(b) for b in cells.loc[cells["winner"] == MISSING, "budget"])
    res = {
        "status": "no data",
        "est_budget": None,
        "below_budget": None,
        "below_winner": None,
        "est_winner": None,
        "est_margin_pp": None,
        "est_noise_pp": None,
        "est_assessable": None,
        "decision": None,
        "est_deviation_marked": None,
        "missing_budgets": missing,
    }
    if have.empty:
        return res
    wins = have["ensembles_win"].tolist()
    budgets = [int(b) for b in have["budget"]]
    if not wins[-1]:
        res["status"] = "none"
        return res
    i0 = len(wins) - 1
    while i0 > 0 and wins[i0 - 1]:
        i0 -= 1
    at = have.iloc[i0]
    res.update(
        status="found",
        est_budget=budgets[i0],
        est_winner=at["winner"],
        est_margin_pp=_num(at["margin_pp"]),
        est_noise_pp=_num(at["noise_pp"]),
        est_assessable=bool(at["assessable"]),
    )
    if i0 > 0:
        below = have.iloc[i0 - 1]
        res.update(below_budget=budgets[i0 - 1], below_winner=below["winner"])
    res["decision"] = _decision_text(res, bool(have.iloc[i0 - 1]["assessable"]) if i0 > 0 else None)
    # The EST rests on its own cell and the one below it (the two ends of the switchover interval).
    resting = have.iloc[max(0, i0 - 1) : i0 + 1]
    if "over_budget_deviation" in resting:
        marked = resting[resting["over_budget_deviation"].astype(bool)]
        res["est_deviation_marked"] = not marked.empty
        if not marked.empty:
            pct = float(marked["max_budget_deviation_pct"].iloc[0])
            where = "; ".join(f"{fmt_params(b)}: {c}" for b, c in zip(marked["budget"], marked["deviating_classes"],
                                                                        strict=True))
            res["decision"] += f"; rests on a design further than {pct:g}% from its budget ({where})"
    return res


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def _decision_text(res: dict, below_assessable: bool | None) -> str:
    """Say how firm the EST decision is: is the win at EST, and the non-win below it, beyond seed noise?"""
    if not res["est_assessable"]:
        return "1 seed: decided by means only, ties cannot be assessed"
    parts = [f"Win at EST beyond noise (margin {res['est_margin_pp']:.2f} pp > noise {res['est_noise_pp']:.2f} pp)"]
    if res["below_budget"] is None:
        parts.append("EST is the smallest budget in the grid, so the switchover may lie lower")
    elif res["below_winner"] == "tie":
        parts.append("the budget below is a tie (within noise), so the switchover is not sharp")
    elif below_assessable:
        parts.append(f"the budget below is a clear '{res['below_winner']}' win")
    else:
        parts.append(f"the budget below ('{res['below_winner']}') was decided by means only")
    return "; ".join(parts)


def _earliest_epoch(cells: pd.DataFrame) -> dict:
    """Return the earliest epoch from which ensembles win at every later epoch (cells of one budget)."""
    have = cells[cells["winner"] != MISSING].sort_values("epoch")
    out = {
        "earliest_epoch": None,
        "last_epoch": None,
        "epochs_missing": sorted(int(e) for e in cells.loc[cells["winner"] == MISSING, "epoch"]),
    }
    if have.empty:
        return out
    epochs = [int(e) for e in have["epoch"]]
    wins = have["ensembles_win"].tolist()
    out["last_epoch"] = epochs[-1]
    if wins[-1]:
        i0 = len(wins) - 1
        while i0 > 0 and wins[i0 - 1]:
            i0 -= 1
        out["earliest_epoch"] = epochs[i0]
    return out


@dataclass
class ESTResult:
    """EST for every (dataset, family, k, fit) group; see the module docstring for the rules."""

    tie_rule: str
    grid: pd.DataFrame
    stats: pd.DataFrame
    summary: pd.DataFrame
    per_epoch: pd.DataFrame
    earliest: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT

    def to_dict(self) -> dict:
        """Return a JSON-able dict: tie rule, notes, and per group the summary, per-epoch EST and earliest epochs."""
        groups = []
        for rec in self.summary.to_dict("records"):
            sel = {k: rec[k] for k in GROUP_KEYS}

            def _pick(df, sel=sel):
                m = np.ones(len(df), dtype=bool)
                for k, v in sel.items():
                    m &= (df[k] == v).to_numpy()
                return df[m].drop(columns=GROUP_KEYS)

            groups.append(
                {
                    "group": _jsonable(sel),
                    "overall": _jsonable({k: v for k, v in rec.items() if k not in GROUP_KEYS}),
                    "per_epoch": _jsonable(_pick(self.per_epoch).to_dict("records")),
                    "earliest_epoch_per_budget": _jsonable(_pick(self.earliest).to_dict("records")),
                    "cells": _jsonable(self._cells(_pick(self.grid), rec.get("final_epoch"))),
                }
            )
        return {
            "tie_rule": self.tie_rule,
            "max_budget_deviation_pct": self.max_budget_deviation_pct,
            "tie_rule_text": TIE_RULE_TEXT[self.tie_rule],
            "notes": self.notes,
            "groups": groups,
        }

    @staticmethod
    def _cells(grid: pd.DataFrame, epoch) -> list[dict]:
        """Return the winner cells of one group at `epoch` (the final one): budget, winner and the deviation flag."""
        if grid.empty or epoch is None or pd.isna(epoch):
            return []
        keep = ["budget", "winner", "over_budget_deviation", "deviating_classes"]
        at = grid[grid["epoch"] == int(epoch)].sort_values("budget")
        return at[[c for c in keep if c in at]].to_dict("records")

    def to_json(self, indent: int = 2) -> str:
        """Return `to_dict()` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def summary_markdown(self) -> str:
        """Return the overall EST per group as a Markdown table (budgets formatted in M parameters)."""
        if self.summary.empty:
            return "_No group with both a single network and an ensemble class: EST cannot be computed._"
        t = self.summary
        view = pd.DataFrame(
            {
                "dataset": t["dataset"],
                "family": t["family"],
                "k": t["k"],
                "fit": t["fit"],
                "final epoch": t["final_epoch"],
                "seeds": t["seeds"],
                "EST (params)": [
                    fmt_params(b) if s == "found" else ("no EST in grid" if s == "none" else s)
                    for b, s in zip(t["est_budget"], t["status"], strict=True)
                ],
                "switchover interval": t["interval"],
                "earliest epoch at EST": t["est_earliest_epoch"].map(
                    lambda e: "" if e is None or pd.isna(e) else int(e)
                ),
                "decision": t["decision"].fillna(""),
            }
        )
        return view.to_markdown(index=False)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating | float):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if x is pd.NA or x is pd.NaT:
        return None
    return x


def compute_est(
    epochs: pd.DataFrame,
    trials: pd.DataFrame | None = None,
    tie_rule: str = "std",
    max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
) -> ESTResult:
    """Return the EST of every (dataset, family, k, fit) group in an epochs table (see module docstring).

    The designs' `budget_deviation_pct` comes from `trials` (by trial_id) when the epochs table lacks it; cells with
    a design further than `max_budget_deviation_pct` % from its budget are marked.

    If `trials` is given, epoch rows of trials whose status is "error" are dropped (their numbers are not a design's
    outcome); rows of running and diverged trials are kept (what they measured is real) and the report lists them.
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    need = ["trial_id", "dataset", "family", "design_class", "members", "fit", "budget", "seed", "epoch", "test_acc"]
    missing = [c for c in need if c not in epochs.columns]
    if missing and not epochs.empty:
        raise ValueError(f"epochs table lacks columns {missing}")
    notes: list[str] = []
    if trials is not None and not trials.empty and not epochs.empty:
        bad = set(trials.loc[trials["status"] == "error", "trial_id"])
        if bad:
            epochs = epochs[~epochs["trial_id"].isin(bad)]
            notes.append(f"epoch rows of {len(bad)} trial(s) with status 'error' left out")
    if trials is not None and "budget_deviation_pct" not in epochs and {"trial_id", "budget_deviation_pct"} <= set(
        trials.columns
    ):
        deviation = trials.drop_duplicates("trial_id").set_index("trial_id")["budget_deviation_pct"]
        epochs = epochs.assign(budget_deviation_pct=epochs["trial_id"].map(deviation).astype(float))
    grid, stats, gnotes = winner_grid(epochs, tie_rule, max_budget_deviation_pct)
    notes += gnotes
    summary_rows, epoch_rows, earliest_rows = [], [], []
    if not grid.empty:
        for gkey, g in grid.groupby(GROUP_KEYS, sort=True):
            gd = dict(zip(GROUP_KEYS, gkey, strict=True))
            for e, ge in g.groupby("epoch", sort=True):
                epoch_rows.append({**gd, "epoch": int(e), **_est_at(ge)})
            for b, gb in g.groupby("budget", sort=True):
                earliest_rows.append({**gd, "budget": int(b), **_earliest_epoch(gb)})
            summary_rows.append({**gd, **_summary(g, epoch_rows[-1], earliest_rows, tie_rule)})
    # Nullable integers: "no EST" / "never" stay missing instead of turning the column into floats.
    summary = _nullable_ints(pd.DataFrame(summary_rows), ["est_budget", "below_budget", "est_earliest_epoch"])
    per_epoch = _nullable_ints(pd.DataFrame(epoch_rows), ["est_budget", "below_budget"])
    earliest = _nullable_ints(pd.DataFrame(earliest_rows), ["earliest_epoch", "last_epoch"])
    if not summary.empty:
        for gd, s in zip(summary[GROUP_KEYS].to_dict("records"), summary["status"], strict=True):
            if s == "none":
                notes.append(f"{gd['dataset']}/{gd['family']} k={gd['k']} fit={gd['fit']}: no EST in the grid")
    return ESTResult(tie_rule, grid, stats, summary, per_epoch, earliest, notes, float(max_budget_deviation_pct))


def _nullable_ints(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    for c in cols:
        if c in df:
            df[c] = pd.array([None if v is None or pd.isna(v) else int(v) for v in df[c]], dtype="Int64")
    return df


def _summary(g: pd.DataFrame, final: dict, earliest_rows: list[dict], tie_rule: str) -> dict:
    """Return the overall EST row of one group from its final-epoch decision."""
    have = g[g["winner"] != MISSING]
    n_lo = int(have["n_seeds_min"].min()) if not have.empty else 0
    n_hi = int(have["n_seeds_max"].max()) if not have.empty else 0
    seeds = f"{n_lo}" if n_lo == n_hi else f"{n_lo}-{n_hi}"
    status = final["status"]
    est = final["est_budget"]
    if status == "found":
        lo = "below grid" if final["below_budget"] is None else fmt_params(final["below_budget"])
        interval = f"({lo}, {fmt_params(est)}]"
        e_at = next(
            (
                r["earliest_epoch"]
                for r in earliest_rows
                if r["budget"] == est and all(r[k] == g[k].iloc[0] for k in GROUP_KEYS)
            ),
            None,
        )
    else:
        interval, e_at = "", None
    decision = final["decision"]
    if status == "none":
        decision = "ensembles do not win at the largest budget with data at the final epoch"
    if n_hi <= 1:
        tie_note = "1 seed: ties cannot be assessed"
    elif n_lo <= 1:
        tie_note = "some cells have 1 seed: those are decided by means only"
    else:
        tie_note = TIE_RULE_TEXT[tie_rule]
    return {
        "final_epoch": int(g["epoch"].max()),
        "seeds": seeds,
        "ties_assessable": n_lo >= 2,
        "status": status,
        "est_budget": est,
        "est_params": fmt_params(est) if est is not None else None,
        "below_budget": final["below_budget"],
        "interval": interval,
        "est_earliest_epoch": e_at,
        "est_winner": final["est_winner"],
        "est_margin_pp": final["est_margin_pp"],
        "est_noise_pp": final["est_noise_pp"],
        "below_winner": final["below_winner"],
        "decision": decision,
        "est_deviation_marked": final.get("est_deviation_marked"),
        "deviating_budgets": sorted(int(b) for b in g.loc[g["over_budget_deviation"].astype(bool), "budget"].unique())
        if "over_budget_deviation" in g else [],
        "tie_note": tie_note,
        "missing_budgets_final_epoch": final["missing_budgets"],
        "budgets": sorted(int(b) for b in g["budget"].unique()),
    }
