"""Query tables of the adaptive classes: accuracy and cost per sub-network, and the best one under a limit.

Reads the store's `subnets` table only (`analysis.store.load_subnets`; results/README.md describes it). A sub-network is
one (mutual design point, width_mult, resolution) or one (coop design point, network, scale); its accuracy is the mean
over seeds of test_acc (a fraction), its MACs (multiply-accumulates per sample) and parameters are the executed counts,
its latency the seed mean of latency_ms_p50 (batch 1, ms). `best_subnet` answers the paper's question: the most accurate
configuration whose MACs (FLOPs = 2 x MACs) or latency stay within the limit.
"""

from __future__ import annotations

import pandas as pd

# What names one adaptive design point (besides point_id, which the writer always fills).
POINT = ["sweep", "point_id", "dataset", "design_class", "family", "depth", "width", "budget", "epochs"]
# What names a sub-network within its point: mutual varies width and resolution, coop the network and its scale.
SUBNET = ["width_mult", "resolution", "subnet_kind", "network", "scale", "blocks_executed"]
QUERY_COLUMNS = [*POINT, *SUBNET, "acc_mean", "acc_std", "n_seeds", "macs", "params", "latency_ms_p50"]


def of_class(table: pd.DataFrame, design_class: str) -> pd.DataFrame:
    """Return the rows of `table` (subnets or query table) from `design_class`; rows written before the table had a
    design_class column count as mutual."""
    if "design_class" not in table:
        return table if design_class == "mutual" else table.iloc[0:0]
    return table[table["design_class"].fillna("mutual") == design_class]


def query_table(subnets: pd.DataFrame) -> pd.DataFrame:
    """Return one row per (design point, sub-network), sorted by MACs then accuracy (best first).

    Columns: the point and sub-network columns present (width_mult, resolution in px; for coop also network,
    scale and blocks_executed), acc_mean / acc_std (fractions; std NaN for one
    seed), n_seeds, macs (MACs per sample), params (executed parameters), latency_ms_p50 (ms, seed mean).
    """
    if subnets.empty:
        return pd.DataFrame(columns=QUERY_COLUMNS)
    keys = [c for c in [*POINT, *SUBNET] if c in subnets]
    g = subnets.groupby(keys, sort=False, dropna=False)
    tab = g.agg(
        acc_mean=("test_acc", "mean"),
        acc_std=("test_acc", lambda s: float(s.std(ddof=1)) if len(s) > 1 else float("nan")),
        n_seeds=("seed", "nunique"),
        macs=("macs", "mean"),
        params=("params", "mean"),
        latency_ms_p50=("latency_ms_p50", "mean"),
    ).reset_index()
    return tab.sort_values(["macs", "acc_mean"], ascending=[True, False], kind="stable").reset_index(drop=True)


def best_subnet(
    table: pd.DataFrame, max_macs: float | None = None, max_latency_ms: float | None = None
) -> pd.Series | None:
    """Return the query-table row with the highest acc_mean among those with macs <= max_macs (MACs per sample) and
    latency_ms_p50 <= max_latency_ms (ms), ties to fewer MACs; None when nothing fits. No limit: the best overall."""
    fits = table
    if max_macs is not None:
        fits = fits[fits["macs"].notna() & (fits["macs"] <= max_macs)]
    if max_latency_ms is not None:
        fits = fits[fits["latency_ms_p50"].notna() & (fits["latency_ms_p50"] <= max_latency_ms)]
    if fits.empty:
        return None
    return fits.sort_values(["acc_mean", "macs"], ascending=[False, True], kind="stable").iloc[0]


def pareto_front(table: pd.DataFrame, cost: str = "macs") -> pd.DataFrame:
    """Return the rows no other row beats in both `cost` (lower or equal: "macs" per sample or "latency_ms_p50" in
    ms) and accuracy (higher), sorted by that cost."""
    rows = table.dropna(subset=[cost]).sort_values([cost, "acc_mean"], ascending=[True, False], kind="stable")
    best, keep = -1.0, []
    for idx, acc in zip(rows.index, rows["acc_mean"], strict=True):
        if acc > best:
            keep.append(idx)
            best = acc
    return rows.loc[keep].reset_index(drop=True)
