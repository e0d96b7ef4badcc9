"""Read the results store (results/README.md describes it) into pandas; analysis reads ONLY through here.

    from analysis.store import load_trials, load_epochs, load_subnets, seed_view
    trials = load_trials("results", sweep="digits", status="ok")      # one row per trial
    points = seed_view(trials)                                        # one row per design point, mean/std/count

A table is read in one pass over its files: each file as Arrow, several at once (on an object store too), then one
concatenation over the files' unified schema (columns added, types widened, as the store's contract allows) and one
conversion to pandas. A file that cannot be read (truncated, half-copied, foreign) is skipped with a warning that
names it, so one bad file never hides the rest of a sweep. Dot-files (writes in progress) are ignored. `columns`
keeps only the columns an analysis needs (the epochs table's per-member lists are most of its bytes).
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spaces.classes import POINT_KEYS

# Numeric columns that are identity or bookkeeping, never a measurement to average.
_NOT_METRICS = {"schema_version", "seed", "depth", "width", "members", "budget", "epochs", "budget_depth",
                "budget_width", "epoch", "num_classes", "in_chans", "image_size", "batch_size", "throughput_batch",
                "num_threads", "cpus", "gpus"}  # fmt: skip


def forking_is_safe() -> bool:
    """Return whether this process may fork a worker (the report's trials reader, the figures' drawing workers): the
    platform forks, and no other Python thread runs here (a sweep's Ray client holds some; a forked copy of another
    thread's locks can deadlock)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _filesystem(store: str) -> tuple[pafs.FileSystem, str]:
    if "://" in str(store):
        return pafs.FileSystem.from_uri(str(store))
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(str(store)))


def sweep_names(store: str) -> list[str]:
    """Return the sweep names that have a folder in the store's trials or epochs table (local path or URI)."""
    fs, root = _filesystem(store)
    names = set()
    for table in ("trials", "epochs"):
        infos = fs.get_file_info(pafs.FileSelector(f"{root}/{table}", allow_not_found=True))
        names |= {i.base_name[len("sweep=") :] for i in infos
                  if i.type == pafs.FileType.Directory and i.base_name.startswith("sweep=")}  # fmt: skip
    return sorted(names)


def _files(fs: pafs.FileSystem, root: str, table: str, sweep: str | None) -> list[tuple[str, str]]:
    """Return (sweep, path) of every visible Parquet file of `table`, sorted by path."""
    base = f"{root}/{table}"
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    out = []
    for info in infos:
        rel = info.path[len(base) + 1 :].split("/")
        if info.type != pafs.FileType.File or len(rel) != 2 or not rel[0].startswith("sweep="):
            continue
        name = rel[1]
        if name.startswith(".") or not name.endswith(".parquet"):
            continue
        part = rel[0][len("sweep=") :]
        if sweep is None or part == sweep:
            out.append((part, info.path))
    return sorted(out, key=lambda t: t[1])


# Files read at once, in threads (pyarrow releases the GIL while it reads). On an object store a read waits on the
# network, and pyarrow's own dataset API reads in parallel there too: 8 at once (our choice). On a local disk a
# results file (one trial's rows) takes under a millisecond of CPU and no waiting, so threads only add contention:
# the report's read of the More-or-Less store (3,780 trials and 3,780 epochs files; `analysis.report.read_store`, two
# processes on 2 cores; issue 23) took 3.2 / 3.6 / 4.7 s and 6.2 / 7.0 / 8.8 CPU-s with 1 / 2 / 8 threads (medians
# of 3, alternating, load average 1.8-2.8).
READ_THREADS = 8
READ_THREADS_LOCAL = 1
# Files whose tables are concatenated at once before the next batch is read (memory; our choice).
READ_BATCH = 256


def _read_files(fs: pafs.FileSystem, files: list[tuple[str, str]], columns: list[str] | None) -> pd.DataFrame:
    """Return the rows of the readable `files` ((sweep, path) pairs) in their order as one DataFrame with a leading
    `sweep` column (`_read_arrow`, converted to pandas once). Warns naming each file that cannot be read."""
    table, problems = _read_arrow(fs, files, columns)
    for problem in problems:
        warnings.warn(problem, stacklevel=4)
    return _to_pandas(table)


def _to_pandas(table: pa.Table | None) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame()
    # The table's buffers are let go column by column as pandas takes them over (self_destruct).
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _read_arrow(fs: pafs.FileSystem, files: list[tuple[str, str]],
                columns: list[str] | None) -> tuple[pa.Table | None, list[str]]:  # fmt: skip
    """Return (the rows of the readable `files` ((sweep, path) pairs) in their order as one Arrow table with a leading
    `sweep` column, None when there are none; a message per file that cannot be read): each file read as Arrow (in
    READ_THREADS threads, READ_THREADS_LOCAL on a local disk), the tables concatenated over their unified schema (a
    column missing from a file reads as null, types widen).

    Measured on 3,780 one-row trials files (issue 23): a pyarrow dataset scan of them peaked at 1.1 GB of memory,
    these reads at 0.43 GB in about the same time, and at 0.16 GB batch by batch; converting each file to pandas (the
    old way) took 4x as long.
    """

    wanted = None if columns is None else set(columns)

    def read(item: tuple[str, str]) -> pa.Table | str:
        part, path = item
        try:
            # One file's reader, only the wanted columns decoded, in this thread: for files of a few rows a reader is
            # 2x faster than read_table (a dataset per call) and arrow's own threads cost more than they save.
            with fs.open_input_file(path) as f:
                reader = pq.ParquetFile(f)
                names = None if wanted is None else [c for c in reader.schema_arrow.names if c in wanted]
                tab = reader.read(columns=names, use_threads=False)
        except (OSError, pa.ArrowException) as err:
            return f"skipping unreadable results file {path}: {err}"
        return tab

    problems: list[str] = []
    batches: list[pa.Table] = []
    threads = READ_THREADS_LOCAL if isinstance(fs, pafs.LocalFileSystem) else READ_THREADS
    with ThreadPoolExecutor(max_workers=threads) as pool:
        read_all = map if threads == 1 else pool.map  # one thread: this one, no hand-over per file
        # Batch by batch, each batch's tables concatenated into one contiguous table and let go: thousands of
        # one-row tables kept until the end held 0.3 GB (allocator pages) for 3 MB of trials rows.
        for first in range(0, len(files), READ_BATCH):
            batch = files[first : first + READ_BATCH]
            read_files = list(read_all(read, batch))
            problems += [t for t in read_files if isinstance(t, str)]
            kept = [(part, t) for (part, _), t in zip(batch, read_files, strict=True)
                    if not isinstance(t, str) and t.num_rows]  # fmt: skip
            if kept:
                table = pa.concat_tables([t for _, t in kept], promote_options="permissive").combine_chunks()
                # The sweep column once per batch, not per file (adding a column to each one-row table cost a
                # quarter of a millisecond per file: a second per table of 3,780 files).
                sweeps = pa.array(np.repeat([part for part, _ in kept], [t.num_rows for _, t in kept]), pa.string())
                batches.append(table.add_column(0, "sweep", sweeps))
            del read_files, kept
    return (pa.concat_tables(batches, promote_options="permissive") if batches else None), problems


def table_files(store: str, table: str, sweep: str | None) -> list[tuple[str, str]]:
    """Return the visible Parquet files of `table` ("trials", "epochs", ...) of `sweep` (None: all) as (sweep, path)
    pairs in the order of their paths: listed once, then split between the processes that read them (`read_part`)."""
    fs, root = _filesystem(store)
    return _files(fs, root, table, sweep)


def read_part(store: str, files: list[tuple[str, str]]) -> tuple[pa.Table | None, list[str]]:
    """Return (the rows of `files` (part of a `table_files` listing), in their order, as one Arrow table with a leading
    `sweep` column, None when there are none; a message per file that cannot be read), every column: the part of a
    table one process reads when several read it (`frame_of_parts` joins the parts)."""
    fs, _ = _filesystem(store)
    return _read_arrow(fs, files, None)


def frame_of_parts(parts: list[pa.Table | None]) -> pd.DataFrame:
    """Return the parts of a table (`read_part`, in the order of its files) as one DataFrame, the same as
    `load_trials` / `load_epochs` without filters or `columns` return for all of its files."""
    tables = [t for t in parts if t is not None]
    return _frame(_to_pandas(pa.concat_tables(tables, promote_options="permissive") if tables else None), "", {})


def _load(store: str, table: str, sweep: str | None, filters: dict, columns: list[str] | None = None) -> pd.DataFrame:
    fs, root = _filesystem(store)
    files = _files(fs, root, table, sweep)
    if columns is not None:
        columns = list(dict.fromkeys([*columns, "trial_id", *filters]))
    return _frame(_read_files(fs, files, columns), table, filters)


def _frame(df: pd.DataFrame, table: str, filters: dict) -> pd.DataFrame:
    """Return the rows of `df` (a table as read) that pass `filters` (see `load_trials`), indexed 0..n-1."""
    if df.empty:
        return pd.DataFrame(columns=["sweep", "trial_id"])
    for column, wanted in filters.items():
        if column not in df.columns:
            raise KeyError(f"no column {column!r} in the {table} table; columns: {', '.join(df.columns)}")
        if isinstance(wanted, list | tuple | set | frozenset):
            df = df[df[column].isin(list(wanted))]
        else:
            df = df[df[column] == wanted]
    return df.reset_index(drop=True)


def load_trials(store: str = "results", sweep: str | None = None, columns: list[str] | None = None,
                **filters) -> pd.DataFrame:  # fmt: skip
    """Return the trials table (one row per trial) of the store as a DataFrame, with a `sweep` column.

    `sweep` picks one sweep (default: all). Each keyword filter keeps rows whose column equals the value, or is in
    it when the value is a list/tuple/set, e.g. `load_trials("results", status="ok", design_class=["deq", "weq"])`.
    `columns` (default: all) reads only those columns (those the table has; `sweep` and `trial_id` always).
    Unreadable files are skipped with a `warnings.warn` naming the file.
    """
    return _load(store, "trials", sweep, filters, columns)


def load_epochs(store: str = "results", sweep: str | None = None, columns: list[str] | None = None,
               **filters) -> pd.DataFrame:  # fmt: skip
    """Return the epochs table (one row per trial and epoch, `epoch` 1-based) as a DataFrame, with a `sweep` column.

    Filters and `columns` work as in `load_trials`. Unreadable files are skipped with a `warnings.warn` naming the file.
    """
    return _load(store, "epochs", sweep, filters, columns)


def load_subnets(store: str = "results", sweep: str | None = None, columns: list[str] | None = None,
               **filters) -> pd.DataFrame:  # fmt: skip
    """Return the subnets table (one row per mutual trial and evaluated (width_mult, resolution) sub-network: test_acc
    as a fraction, params, macs per sample, latency_ms_p50 in ms) as a DataFrame, with a `sweep` column.

    Filters and `columns` work as in `load_trials`. A store without mutual trials gives an empty frame.
    """
    return _load(store, "subnets", sweep, filters, columns)


def comparable_latency_ms(trials: pd.DataFrame) -> pd.Series:
    """Return each row's batch-1 p50 latency in ms for comparing designs: the sweep's latency-pass reading
    (`latency_interleaved_ms_p50`, every trial of a budget timed in the same interleaved blocks) where the row has
    one, else the trial's own `latency_ms_p50` (NaN where neither is there)."""
    def column(name: str) -> pd.Series:
        return trials[name].astype(float) if name in trials else pd.Series(float("nan"), index=trials.index)

    return column("latency_interleaved_ms_p50").fillna(column("latency_ms_p50"))


def seed_view(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Return the seed-aggregated view of a trials or epochs DataFrame: one row per design point (and epoch).

    Groups by the design-point columns (`spaces.classes.POINT_KEYS` present in `df`, plus `epoch` for the epochs
    table) and gives, for each metric, `<metric>_mean`, `<metric>_std` (sample std; NaN for one seed) and
    `<metric>_count` (non-null values), plus `n_seeds` (distinct seeds). `metrics` defaults to every numeric
    measurement column. Units are those of the metric. Filter first (e.g. status == "ok")
    if failed trials should not count.
    """
    keys = [c for c in POINT_KEYS if c in df.columns]
    if "epoch" in df.columns:
        keys.append("epoch")
    if metrics is None:
        metrics = [c for c in df.columns if c not in keys and c not in _NOT_METRICS
                   and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]  # fmt: skip
    grouped = df.groupby(keys, dropna=False, sort=True)
    out = grouped[metrics].agg(["mean", "std", "count"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out.insert(0, "n_seeds", grouped["seed"].nunique() if "seed" in df.columns else grouped.size())
    return out.reset_index()


def over_seeds(df: pd.DataFrame, keys: list[str], value: str, mean: str, std: str, sort: bool = True,
               **means: str) -> pd.DataFrame:  # fmt: skip
    """Return one row per group of `df` by `keys` (missing key values form their own group): `n_seeds` (distinct
    seeds), `mean` and `std`, the mean and sample standard deviation of column `value` over the group's rows (NaN std
    for one row), and for each keyword `name=column` the mean of that column. Units are those of the columns.

    The one seed aggregation of the analysis (EST cells, the advisor's designs, the sub-network query table, the DCT
    table, the report's fixed designs), in group-wise array operations.
    """
    grouped = df.groupby(keys, sort=sort, dropna=False)
    aggs = {"n_seeds": ("seed", "nunique"), mean: (value, "mean")}
    out = grouped.agg(**aggs, **{name: (column, "mean") for name, column in means.items()})
    out.insert(2, std, sample_std(df, grouped, value))
    return out.reset_index()


def distinct_joined(df: pd.DataFrame, keys: list[str], column: str, sep: str, none: str = "") -> pd.Series:
    """Return per group of `df` by `keys` (in order of first appearance; missing key values form their own group) the
    distinct non-missing values of `column` as text, sorted and joined by `sep`, or `none` where the group has none;
    indexed by the keys. Group-wise: only groups with several distinct values are joined one by one."""
    groups = df.groupby(keys, sort=False, dropna=False).size().index
    d = df[[*keys, column]].dropna(subset=[column])
    d = d.assign(**{column: d[column].astype(str)}).drop_duplicates().sort_values(column, kind="stable")
    many = d.duplicated(keys, keep=False)
    one = d[~many].set_index(keys)[column]
    joined = d[many].groupby(keys, sort=False, dropna=False)[column].agg(sep.join) if many.any() else one.iloc[:0]
    values = pd.concat([one, joined]).reindex(groups)
    return pd.Series(values.where(values.notna(), none).tolist(), index=groups, name=column)


def sample_std(df: pd.DataFrame, grouped, value: str) -> np.ndarray:
    """Return per group of `grouped` (a groupby of `df`, in its result order) the sample standard deviation (ddof 1)
    of column `value`, NaN below two values; the same unit as the column.

    The numbers are those of pandas' `Series.std` on each group's rows (NaN skipped), bit for bit: the same two-pass
    sums (numpy's, along rows of equal length), computed for every group of one size at once rather than one group at
    a time. pandas' grouped `std` uses another (one-pass) algorithm whose last bits differ, and a last bit decides a
    tie between two intervals that touch.
    """
    codes = grouped.ngroup().to_numpy()
    n_groups = grouped.ngroups
    out = np.full(n_groups, np.nan)
    if not len(codes):
        return out
    order = np.argsort(codes, kind="stable")  # rows by group, each group's rows in their order
    values = df[value].to_numpy(dtype=float)[order]
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for n in np.unique(sizes[sizes >= 2]):
        which = np.flatnonzero(sizes == n)
        rows = values[starts[which][:, None] + np.arange(n)]
        missing = np.isnan(rows)
        count = (~missing).sum(axis=1).astype(float)
        rows = np.where(missing, 0.0, rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = rows.sum(axis=1, dtype=np.float64) / count
            sqr = (avg[:, None] - rows) ** 2
            sqr[missing] = 0.0
            var = sqr.sum(axis=1, dtype=np.float64) / (count - 1)
        var[count < 2] = np.nan
        out[which] = np.sqrt(var)
    return out
