"""Query tables of the adaptive classes: accuracy and cost per sub-network, and the best one under a limit.

Reads the store's `subnets` table only (`analysis.store.load_subnets`; results/README.md describes it). A sub-network is
one (mutual design point, width_mult, resolution) or one (coop design point, network, scale); its accuracy is the mean
over seeds of test_acc (a fraction), its MACs (multiply-accumulates per sample) and parameters are the executed counts,
its latency the seed mean of latency_ms_p50 (batch 1, ms). `best_subnet` answers the paper's question: the most accurate
configuration whose MACs (FLOPs = 2 x MACs) or latency stay within the limit.
"""

from __future__ import annotations

import pandas as pd

from analysis.store import over_seeds
from spaces.classes import POINT_KEYS

# What names a sub-network within its point: mutual varies width and resolution, coop the network and its scale.
SUBNET = ["width_mult", "resolution", "subnet_kind", "network", "scale", "blocks_executed"]
QUERY_COLUMNS = [*POINT_KEYS, *SUBNET, "n_seeds", "acc_mean", "acc_std", "macs", "params", "latency_ms_p50"]


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
    keys = [c for c in [*POINT_KEYS, *SUBNET] if c in subnets]
    tab = over_seeds(subnets, keys, "test_acc", "acc_mean", "acc_std", sort=False, macs="macs", params="params",
                     latency_ms_p50="latency_ms_p50")  # fmt: skip
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
