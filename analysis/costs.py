"""The store's costs table (written by the sweep's cost pass: every design point measured alone on its device) read
beside the trials table.

    from analysis.costs import load_costs, with_costs
    trials = with_costs(load_trials("results", sweep="digits"), load_costs("results", sweep="digits"))

`with_costs` adds to each trials row its design point's isolated figures -- `epoch_time_isolated_s` (s),
`peak_mem_isolated_mb` (MiB above the baseline), `latency_isolated_ms_p50` (ms, batch 1) -- and `cost_source`: "cost
pass" where the point has a costs row for the trial's device, else "in-run" (the trial's own figures, measured while
other trials may have shared its device). The trials' own columns are kept as they are. `prefer_isolated` is the one
rule every reader (figures, advisor, explorer) uses to pick a figure.
"""

from __future__ import annotations

import os
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# costs-table column -> the column `with_costs` adds to the trials rows
ISOLATED = {
    "epoch_time_s": "epoch_time_isolated_s",
    "peak_mem_mb": "peak_mem_isolated_mb",
    "latency_ms_p50": "latency_isolated_ms_p50",
}
COST_PASS, IN_RUN = "cost pass", "in-run"


def load_costs(store: str, sweep: str | None = None) -> pd.DataFrame:
    """Return the costs table (one row per design point and device; results/README.md has the columns) with a
    `sweep` column, or an empty frame when no cost pass has written there. Unreadable files are skipped with a
    warning naming them."""
    if "://" in str(store):
        fs, root = pafs.FileSystem.from_uri(str(store))
    else:
        fs, root = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(str(store)))
    base = f"{root}/costs"
    frames = []
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        rel = info.path[len(base) + 1 :].split("/")
        if info.type != pafs.FileType.File or len(rel) != 2 or not rel[0].startswith("sweep="):
            continue
        part = rel[0][len("sweep=") :]
        if rel[1].startswith(".") or not rel[1].endswith(".parquet") or (sweep is not None and part != sweep):
            continue
        try:
            frames.append(pq.read_table(info.path, filesystem=fs).to_pandas().assign(sweep=part))
        except (OSError, pa.ArrowException) as err:
            warnings.warn(f"skipping unreadable costs file {info.path}: {err}", stacklevel=2)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["sweep", "point_id"])


def with_costs(trials: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """Return `trials` with its design points' isolated figures (the ISOLATED columns; NaN where the point has no
    costs row for the trial's device) and `cost_source` ("cost pass" or "in-run") per row."""
    out = trials.copy()
    keys = [k for k in ("sweep", "point_id", "device_name") if k in out and k in costs]
    if costs.empty or "point_id" not in keys:
        for column in ISOLATED.values():
            out[column] = float("nan")
        out["cost_source"] = IN_RUN
        return out
    found = costs[keys + list(ISOLATED)].drop_duplicates(keys, keep="last").rename(columns=ISOLATED)
    out = out.drop(columns=[c for c in ISOLATED.values() if c in out]).merge(found, on=keys, how="left")
    out["cost_source"] = out["epoch_time_isolated_s"].notna().map({True: COST_PASS, False: IN_RUN})
    return out


def prefer_isolated(rows: pd.DataFrame, isolated: str, in_run: pd.Series) -> pd.Series:
    """Return the column `isolated` of `rows` (a figure of the cost pass) where it has a value, else `in_run` (the
    trials' own figure)."""
    if isolated not in rows:
        return in_run
    return rows[isolated].astype(float).fillna(in_run)


def source_of(rows: pd.DataFrame) -> str:
    """Return which source the costs of `rows` came from: "cost pass", "in-run", or "cost pass and in-run" when some
    rows have an isolated figure and some do not."""
    sources = set(rows["cost_source"].dropna()) if "cost_source" in rows else set()
    if not sources:
        return IN_RUN
    return " and ".join(sorted(sources)) if len(sources) > 1 else sources.pop()
