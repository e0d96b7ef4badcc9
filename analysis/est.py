"""Ensemble Switchover Threshold (EST) from the epochs table (DESIGN section 6).

Groups. EST is computed per (dataset, family, k, fit), k = members of the ensemble classes. The single-network
baseline (design_class "single") of the same dataset, family and fit joins every k group; a DCT sweep without
"single" rows uses its S = 1 "dct" rows as the baseline. Ensemble rows with one member are otherwise left out.

Cells. For each budget and epoch, every class is summarised over seeds by the mean, the sample std and the number of
seeds of test_acc at that epoch. When a seed has several rows for the same class and budget (several configurations
in one sweep), they are averaged first and the pooling is noted.

Verdicts (`tie_rule = "welch"`, the default; `Rule`). Each ensemble class present is compared with single by a Welch
t-test on the accuracy difference (scipy.stats): its (1 - level) t-interval, the two-sided p-value of no difference,
two one-sided tests (TOST) of |difference| < `equivalence_pp`, and the probability of outperforming (a seed of the
ensemble beating a seed of single, normal model; Bouthillier et al., MLSys 2021). The p-values of each (group, epoch)
row are adjusted for multiplicity (`error_control`: Benjamini-Hochberg by default, Holm, or none). Under an adaptive
seed policy, a comparison read at look k (the looks are the seed counts at which verdicts are read; k by the smaller
seed count of its two classes) is tested at the nominal level of O'Brien-Fleming boundaries for those looks: the
boundaries c / sqrt(t_k), t_k = n_k / max, with c such that the statistics of all looks (correlated as
sqrt(t_i / t_j)) stay inside with probability 1 - alpha (scipy's multivariate normal), so adding seeds where a cell is
open does not inflate the error. For looks at 2, 4, 6, 8 seeds the levels are 5e-5, 0.0042, 0.019, 0.043: 2 seeds are
a screen, nearly all of alpha is kept for the last look. A class **wins** (or **loses**) when its adjusted p is
below the level, is **equivalent** when it does not differ and the adjusted TOST p is below the level, and is
**unresolved** otherwise (including a class with fewer than 2 seeds, which no test can decide): unresolved asks for
more seeds, equivalent is an answer. With 2 seeds no exact test reaches p < 0.05, so 2 seeds are a screen.

Winner of a cell: an ensemble class that wins (the best-mean one among several), or "all ensembles" when at least two
ensemble classes are present and every one wins; else "unresolved" when a class is unresolved, else "equivalent"
when a class is equivalent, else "single" (every ensemble loses). A cell without single or without any ensemble is
"missing".

Overlap rules, kept by name for comparison with earlier reports: a class's interval is mean +/- 1 sample std
(`tie_rule="std"`) or mean +/- the t-based 95% half-width (`"ci95"`); A beats B when A's interval lies entirely above
B's, overlapping intervals are a "tie"; with fewer than 2 seeds the means decide (not assessable). Their false-win
rate depends on the seed count (about 22% at 2 seeds for identical classes), which is why they are not the default.

EST at an epoch: the smallest budget B in the grid such that ensembles win (a class or "all ensembles") at B and at
every larger budget with data at that epoch. The true switchover lies in (last non-winning budget, EST]; the decision
text says what the budget below is (single, equivalent or unresolved). The overall EST is the EST at the final
epoch. Its sampling uncertainty: seeds are resampled with replacement within each cell (cells as strata, as rliable
does) and the EST recomputed with the same rule; the percentile interval of those ESTs is reported beside it
(`est_interval`). Per budget, the earliest epoch is the first epoch from which ensembles win at that and every later
epoch with data.

Budget deviation. A design's parameter count differs from its budget by `budget_deviation_pct` (integer knobs and the
fit rule). A cell is marked (`over_budget_deviation`, `deviating_classes`) only when a design that decides it (the
classes whose verdict makes the cell's category, and single) is further than `max_budget_deviation_pct` (default 10%)
from the budget. dct is never marked: its division rule sets its size, so it is compared at its real parameter count
(the tables and the explorer show it). An EST whose cell or the cell below it is marked says so.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.store import over_seeds
from spaces.classes import ENSEMBLE_CLASSES, FIXED_CLASSES, RULE_SIZED_CLASSES

# The classes EST compares, in a fixed order (ties in the mean go to the earlier one).
CLASS_ORDER = FIXED_CLASSES
MISSING = "missing"
EQUIVALENT, UNRESOLVED, TIE = "equivalent", "unresolved", "tie"
WIN_CATEGORIES = (*ENSEMBLE_CLASSES, "all ensembles")
# Every category a cell can have, in legend order ("tie" only under the overlap rules).
CATEGORIES = (*CLASS_ORDER, "all ensembles", EQUIVALENT, UNRESOLVED, TIE, MISSING)
DEFAULT_RULE = "welch"
TIE_RULES = ("welch", "std", "ci95")
ERROR_CONTROLS = ("bh", "holm", "none")
# Our choices, a reviewer's usual ones: 5% error level; half a percentage point of accuracy as the equivalence
# margin (below the differences the studies act on, above the 1/450 step of the digits test split).
ALPHA = 0.05
EQUIVALENCE_PP = 0.5
# A seed std below this (a fraction of accuracy) is raised to it, so that identical seeds give a finite statistic.
STD_FLOOR = 1e-6
# Resamples of the EST bootstrap (rliable uses 2,000 for its intervals; 1,000 keeps a report fast at this level).
EST_BOOTSTRAP = 1000
# Above this many resampled seed values the bootstrap uses fewer resamples (never below EST_BOOTSTRAP_MIN), so a
# 65k-cell grid stays a matter of seconds; the summary's n_boot says how many were used.
EST_BOOTSTRAP_MAX_DRAWS = 4_000_000
EST_BOOTSTRAP_MIN = 200
# Resampled seed values decided at once: replicates are decided in blocks of about this many (bounds memory, not a
# speed setting; our choice).
EST_BOOTSTRAP_BLOCK_DRAWS = 250_000
# Designs further than this from their budget (in %, either side) are marked wherever they decide a cell.
MAX_BUDGET_DEVIATION_PCT = 10.0
GROUP_KEYS = ["dataset", "family", "k", "fit"]

TIE_RULE_TEXT = {
    "welch": "Welch t-test per comparison with single; wins/loses, equivalent (TOST) or unresolved",
    "std": "mean ± 1 sample std over seeds; overlapping intervals are a tie",
    "ci95": "mean ± t-based 95% CI half-width over seeds; overlapping intervals are a tie",
}
ERROR_CONTROL_TEXT = {
    "bh": "Benjamini-Hochberg over each epoch's cells",
    "holm": "Holm over each epoch's cells",
    "none": "no multiplicity correction",
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
    """Return the half-width of a class's seed interval (same unit as `std`): the std under "std", the t-based 95%
    half-width otherwise; NaN with fewer than 2 seeds."""
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    if n < 2 or std is None or not np.isfinite(std):
        return float("nan")
    if tie_rule == "std":
        return float(std)
    # "ci95", and "welch" (whose error bars are the t-based 95% interval of each class's mean)
    from scipy.stats import t  # a declared dependency; imported here so importing est stays light

    return float(t.ppf(0.975, n - 1) * std / math.sqrt(n))


# The columns that place an epochs row in its EST cell (assign_groups and the cell keys).
IDENTITY_COLUMNS = ("dataset", "family", "design_class", "members", "fit", "budget", "epoch", "seed")


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
    # Only the columns used: assign_groups copies its rows and repeats the single network's for every k.
    used = [*IDENTITY_COLUMNS, "test_acc", "member_acc_mean", "cum_time_s", "budget_deviation_pct"]
    grouped, notes = assign_groups(epochs[[c for c in epochs.columns if c in used]])
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


@dataclass(frozen=True)
class Rule:
    """How a cell is decided (see the module docstring).

    `name`: "welch" (a test per comparison) or an overlap rule kept for comparison with earlier reports ("std",
    "ci95"). `alpha`: the error level of every verdict (a fraction). `looks`: the seed counts at which an adaptive
    seed policy reads verdicts (its first round, then each look, e.g. (2, 4, 6, 8)); alpha is spent over them (see
    the module docstring); empty: one look, every comparison at alpha.
    `equivalence_pp`: the margin (percentage points of accuracy) inside which two classes are equivalent.
    `error_control`: how the level holds over the comparisons of one epoch's row of a group's grid: "bh"
    (Benjamini-Hochberg, false discovery rate), "holm" (family-wise) or "none" (per comparison).
    """

    name: str = DEFAULT_RULE
    alpha: float = ALPHA
    equivalence_pp: float = EQUIVALENCE_PP
    error_control: str = "bh"
    looks: tuple[int, ...] = ()

    def __post_init__(self):
        if self.name not in TIE_RULES:
            raise ValueError(f"tie_rule = {self.name!r}: must be one of {TIE_RULES}")
        if self.error_control not in ERROR_CONTROLS:
            raise ValueError(f"error_control = {self.error_control!r}: must be one of {ERROR_CONTROLS}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha = {self.alpha!r}: must lie in (0, 1)")
        if not self.equivalence_pp > 0.0:
            raise ValueError(f"equivalence_pp = {self.equivalence_pp!r}: must be > 0 (percentage points)")
        looks = tuple(int(n) for n in self.looks)
        if any(b <= a for a, b in zip(looks, looks[1:], strict=False)) or (looks and looks[0] < 1):
            raise ValueError(f"looks = {list(self.looks)!r}: must be increasing seed counts >= 1")
        object.__setattr__(self, "looks", looks)

    def spent(self) -> np.ndarray:
        """Return the nominal two-sided level of each look (fractions): O'Brien-Fleming boundaries (see the module
        docstring); [alpha] with one look."""
        if len(self.looks) <= 1:
            return np.array([self.alpha])
        return _obrien_fleming(self.alpha, self.looks).copy()

    def level_at(self, n_seeds) -> np.ndarray:
        """Return the level (fraction) a comparison whose smaller class has `n_seeds` seeds is tested at: its look's
        increment (the first look's below it, the last look's above it)."""
        spent = self.spent()
        if len(spent) == 1:
            return np.full(np.shape(n_seeds), spent[0])
        k = np.searchsorted(np.asarray(self.looks), np.asarray(n_seeds), side="right") - 1
        return spent[np.clip(k, 0, len(spent) - 1)]

    @property
    def level(self) -> float:
        """The level of the last (or only) look, a fraction."""
        return float(self.spent()[-1])

    def text(self) -> str:
        """Return one line saying how cells were decided (for captions and est.json)."""
        if self.name != "welch":
            return TIE_RULE_TEXT[self.name]
        if len(self.looks) > 1:
            at = ", ".join(f"{lv:.2g} at {n}" for n, lv in zip(self.looks, self.spent(), strict=True))
            level = f"alpha {self.alpha:g} over the looks (O'Brien-Fleming levels {at} seeds)"
        else:
            level = f"level {self.alpha:g}"
        return (f"Welch t-test per comparison with single at {level}, "
                f"{ERROR_CONTROL_TEXT[self.error_control]}; equivalent = two one-sided tests inside "
                f"±{self.equivalence_pp:g} pp; unresolved = neither (more seeds needed)")  # fmt: skip


@functools.lru_cache(maxsize=64)
def _obrien_fleming(alpha: float, looks: tuple[int, ...]) -> np.ndarray:
    """Return the nominal two-sided levels of O'Brien-Fleming boundaries at looks with information fractions
    looks / looks[-1]: c / sqrt(t_k) with P(every |Z_k| < c / sqrt(t_k)) = 1 - alpha, corr(Z_i, Z_j) = sqrt(t_i / t_j).
    """
    from scipy import stats as st
    from scipy.optimize import brentq

    t = np.asarray(looks, dtype=float) / looks[-1]
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    mvn = st.multivariate_normal(mean=np.zeros(len(t)), cov=cov)

    def inside(c: float) -> float:  # a fixed generator: the same levels on every run
        b = c / np.sqrt(t)
        return mvn.cdf(b, lower_limit=-b, rng=np.random.default_rng(0)) - (1.0 - alpha)

    c = brentq(inside, 0.5, 12.0, xtol=1e-6)
    return 2.0 * st.norm.sf(c / np.sqrt(t))


def welch(m1, s1, n1, m2, s2, n2, level: float, margin: float) -> dict[str, np.ndarray]:
    """Return the Welch comparison of class 1 with class 2 from their seed means, sample stds and seed counts
    (arrays, accuracies as fractions), element-wise.

    Keys: diff (m1 - m2), ci_lo / ci_hi (the two-sided (1 - level) Welch t-interval of the difference), p (two-sided
    p-value of no difference), p_eq (two one-sided tests of |difference| < `margin`, the larger p), p_outperform (the
    probability that a seed of 1 beats a seed of 2 under a normal model of the seed noise, Phi(diff / sqrt(s1^2 +
    s2^2)), as Bouthillier et al. 2021 report it). NaN where a class has fewer than 2 seeds.
    """
    from scipy import stats as st  # a declared dependency; imported here so importing est stays light

    m1, s1, n1, m2, s2, n2 = (np.asarray(x, dtype=float) for x in (m1, s1, n1, m2, s2, n2))
    ok = (n1 >= 2) & (n2 >= 2) & np.isfinite(m1) & np.isfinite(m2)
    # Equal seeds give a zero std; a tiny floor keeps the statistic finite (a difference is then decisive).
    v1 = np.where(ok, np.maximum(np.nan_to_num(s1), STD_FLOOR) ** 2 / np.where(ok, n1, 2), np.nan)
    v2 = np.where(ok, np.maximum(np.nan_to_num(s2), STD_FLOOR) ** 2 / np.where(ok, n2, 2), np.nan)
    se = np.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (np.where(ok, n1, 2) - 1) + v2**2 / (np.where(ok, n2, 2) - 1))
    diff = np.where(ok, m1 - m2, np.nan)
    half = st.t.ppf(1.0 - level / 2.0, df) * se
    p = 2.0 * st.t.sf(np.abs(diff) / se, df)
    p_eq = np.maximum(st.t.sf((diff + margin) / se, df), st.t.sf((margin - diff) / se, df))
    spread = np.sqrt(np.maximum(np.nan_to_num(s1), STD_FLOOR) ** 2 + np.maximum(np.nan_to_num(s2), STD_FLOOR) ** 2)
    p_out = np.where(ok, st.norm.cdf(diff / spread), np.nan)
    return {"diff": diff, "ci_lo": diff - half, "ci_hi": diff + half, "p": p, "p_eq": p_eq, "p_outperform": p_out}


def adjust_p(p: np.ndarray, family: np.ndarray, method: str) -> np.ndarray:
    """Return p-values adjusted for multiplicity within each family (`family`: an integer id per p-value), by
    "bh" (Benjamini-Hochberg step-up), "holm" (Holm step-down) or "none". NaN p-values stay NaN and do not count."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if method == "none" or not ok.any():
        out[ok] = p[ok]
        return out
    pp, ff = p[ok], np.asarray(family)[ok]
    order = np.lexsort((pp, ff))  # by family, then p
    ps, fs = pp[order], ff[order]
    starts = np.r_[0, np.flatnonzero(np.diff(fs)) + 1]
    counts = np.diff(np.r_[starts, len(fs)])
    m = np.repeat(counts, counts)
    rank = np.arange(len(fs)) - np.repeat(starts, counts) + 1
    if method == "bh":
        raw = ps * m / rank
        # Step-up: the adjusted p is the smallest raw value at this rank or above (a reversed cumulative minimum).
        adj = pd.Series(raw[::-1]).groupby(fs[::-1]).cummin().to_numpy()[::-1]
    elif method == "holm":
        raw = ps * (m - rank + 1)
        adj = pd.Series(raw).groupby(fs).cummax().to_numpy()
    else:
        raise ValueError(f"error_control = {method!r}: must be one of {ERROR_CONTROLS}")
    back = np.empty_like(adj)
    back[order] = np.minimum(adj, 1.0)
    out[ok] = back
    return out


def _cell_frame(stats: pd.DataFrame, group_keys: list[str]) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Return (cells, per-role arrays): one row per (group, budget, epoch) over every budget x epoch of each group
    (absent cells included; budget and epoch as ints), and for each role of CLASS_ORDER its arrays over those cells
    (mean, std, n, hw, dev; NaN / 0 where the role has no row)."""
    keys = group_keys + ["budget", "epoch"]
    b = stats[group_keys + ["budget"]].drop_duplicates()
    e = stats[group_keys + ["epoch"]].drop_duplicates()
    cells = b.merge(e, on=group_keys).sort_values(keys, kind="stable").reset_index(drop=True)
    cols = ["mean_acc", "std_acc", "n_seeds", "hw_acc", "budget_deviation_pct"]
    have = [c for c in cols if c in stats]
    wide = stats.set_index(keys + ["role"])[have].unstack("role")
    idx = pd.MultiIndex.from_frame(cells[keys])
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for r in CLASS_ORDER:
        a = {}
        for c, short in zip(cols, ("mean", "std", "n", "hw", "dev"), strict=True):
            if c in have and (c, r) in wide.columns:
                a[short] = wide[(c, r)].reindex(idx).to_numpy(dtype=float)
            else:
                a[short] = np.full(len(cells), np.nan)
        a["n"] = np.nan_to_num(a["n"]).astype(int)
        a["present"] = np.isfinite(a["mean"])
        arrays[r] = a
    return cells.astype({"budget": int, "epoch": int}), arrays


def _join_roles(masks: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Return, per cell, the comma-separated roles (in CLASS_ORDER) whose mask is True."""
    code = np.zeros(n, dtype=np.int64)
    for i, r in enumerate(CLASS_ORDER):
        code |= masks[r].astype(np.int64) << i
    names = {c: ",".join(r for i, r in enumerate(CLASS_ORDER) if c >> i & 1) for c in np.unique(code)}
    return pd.Series(code).map(names).to_numpy(dtype=object)


def decide_cells(stats: pd.DataFrame, rule: Rule, max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
                 group_keys: list[str] | None = None, winners_only: bool = False) -> pd.DataFrame:  # fmt: skip
    """Return the winner grid of `cell_stats`-shaped rows: one row per (group, budget, epoch), decided by `rule`
    with array operations over all cells at once (see `winner_grid` for the columns). `group_keys` default to
    GROUP_KEYS; the EST bootstrap adds its replicate number to them. With `winners_only` the grid has the cells' keys,
    `winner` and `ensembles_win` only (the same values): what the bootstrap locates its ESTs with."""
    group_keys = group_keys or GROUP_KEYS
    cells, a = _cell_frame(stats, group_keys)
    n = len(cells)
    s = a["single"]
    ens = [r for r in ENSEMBLE_CLASSES if r in a]
    present = np.column_stack([a[r]["present"] for r in ens]) if ens else np.zeros((n, 0), bool)
    means = np.column_stack([a[r]["mean"] for r in ens]) if ens else np.zeros((n, 0))
    n_ens = present.sum(axis=1)
    missing = ~s["present"] | (n_ens == 0)
    # Best-mean ensemble; ties in the mean go to the earlier class in CLASS_ORDER (argmax takes the first).
    best_i = np.argmax(np.where(present, means, -np.inf), axis=1) if ens else np.zeros(n, int)
    ens_arr = np.array(ens, dtype=object)
    best_ens = np.where(missing | (n_ens == 0), None, ens_arr[best_i] if ens else None)
    best_mean = np.where(missing, np.nan, np.take_along_axis(means, best_i[:, None], 1)[:, 0]) if ens else \
        np.full(n, np.nan)  # fmt: skip
    if winners_only:
        if rule.name == "welch":
            winner, _ = _decide_welch(cells, a, ens, rule, group_keys, {}, full=False)
        else:
            winner, _ = _decide_overlap(a, ens, best_i, best_mean, {r: None for r in CLASS_ORDER})
        winner = np.where(missing, MISSING, winner)
        return cells.assign(winner=winner, ensembles_win=np.isin(winner, WIN_CATEGORIES))
    ns = np.column_stack([np.where(a[r]["present"], a[r]["n"], np.nan) for r in CLASS_ORDER])
    with np.errstate(all="ignore"):
        n_min = np.nan_to_num(np.nanmin(np.where(np.isnan(ns), np.inf, ns), axis=1), posinf=0).astype(int)
        n_max = np.nan_to_num(np.nanmax(np.where(np.isnan(ns), -np.inf, ns), axis=1), neginf=0).astype(int)
    out = cells.copy()
    out["n_seeds_min"], out["n_seeds_max"] = n_min, n_max
    out["assessable"] = n_min >= 2
    out["classes"] = _join_roles({r: a[r]["present"] for r in CLASS_ORDER}, n)
    out["single_mean_acc"] = s["mean"]
    out["best_ensemble"] = best_ens
    out["best_ensemble_mean_acc"] = best_mean
    out["margin_pp"] = 100.0 * (best_mean - s["mean"])
    deciders = {r: np.zeros(n, bool) for r in CLASS_ORDER}
    if rule.name == "welch":
        winner, best_cols = _decide_welch(out, a, ens, rule, group_keys, deciders)
    else:
        winner, best_cols = _decide_overlap(a, ens, best_i, best_mean, deciders)
    winner = np.where(missing, MISSING, winner)
    out["winner"] = winner
    out["best_class"] = np.where(missing, None, np.where(best_mean > s["mean"], best_ens, "single"))
    out["ensembles_win"] = np.isin(winner, WIN_CATEGORIES)
    for c, v in best_cols.items():
        out[c] = v
    # Budget marks: only a design that decides the cell, and never dct, whose size its division rule sets (it is
    # compared at its real parameter count, which the tables and the hover show).
    far = {r: deciders[r] & ~missing & (np.abs(np.nan_to_num(a[r]["dev"])) > max_budget_deviation_pct)
           & (r not in RULE_SIZED_CLASSES) for r in CLASS_ORDER}  # fmt: skip
    out["deviating_classes"] = _join_roles(far, n)
    out["over_budget_deviation"] = np.logical_or.reduce([far[r] for r in CLASS_ORDER])
    out["max_budget_deviation_pct"] = float(max_budget_deviation_pct)
    out["equivalence_pp"] = float(rule.equivalence_pp)
    return out


def _decide_welch(out: pd.DataFrame, a: dict, ens: list[str], rule: Rule, group_keys: list[str],
                  deciders: dict[str, np.ndarray], full: bool = True) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Return (winner per cell, extra columns): every ensemble class against single by `welch`, p-values adjusted
    within each (group, epoch) row, verdicts wins / loses / equivalent / unresolved, and the cell's category. Without
    `full`, the winners only (no extra columns, `deciders` left as they are)."""
    n = len(out)
    s = a["single"]
    margin = rule.equivalence_pp / 100.0
    # Each comparison's level: its look's share of alpha, by the smaller seed count of its two classes.
    levels = {r: rule.level_at(np.minimum(a[r]["n"], s["n"])) for r in ens}
    tests = {r: welch(a[r]["mean"], a[r]["std"], a[r]["n"], s["mean"], s["std"], s["n"], levels[r], margin)
             for r in ens}  # fmt: skip
    family = out.groupby(group_keys + ["epoch"], sort=False).ngroup().to_numpy()
    fam = np.tile(family, len(ens))
    # Weighted p-values (p x alpha / level) put every look's level on one scale, so one adjustment at alpha serves all.
    weight = np.concatenate([rule.alpha / levels[r] for r in ens]) if ens else np.zeros(0)
    p_all = adjust_p(np.minimum(np.concatenate([tests[r]["p"] for r in ens]) * weight, 1.0), fam, rule.error_control)
    q_all = adjust_p(np.minimum(np.concatenate([tests[r]["p_eq"] for r in ens]) * weight, 1.0), fam,
                     rule.error_control)  # fmt: skip
    cols: dict[str, np.ndarray] = {}
    verdict: dict[str, np.ndarray] = {}
    for i, r in enumerate(ens):
        t, p, q = tests[r], p_all[i * n:(i + 1) * n], q_all[i * n:(i + 1) * n]
        sig = p < rule.alpha
        win, lose = sig & (t["diff"] > 0), sig & (t["diff"] < 0)
        eq = ~sig & (q < rule.alpha)
        v = np.where(win, "wins", np.where(lose, "loses", np.where(eq, EQUIVALENT, UNRESOLVED)))
        verdict[r] = np.where(a[r]["present"] & s["present"], v, None)
        cols.update({f"diff_pp_{r}": 100 * t["diff"], f"ci_lo_pp_{r}": 100 * t["ci_lo"],
                     f"ci_hi_pp_{r}": 100 * t["ci_hi"], f"p_{r}": p, f"p_eq_{r}": q,
                     f"p_outperform_{r}": t["p_outperform"], f"verdict_{r}": verdict[r]})  # fmt: skip
    V = np.column_stack([verdict[r] for r in ens]) if ens else np.empty((n, 0), object)
    means = np.column_stack([np.where(verdict[r] == "wins", a[r]["mean"], -np.inf) for r in ens]) if ens else \
        np.empty((n, 0))  # fmt: skip
    present = np.column_stack([verdict[r] != None for r in ens]) if ens else np.empty((n, 0), bool)  # noqa: E711
    wins = V == "wins"
    any_win, n_present = wins.any(axis=1), present.sum(axis=1)
    all_win = (n_present >= 2) & (wins | ~present).all(axis=1)
    top_win = np.array(ens, dtype=object)[np.argmax(means, axis=1)] if ens else np.full(n, None)
    any_unres, any_eq = (V == UNRESOLVED).any(axis=1), (V == EQUIVALENT).any(axis=1)
    winner = np.select([all_win & any_win, any_win, any_unres, any_eq],
                       ["all ensembles", top_win, UNRESOLVED, EQUIVALENT], default="single").astype(object)  # fmt: skip
    if not full:
        return winner, {}
    cols.update(_versus_runner_up(a, ens, winner, fam_of=family, rule=rule, margin=margin))
    # The designs that decide the cell: the classes whose verdict makes its category, and single.
    for i, r in enumerate(ens):
        v = V[:, i]
        deciders[r] = np.where(any_win, v == "wins", np.where(any_unres, v == UNRESOLVED,
                               np.where(any_eq, v == EQUIVALENT, present[:, i])))  # fmt: skip
    deciders["single"] = s["present"].copy()
    # The columns of the best-mean ensemble (the one the margin describes).
    best = out["best_ensemble"].to_numpy(dtype=object)
    for c, src in (("ci_lo_pp", "ci_lo_pp_"), ("ci_hi_pp", "ci_hi_pp_"), ("p_value", "p_"), ("p_equivalence", "p_eq_"),
                   ("p_outperform", "p_outperform_"), ("verdict", "verdict_")):  # fmt: skip
        pick = np.full(n, np.nan) if c != "verdict" else np.full(n, None, dtype=object)
        for r in ens:
            pick = np.where(best == r, cols[src + r], pick)
        cols[c] = pick
    cols["noise_pp"] = (cols["ci_hi_pp"] - cols["ci_lo_pp"]) / 2.0
    return winner, cols


def _versus_runner_up(a: dict, ens: list[str], winner: np.ndarray, fam_of: np.ndarray, rule: Rule,
                      margin: float) -> dict[str, np.ndarray]:  # fmt: skip
    """Return, for cells won by one ensemble class, the test of that class against the best-mean other ensemble class
    present (the heatmap shows a class, so the reader asks whether it also beats its rivals): runner_up, vs_runner_up_pp
    (difference, pp), vs_runner_up_p (adjusted within each epoch's cells) and vs_runner_up_verdict (wins, loses,
    equivalent, unresolved); None / NaN elsewhere."""
    n = len(winner)
    out = {"runner_up": np.full(n, None, dtype=object), "vs_runner_up_pp": np.full(n, np.nan),
           "vs_runner_up_p": np.full(n, np.nan), "vs_runner_up_verdict": np.full(n, None, dtype=object)}  # fmt: skip
    if len(ens) < 2:
        return out
    means = np.column_stack([np.where(a[r]["present"], a[r]["mean"], -np.inf) for r in ens])
    is_win = np.column_stack([winner == r for r in ens])
    has = is_win.any(axis=1) & (np.isfinite(means).sum(axis=1) >= 2)
    if not has.any():
        return out
    wi = np.argmax(is_win, axis=1)
    others = np.where(is_win, -np.inf, means)
    ri = np.argmax(others, axis=1)
    has &= np.isfinite(np.take_along_axis(others, ri[:, None], 1)[:, 0])
    pick = lambda key, idx: np.column_stack([a[r][key] for r in ens])[np.arange(n), idx]  # noqa: E731
    m1, s1, n1 = pick("mean", wi), pick("std", wi), pick("n", wi)
    m2, s2, n2 = pick("mean", ri), pick("std", ri), pick("n", ri)
    level = rule.level_at(np.minimum(n1, n2))
    t = welch(np.where(has, m1, np.nan), s1, np.where(has, n1, 0), m2, s2, n2, level, margin)
    w = rule.alpha / level
    p = adjust_p(np.where(has, np.minimum(t["p"] * w, 1.0), np.nan), fam_of, rule.error_control)
    q = adjust_p(np.where(has, np.minimum(t["p_eq"] * w, 1.0), np.nan), fam_of, rule.error_control)
    sig = p < rule.alpha
    verdict = np.where(sig & (t["diff"] > 0), "wins", np.where(sig, "loses", np.where(q < rule.alpha, EQUIVALENT,
                                                                                     UNRESOLVED)))  # fmt: skip
    names = np.array(ens, dtype=object)
    out["runner_up"] = np.where(has, names[ri], None)
    out["vs_runner_up_pp"] = np.where(has, 100.0 * t["diff"], np.nan)
    out["vs_runner_up_p"] = np.where(has, p, np.nan)
    out["vs_runner_up_verdict"] = np.where(has, verdict, None)
    return out


def _decide_overlap(a: dict, ens: list[str], best_i: np.ndarray, best_mean: np.ndarray,
                    deciders: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Return (winner per cell, extra columns) by the overlap rules ("std", "ci95"): class A beats B when A's seed
    interval lies above B's (by the means alone when an interval is undefined); otherwise a tie."""
    s = a["single"]
    n = len(best_i)

    def beats(ma, ha, mb, hb):
        both = np.isfinite(ha) & np.isfinite(hb)
        return np.where(both, ma - ha > mb + hb, ma > mb)

    his = np.column_stack([a[r]["hw"] for r in ens]) if ens else np.zeros((n, 0))
    best_hw = np.take_along_axis(his, best_i[:, None], 1)[:, 0] if ens else np.full(n, np.nan)
    present = np.column_stack([a[r]["present"] for r in ens]) if ens else np.zeros((n, 0), bool)
    beat = {r: a[r]["present"] & beats(a[r]["mean"], a[r]["hw"], s["mean"], s["hw"]) for r in ens}
    all_beat = (present.sum(axis=1) >= 2) & np.logical_and.reduce([beat[r] | ~a[r]["present"] for r in ens]) \
        if ens else np.zeros(n, bool)  # fmt: skip
    best_beats = beats(best_mean, best_hw, s["mean"], s["hw"])
    single_beats = beats(s["mean"], s["hw"], best_mean, best_hw)
    best_name = np.array(ens, dtype=object)[best_i] if ens else np.full(n, None)
    above = best_mean > s["mean"]
    winner = np.where(above, np.where(~best_beats, TIE, np.where(all_beat, "all ensembles", best_name)),
                      np.where(best_mean == s["mean"], TIE, np.where(single_beats, "single", TIE)))  # fmt: skip
    for r in CLASS_ORDER:
        deciders[r] = a[r]["present"].copy()
    return winner.astype(object), {"noise_pp": 100.0 * (best_hw + s["hw"])}


def winner_grid(
    epochs: pd.DataFrame, tie_rule: str = DEFAULT_RULE, max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
    rule: Rule | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Return (grid, stats, notes): one grid row per (dataset, family, k, fit, budget, epoch).

    grid columns: GROUP_KEYS, budget, epoch, winner (a class of CLASS_ORDER, "all ensembles", "equivalent",
    "unresolved", "tie" (overlap rules only) or "missing"), best_class, ensembles_win, n_seeds_min/max, assessable
    (every class has >= 2 seeds), classes, single_mean_acc, best_ensemble, best_ensemble_mean_acc (fractions),
    margin_pp (best ensemble minus single, percentage points), noise_pp (the half-width of the difference's interval,
    pp; the sum of the two half-widths under the overlap rules), deviating_classes (the classes that decide the
    cell and whose design is further than `max_budget_deviation_pct` % from the budget, dct never; comma-separated),
    over_budget_deviation (any such class), max_budget_deviation_pct.
    Under "welch", per ensemble class c: diff_pp_c, ci_lo_pp_c, ci_hi_pp_c (pp), p_c and p_eq_c (adjusted p-values
    of a difference and of equivalence), p_outperform_c (probability, 0-1), verdict_c (wins, loses, equivalent,
    unresolved); the best ensemble's: ci_lo_pp, ci_hi_pp, p_value, p_equivalence, p_outperform, verdict; and where one
    ensemble class wins the cell, its test against the best other ensemble class: runner_up, vs_runner_up_pp,
    vs_runner_up_p, vs_runner_up_verdict.
    stats is `cell_stats`'s table (with budget_deviation_pct per class, %).
    """
    rule = rule or Rule(tie_rule)
    stats, notes = cell_stats(epochs, rule.name)
    keys = GROUP_KEYS + ["budget", "epoch"]
    if stats.empty:
        return pd.DataFrame(columns=keys + ["winner", "ensembles_win"]), stats, notes
    return decide_cells(stats, rule, max_budget_deviation_pct), stats, notes


def winning_tail(grid: pd.DataFrame, keys: list[str], along: str) -> pd.DataFrame:
    """Return one row per `keys` of a winner grid with data: `start` (the smallest value of `along` from which
    ensembles win at it and every larger value with data; NaN when they do not win at the largest), `before` (the
    value with data just below `start`; NaN at the smallest) and `last` (the largest value with data). The EST is the
    tail along budget per (group, epoch), the earliest epoch the tail along epoch per (group, budget). Array
    operations over all rows at once."""
    have = grid[grid["winner"] != MISSING].sort_values(keys + [along], kind="stable")
    if have.empty:
        return pd.DataFrame(columns=keys + ["start", "before", "last"])
    by = [have[k] for k in keys]
    win = have["ensembles_win"].astype(bool)
    # A value belongs to the winning tail when it and every larger value win: a reversed cumulative minimum.
    tail = win.iloc[::-1].groupby([b.iloc[::-1] for b in by], sort=False).cummin().iloc[::-1].astype(bool)
    prev = have.groupby(keys, sort=False)[along].shift(1)
    first = tail & ~tail.groupby(by, sort=False).shift(1, fill_value=False).astype(bool)
    found = have.loc[first, keys + [along]].assign(before=prev[first]).rename(columns={along: "start"})
    last = have.groupby(keys, sort=False)[along].max().rename("last").reset_index()
    return last.merge(found, on=keys, how="left")[keys + ["start", "before", "last"]]


def _grid_lookup(grid: pd.DataFrame, rows: pd.DataFrame, on: list[str], budget_col: str, cols: list[str],
                 prefix: str) -> pd.DataFrame:  # fmt: skip
    """Return `rows` with the grid's `cols` of the cell at (on, budget = rows[budget_col]) added as prefix + col."""
    have = [c for c in cols if c in grid]
    right = grid[on + ["budget"] + have].rename(columns={c: prefix + c for c in have})
    left = rows.assign(_b=pd.to_numeric(rows[budget_col], errors="coerce"))
    right = right.assign(_b=right["budget"].astype(float)).drop(columns="budget")
    return left.merge(right, on=on + ["_b"], how="left").drop(columns="_b")


def _per_epoch(grid: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """Return the EST at every (group, epoch): status, est_budget, below_budget, the verdicts at both, the
    deviation mark and the decision text."""
    keys = GROUP_KEYS + ["epoch"]
    allk = grid[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    tail = winning_tail(grid, keys, "budget").rename(columns={"start": "est_budget", "before": "below_budget"})
    res = allk.merge(tail.drop(columns="last"), on=keys, how="left")
    has_data = allk.merge(tail[keys].assign(_d=True), on=keys, how="left")["_d"].notna().to_numpy()
    res["status"] = np.where(res["est_budget"].notna(), "found", np.where(has_data, "none", "no data"))
    detail = ["winner", "margin_pp", "noise_pp", "assessable", "ci_lo_pp", "ci_hi_pp", "p_value", "p_outperform",
              "best_ensemble", "over_budget_deviation", "deviating_classes", "max_budget_deviation_pct"]
    res = _grid_lookup(grid, res, keys, "est_budget", detail, "at_")
    res = _grid_lookup(grid, res, keys, "below_budget", ["winner", "assessable", "over_budget_deviation",
                                                         "deviating_classes"], "below_")  # fmt: skip
    miss = grid[grid["winner"] == MISSING].groupby(keys)["budget"].agg(lambda b: sorted(int(x) for x in b))
    res["missing_budgets"] = [list(miss.get(tuple(k), [])) for k in res[keys].itertuples(index=False)]
    found = res["status"] == "found"
    res["est_winner"] = res["at_winner"].where(found, None)
    res["below_winner"] = res["below_winner"].where(found & res["below_budget"].notna(), None)
    res["est_margin_pp"] = res["at_margin_pp"].where(found).round(4)
    res["est_noise_pp"] = res["at_noise_pp"].where(found).round(4)
    res["est_assessable"] = res["at_assessable"].where(found, None)
    for c in ("ci_lo_pp", "ci_hi_pp", "p_value", "p_outperform"):
        res[f"est_{c}"] = res[f"at_{c}"].where(found).round(4) if f"at_{c}" in res else np.nan
    marked_at = res["at_over_budget_deviation"].fillna(False).astype(bool)
    marked_below = res["below_over_budget_deviation"].fillna(False).astype(bool)
    res["est_deviation_marked"] = (marked_at | marked_below).where(found, None)
    res["decision"] = [_decision_text(r, rule) if r["status"] == "found" else None for r in res.to_dict("records")]
    return res.drop(columns=[c for c in res if c.startswith(("at_", "below_")) and c not in
                             ("below_budget", "below_winner")])  # fmt: skip


def _decision_text(r: dict, rule: Rule) -> str:
    """Say how firm one EST decision is: the test at EST and what the budget below it is."""
    if rule.name != "welch":
        if not r["at_assessable"]:
            text = "1 seed: decided by means only, ties cannot be assessed"
        else:
            text = (f"Win at EST beyond noise (margin {r['at_margin_pp']:.2f} pp > noise {r['at_noise_pp']:.2f} pp)"
                    + "; " + _below_text(r, "a tie (within noise), so the switchover is not sharp"))
    else:
        conf = f"{100.0 * (1.0 - rule.level):.3g}% CI" if len(rule.looks) <= 1 else "CI at its look's level"
        text = (f"Win at EST: {r['at_best_ensemble']} − single = {r['at_margin_pp']:+.2f} pp ({conf} "
                f"[{r['at_ci_lo_pp']:+.2f}, {r['at_ci_hi_pp']:+.2f}]), P(a seed of {r['at_best_ensemble']} beats "
                f"one of single) = {r['at_p_outperform']:.2f}, adjusted p = {r['at_p_value']:.3g}; "
                + _below_text(r, None))  # fmt: skip
    marks = [(b, c) for b, c, m in ((r["est_budget"], r["at_deviating_classes"], r["at_over_budget_deviation"]),
                                    (r["below_budget"], r["below_deviating_classes"], r["below_over_budget_deviation"]))
             if m is True or m == 1]  # fmt: skip
    if marks:
        pct = r.get("at_max_budget_deviation_pct", MAX_BUDGET_DEVIATION_PCT)
        where = "; ".join(f"{fmt_params(b)}: {c}" for b, c in marks)
        text += f"; rests on a design further than {pct:g}% from its budget ({where})"
    return text


def _below_text(r: dict, tie_text: str | None) -> str:
    if r["below_budget"] is None or pd.isna(r["below_budget"]):
        return "EST is the smallest budget in the grid, so the switchover may lie lower"
    w = r["below_winner"]
    if w == TIE and tie_text:
        return f"the budget below is {tie_text}"
    if w == UNRESOLVED:
        return "the budget below is unresolved (more seeds could move the switchover lower)"
    if w == EQUIVALENT:
        return "the budget below is equivalent (ensembles and single within the margin)"
    if not r.get("below_assessable", True):
        return f"the budget below ('{w}') was decided by means only"
    return f"the budget below is a clear '{w}' win"


def _earliest(grid: pd.DataFrame) -> pd.DataFrame:
    """Return, per (group, budget), the earliest epoch from which ensembles win at every later epoch with data
    (`earliest_epoch`), the last epoch with data and the epochs without data."""
    keys = GROUP_KEYS + ["budget"]
    allk = grid[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    tail = winning_tail(grid, keys, "epoch").rename(columns={"start": "earliest_epoch", "last": "last_epoch"})
    res = allk.merge(tail.drop(columns="before"), on=keys, how="left")
    miss = grid[grid["winner"] == MISSING].groupby(keys)["epoch"].agg(lambda e: sorted(int(x) for x in e))
    res["epochs_missing"] = [list(miss.get(tuple(k), [])) for k in res[keys].itertuples(index=False)]
    return res


def seed_values(epochs: pd.DataFrame, at_final_epoch: bool = True) -> pd.DataFrame:
    """Return one row per (group, role, budget, epoch, seed): test_acc (fraction; a seed's rows of several
    configurations averaged), at each group's final epoch only when `at_final_epoch`."""
    g, _ = assign_groups(epochs[[c for c in epochs.columns if c in (*IDENTITY_COLUMNS, "test_acc")]])
    cols = GROUP_KEYS + ["role", "budget", "epoch", "seed"]
    if g.empty:
        return pd.DataFrame(columns=[*cols, "test_acc"])
    g = g[np.isfinite(g["test_acc"].astype(float))]
    if at_final_epoch:
        g = g[g["epoch"] == g.groupby(GROUP_KEYS)["epoch"].transform("max")]
    return g.groupby(cols, sort=True)["test_acc"].mean().reset_index()


def est_interval(epochs: pd.DataFrame, rule: Rule, n_boot: int = EST_BOOTSTRAP, level: float = 0.95,
                 random_state: int = 0) -> pd.DataFrame:  # fmt: skip
    """Return the stratified-bootstrap interval of the final-epoch EST per group: seeds are resampled with
    replacement within each (class, budget) cell, each of `n_boot` replicates decided by `rule` and its EST located.

    Columns: GROUP_KEYS, est_lo / est_hi (budgets, parameters; est_hi is +inf when more than (1 - level) / 2 of the
    replicates have no EST, i.e. the upper end lies above the grid), est_found_frac (share of replicates with an EST),
    n_boot. Replicates are drawn with a fixed `random_state`, so a report is reproducible.
    """
    vals = seed_values(epochs)
    out_cols = [*GROUP_KEYS, "est_lo", "est_hi", "est_found_frac", "n_boot"]
    if vals.empty or n_boot < 1:
        return pd.DataFrame(columns=out_cols)
    # A very large grid: fewer resamples (the summary's n_boot says how many).
    n_boot = min(n_boot, max(EST_BOOTSTRAP_MIN, EST_BOOTSTRAP_MAX_DRAWS // len(vals)))
    ckeys = GROUP_KEYS + ["role", "budget", "epoch"]
    cell_id = vals.groupby(ckeys, sort=True).ngroup().to_numpy()
    order = np.argsort(cell_id, kind="stable")
    v, cid = vals["test_acc"].to_numpy(float)[order], cell_id[order]
    cells = vals.iloc[order].drop_duplicates(ckeys)[ckeys].reset_index(drop=True)
    starts = np.r_[0, np.flatnonzero(np.diff(cid)) + 1]
    counts = np.diff(np.r_[starts, len(cid)])
    rng = np.random.default_rng(random_state)
    # Replicates in blocks: each is decided on its own (its cells are their own families), so blocks give the same
    # ESTs as one pass, while memory holds one block's cells, not all replicates' (1.7 GB at the MoL scale).
    block = max(1, EST_BOOTSTRAP_BLOCK_DRAWS // len(v))
    reps = [_bootstrap_block(rng, first, min(block, n_boot - first), v, cid, starts, counts, cells, ckeys, rule)
            for first in range(0, n_boot, block)]  # fmt: skip
    reps = pd.concat(reps, ignore_index=True)
    est = reps["start"].astype(float).fillna(np.inf)
    q = (1.0 - level) / 2.0
    res = reps.assign(est=est).groupby(GROUP_KEYS, sort=True)["est"].agg(
        est_lo=lambda x: float(np.quantile(x, q, method="inverted_cdf")),
        est_hi=lambda x: float(np.quantile(x, 1.0 - q, method="inverted_cdf")),
        est_found_frac=lambda x: float(np.isfinite(x).mean()),
    ).reset_index()
    res["n_boot"] = int(n_boot)
    return res[out_cols]


def _bootstrap_block(rng: np.random.Generator, first: int, n_reps: int, v: np.ndarray, cid: np.ndarray,
                     starts: np.ndarray, counts: np.ndarray, cells: pd.DataFrame, ckeys: list[str],
                     rule: Rule) -> pd.DataFrame:  # fmt: skip
    """Return, for replicates first .. first + n_reps - 1 of `est_interval` (drawn from `rng` in order), one row per
    (group, replicate) with `start`, its EST (NaN: none)."""
    pos = starts[cid] + np.floor(rng.random((n_reps, len(v))) * counts[cid]).astype(int)
    draw = v[pos]  # (replicate, seed row): each row's draw comes from its own cell's seeds
    sums = np.add.reduceat(draw, starts, axis=1)
    sq = np.add.reduceat(draw**2, starts, axis=1)
    mean = sums / counts
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(np.maximum(sq - counts * mean**2, 0.0) / (counts - 1))
    std = np.where(counts >= 2, std, np.nan)
    n_cells = len(cells)
    stats = pd.DataFrame({k: np.tile(cells[k].to_numpy(), n_reps) for k in ckeys})
    stats["rep"] = np.repeat(np.arange(first, first + n_reps), n_cells)
    stats["n_seeds"] = np.tile(counts, n_reps)
    stats["mean_acc"], stats["std_acc"] = mean.ravel(), std.ravel()
    if rule.name == "std":
        stats["hw_acc"] = stats["std_acc"]
    else:
        from scipy.stats import t

        n = stats["n_seeds"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            stats["hw_acc"] = np.where(n >= 2, t.ppf(0.975, np.maximum(n - 1, 1)) * stats["std_acc"] / np.sqrt(n),
                                       np.nan)  # fmt: skip
    stats["budget_deviation_pct"] = np.nan
    gk = GROUP_KEYS + ["rep"]
    grid = decide_cells(stats, rule, np.inf, group_keys=gk, winners_only=True)
    tail = winning_tail(grid, gk + ["epoch"], "budget")
    return grid[gk].drop_duplicates().merge(tail[gk + ["start"]], on=gk, how="left")


def interval_text(lo: float, hi: float, level: float = 0.95) -> str:
    """Return the EST's bootstrap interval as words, e.g. "95% interval [0.0442M, 0.177M]" (above the grid: inf)."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    fmt = lambda b: "above the grid" if not np.isfinite(b) else fmt_params(b)  # noqa: E731
    return f"{100 * level:.0f}% interval [{fmt(lo)}, {fmt(hi)}]"


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
    rule: Rule = field(default_factory=Rule)

    @property
    def rule_text(self) -> str:
        """One line on how the cells were decided (the captions' text)."""
        return self.rule.text()

    def to_dict(self) -> dict:
        """Return a JSON-able dict: the rule, notes, and per group the summary, per-epoch EST, earliest epochs and the
        final epoch's cells with their verdicts."""
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
            "rule": _jsonable({"name": self.rule.name, "alpha": self.rule.alpha, "level": self.rule.level,
                               "looks": list(self.rule.looks), "equivalence_pp": self.rule.equivalence_pp,
                               "error_control": self.rule.error_control}),  # fmt: skip
            "max_budget_deviation_pct": self.max_budget_deviation_pct,
            "tie_rule_text": self.rule_text,
            "notes": self.notes,
            "groups": groups,
        }

    @staticmethod
    def _cells(grid: pd.DataFrame, epoch) -> list[dict]:
        """Return the cells of one group at `epoch` (the final one): budget, winner, the best ensemble's test
        (difference and interval in pp, p-values, probability of outperforming, verdict), every class's verdict and
        the deviation flag."""
        if grid.empty or epoch is None or pd.isna(epoch):
            return []
        keep = ["budget", "winner", "n_seeds_min", "n_seeds_max", "best_ensemble", "margin_pp", "ci_lo_pp",
                "ci_hi_pp", "p_value", "p_equivalence", "p_outperform", "verdict",
                *[f"verdict_{c}" for c in ENSEMBLE_CLASSES], "runner_up", "vs_runner_up_pp", "vs_runner_up_p",
                "vs_runner_up_verdict", "over_budget_deviation", "deviating_classes"]
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
                "EST interval (bootstrap)": t["est_interval"],
                "switchover interval": t["interval"],
                "earliest epoch at EST": t["est_earliest_epoch"].map(
                    lambda e: "" if e is None or pd.isna(e) else int(e)
                ),
                "cells (final epoch)": t["final_verdicts"],
                "decision": t["decision"].fillna(""),
            }
        )
        return view.to_markdown(index=False)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
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
    tie_rule: str = DEFAULT_RULE,
    max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
    rule: Rule | None = None,
    n_boot: int = EST_BOOTSTRAP,
) -> ESTResult:
    """Return the EST of every (dataset, family, k, fit) group in an epochs table (see module docstring).

    `rule` (a `Rule`; default `Rule(tie_rule)`) decides the cells. The designs' `budget_deviation_pct` comes from
    `trials` (by trial_id) when the epochs table lacks it; cells decided by a design further than
    `max_budget_deviation_pct` % from its budget are marked. `n_boot`: resamples of the EST's bootstrap interval
    (0: none).

    If `trials` is given, epoch rows of trials whose status is "error" are dropped (their numbers are not a design's
    outcome); rows of running and diverged trials are kept (what they measured is real) and the report lists them.
    """
    _, complete = compute_est_staged(epochs, trials, tie_rule, max_budget_deviation_pct, rule, n_boot)
    return complete()


def compute_est_staged(
    epochs: pd.DataFrame,
    trials: pd.DataFrame | None = None,
    tie_rule: str = DEFAULT_RULE,
    max_budget_deviation_pct: float = MAX_BUDGET_DEVIATION_PCT,
    rule: Rule | None = None,
    n_boot: int = EST_BOOTSTRAP,
) -> tuple[ESTResult, Callable[[], ESTResult]]:
    """Return `compute_est`'s result in two stages: (the EST with every cell decided but no bootstrap interval in its
    summary, a function that runs the bootstrap and returns the complete result, the same as `compute_est`'s).

    The cells take a few seconds at the scale of a study, the bootstrap most of the EST's time: what needs only the
    cells (the report's figures) can start in between. Arguments as in `compute_est`.
    """
    rule = rule or Rule(tie_rule)
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
    grid, stats, gnotes = winner_grid(epochs, rule.name, max_budget_deviation_pct, rule=rule)
    notes += gnotes
    if grid.empty:
        empty = ESTResult(rule.name, grid, stats, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), notes,
                          float(max_budget_deviation_pct), rule)  # fmt: skip
        return empty, lambda: empty
    per_epoch = _per_epoch(grid, rule)
    earliest = _earliest(grid)

    def result(boot: pd.DataFrame) -> ESTResult:
        summary = _summaries(grid, per_epoch, earliest, boot, rule)
        summary = _nullable_ints(summary, ["est_budget", "below_budget", "est_earliest_epoch"])
        per_epoch_out = _nullable_ints(per_epoch.copy(), ["est_budget", "below_budget"])
        earliest_out = _nullable_ints(earliest.copy(), ["earliest_epoch", "last_epoch"])
        result_notes = list(notes)
        for gd, s in zip(summary[GROUP_KEYS].to_dict("records"), summary["status"], strict=True):
            if s == "none":
                result_notes.append(f"{gd['dataset']}/{gd['family']} k={gd['k']} fit={gd['fit']}: no EST in the grid")
        return ESTResult(rule.name, grid, stats, summary, per_epoch_out, earliest_out, result_notes,
                         float(max_budget_deviation_pct), rule)  # fmt: skip

    no_interval = pd.DataFrame(columns=GROUP_KEYS)
    return result(no_interval), lambda: result(est_interval(epochs, rule, n_boot) if n_boot else no_interval)


def _nullable_ints(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    for c in cols:
        if c in df:
            df[c] = pd.array([None if v is None or pd.isna(v) else int(v) for v in df[c]], dtype="Int64")
    return df


def _summaries(grid: pd.DataFrame, per_epoch: pd.DataFrame, earliest: pd.DataFrame, boot: pd.DataFrame,
               rule: Rule) -> pd.DataFrame:  # fmt: skip
    """Return the overall EST row of every group: its final-epoch decision, seeds, the bootstrap interval, the
    earliest epoch at the EST budget and the count of each verdict at the final epoch."""
    have = grid[grid["winner"] != MISSING]
    g = grid.groupby(GROUP_KEYS, sort=True)
    base = g["epoch"].max().rename("final_epoch").reset_index()
    seeds = have.groupby(GROUP_KEYS).agg(n_lo=("n_seeds_min", "min"), n_hi=("n_seeds_max", "max")).reset_index()
    s = base.merge(seeds, on=GROUP_KEYS, how="left").fillna({"n_lo": 0, "n_hi": 0})
    s = s.merge(per_epoch.rename(columns={"epoch": "final_epoch"}), on=GROUP_KEYS + ["final_epoch"], how="left")
    at = earliest[GROUP_KEYS + ["budget", "earliest_epoch"]].rename(columns={"budget": "est_budget",
                                                                           "earliest_epoch": "est_earliest_epoch"})
    s = s.merge(at.astype({"est_budget": float}), on=GROUP_KEYS + ["est_budget"], how="left") if not at.empty else \
        s.assign(est_earliest_epoch=np.nan)  # fmt: skip
    s = s.merge(boot, on=GROUP_KEYS, how="left") if not boot.empty else s.assign(est_lo=np.nan, est_hi=np.nan,
                                                                               est_found_frac=np.nan, n_boot=0)
    final = grid[grid["epoch"] == grid.groupby(GROUP_KEYS)["epoch"].transform("max")]
    counts = final[final["winner"] != MISSING].groupby(GROUP_KEYS)["winner"].value_counts().rename("n").reset_index()
    dev = grid[grid["over_budget_deviation"].astype(bool)].groupby(GROUP_KEYS)["budget"].agg(
        lambda b: sorted(int(x) for x in set(b)))  # fmt: skip
    budgets = g["budget"].agg(lambda b: sorted(int(x) for x in set(b)))
    rows = []
    for r in s.to_dict("records"):
        key = tuple(r[k] for k in GROUP_KEYS)
        n_lo, n_hi = int(r["n_lo"]), int(r["n_hi"])
        found = r["status"] == "found"
        c = counts[(counts[GROUP_KEYS] == pd.Series(dict(zip(GROUP_KEYS, key, strict=True)))).all(axis=1)]
        verdicts = ", ".join(f"{int(n)} {w}" for w, n in zip(c["winner"], c["n"], strict=True))
        if n_hi <= 1:
            tie_note = ("1 seed: no test can decide a cell" if rule.name == "welch"
                        else "1 seed: ties cannot be assessed")  # fmt: skip
        elif n_lo <= 1:
            tie_note = ("some cells have 1 seed: those are unresolved" if rule.name == "welch"
                        else "some cells have 1 seed: those are decided by means only")  # fmt: skip
        else:
            tie_note = rule.text()
        decision = r["decision"]
        if r["status"] == "none":
            decision = "ensembles do not win at the largest budget with data at the final epoch"
        lo = "below grid" if pd.isna(r["below_budget"]) else fmt_params(r["below_budget"])
        rows.append({
            **dict(zip(GROUP_KEYS, key, strict=True)),
            "final_epoch": int(r["final_epoch"]),
            "seeds": f"{n_lo}" if n_lo == n_hi else f"{n_lo}-{n_hi}",
            "ties_assessable": n_lo >= 2,
            "status": r["status"],
            "est_budget": r["est_budget"] if found else None,
            "est_params": fmt_params(r["est_budget"]) if found else None,
            "est_lo": r.get("est_lo"),
            "est_hi": r.get("est_hi"),
            "est_found_frac": r.get("est_found_frac"),
            "est_interval": interval_text(r.get("est_lo"), r.get("est_hi")) if found else "",
            "below_budget": r["below_budget"] if found else None,
            "interval": f"({lo}, {fmt_params(r['est_budget'])}]" if found else "",
            "est_earliest_epoch": r["est_earliest_epoch"] if found else None,
            "est_winner": r["est_winner"],
            "est_margin_pp": r["est_margin_pp"],
            "est_noise_pp": r["est_noise_pp"],
            "est_ci_lo_pp": r.get("est_ci_lo_pp"),
            "est_ci_hi_pp": r.get("est_ci_hi_pp"),
            "est_p_outperform": r.get("est_p_outperform"),
            "below_winner": r["below_winner"],
            "decision": decision,
            "est_deviation_marked": r["est_deviation_marked"],
            "deviating_budgets": list(dev.get(key, [])),
            "final_verdicts": verdicts,
            "tie_note": tie_note,
            "missing_budgets_final_epoch": r["missing_budgets"] if isinstance(r["missing_budgets"], list) else [],
            "budgets": list(budgets.get(key, [])),
        })  # fmt: skip
    return pd.DataFrame(rows)


# The point identity an adaptive seed policy extends (the store's columns; `spaces.classes.POINT_KEYS` minus the seed).
SEED_POINT_KEYS = ["dataset", "family", "design_class", "members", "budget", "fit"]
RESOLVED_NON_WIN = ("single", EQUIVALENT)


def open_est_cells(grid: pd.DataFrame) -> pd.DataFrame:
    """Return the cells on the EST's path that are still open ("unresolved", or "tie" under an overlap rule): at each
    group's final epoch, those above the largest budget whose cell is a resolved non-win (single or equivalent), since
    they decide where the winning tail starts; and, at each budget where ensembles win at the final epoch, those after
    the last epoch with a resolved non-win, since they decide the earliest-epoch line. Array operations."""
    if grid.empty:
        return grid
    is_open = grid["winner"].isin((UNRESOLVED, TIE))
    resolved_low = grid["winner"].isin(RESOLVED_NON_WIN)
    final = grid["epoch"] == grid.groupby(GROUP_KEYS)["epoch"].transform("max")
    lo_b = grid["budget"].where(final & resolved_low).groupby([grid[k] for k in GROUP_KEYS]).transform("max")
    on_final = final & is_open & (grid["budget"] > lo_b.fillna(-np.inf))
    by_budget = [grid[k] for k in GROUP_KEYS] + [grid["budget"]]
    wins_final = (final & grid["ensembles_win"].astype(bool)).groupby(by_budget).transform("any")
    lo_e = grid["epoch"].where(resolved_low).groupby(by_budget).transform("max")
    on_line = wins_final & is_open & (grid["epoch"] > lo_e.fillna(-np.inf))
    return grid[on_final | on_line]


def seeds_wanted(epochs: pd.DataFrame, looks: list[int], max_seeds: int, trials: pd.DataFrame | None = None,
                 rule: Rule | None = None) -> pd.DataFrame:  # fmt: skip
    """Return the design points the next look extends, one row each: SEED_POINT_KEYS, n_seeds (seeds with rows now)
    and target_seeds (the first look above n_seeds, at most `max_seeds`).

    A point is extended when it is single, or an ensemble class whose verdict is open, in a cell of
    `open_est_cells`; points already at `max_seeds` are not. Empty when every cell on the EST's path is resolved.
    """
    cols = [*SEED_POINT_KEYS, "n_seeds", "target_seeds"]
    rule = rule or Rule()
    if epochs.empty:
        return pd.DataFrame(columns=cols)
    res = compute_est(epochs, trials, rule=rule, n_boot=0)
    cells = open_est_cells(res.grid)
    if cells.empty:
        return pd.DataFrame(columns=cols)
    keys = GROUP_KEYS + ["budget"]
    parts = [cells[keys].assign(role="single")]
    for r in ENSEMBLE_CLASSES:
        v = f"verdict_{r}"
        if v in cells:
            parts.append(cells.loc[cells[v].isin((UNRESOLVED,)), keys].assign(role=r))
        else:  # an overlap rule: every class present in an open cell
            parts.append(cells.loc[cells["classes"].str.split(",").map(lambda c, r=r: r in c), keys].assign(role=r))
    wanted = pd.concat(parts, ignore_index=True).drop_duplicates()
    grouped, _ = assign_groups(epochs)
    grouped = grouped[np.isfinite(grouped["test_acc"].astype(float))]
    if trials is not None and not trials.empty:
        grouped = grouped[~grouped["trial_id"].isin(set(trials.loc[trials["status"] == "error", "trial_id"]))]
    points = grouped.groupby(keys + ["role", *[k for k in SEED_POINT_KEYS if k not in keys]])["seed"].nunique()
    points = points.rename("n_seeds").reset_index()
    out = points.merge(wanted, on=keys + ["role"])[[*SEED_POINT_KEYS, "n_seeds"]]
    # single joins every k group: one row per design point, with its own seed count.
    out = out.drop_duplicates(SEED_POINT_KEYS)
    grid_looks = np.asarray(sorted(set(looks) | {max_seeds}), dtype=int)
    grid_looks = grid_looks[grid_looks <= max_seeds]
    idx = np.searchsorted(grid_looks, out["n_seeds"].to_numpy(), side="right")
    out = out[idx < len(grid_looks)].copy()
    out["target_seeds"] = grid_looks[idx[idx < len(grid_looks)]]
    return out.sort_values(SEED_POINT_KEYS).reset_index(drop=True)[cols]
