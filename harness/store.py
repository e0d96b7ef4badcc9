"""The results store writer: one Parquet file per trial in `trials/` and in `epochs/`, partitioned by sweep.

Layout (hive style, so `pandas.read_parquet("<store>/trials")` and DuckDB add a `sweep` column from the folder name):

    <store>/trials/sweep=<sweep>/<trial_id>.parquet   one row per trial (identity + design + recipe + FINAL record)
    <store>/epochs/sweep=<sweep>/<trial_id>.parquet   one row per (trial, epoch)
    <store>/subnets/sweep=<sweep>/<trial_id>.parquet  one row per evaluated sub-network (mutual and coop trials)

Every file is written under a temporary name starting with "." and then renamed into place, so a reader never sees a
half-written file (readers skip dot-files). The epochs (and subnets) files are written before the trials file: a
trials row is the marker that a trial is complete. Column names, types and units are documented in results/README.md.

The store is a local path or a URI that `pyarrow.fs.FileSystem.from_uri` understands (e.g. s3://bucket/prefix).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spaces.classes import SUBNET_KINDS

SCHEMA_VERSION = 2  # 2: width and budget_width are float64 (real widths, width_granularity = "channel")
# Statuses that make a trial complete: a rerun of the sweep does not train it again.
COMPLETE_STATUSES = ("ok", "diverged", "error")
TABLES = ("trials", "epochs", "subnets")

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_TS = pa.timestamp("us", tz="UTC")

# Columns both tables carry: who the trial is. Non-nullable where every trial has a value.
IDENTITY_FIELDS = [
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("trial_id", _S, nullable=False),
    pa.field("point_id", _S, nullable=False),
    pa.field("dataset", _S),
    pa.field("split", _S),
    pa.field("seed", _I),
    pa.field("design_class", _S),
    pa.field("family", _S),
    pa.field("depth", _I),
    pa.field("width", _F),
    pa.field("members", _I),
    pa.field("budget", _I),
    pa.field("fit", _S),
    pa.field("epochs", _I),
    pa.field("budget_depth", _I),
    pa.field("budget_width", _F),
]

TRIALS_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + [
        pa.field("status", _S, nullable=False),
        pa.field("error", _S),
        pa.field("epochs_done", _I),
        # design
        pa.field("params_member", _I),
        pa.field("params_total", _I),
        pa.field("budget_deviation_pct", _F),
        pa.field("macs", _I),
        pa.field("num_classes", _I),
        pa.field("in_chans", _I),
        pa.field("image_size", _I),
        pa.field("family_args", _S),
        # recipe
        pa.field("lr", _F),
        pa.field("weight_decay", _F),
        pa.field("wd_policy", _S),
        pa.field("schedule", _S),
        pa.field("batch_size", _I),
        pa.field("lambda_cot", _F),
        pa.field("member_views", _B),
        pa.field("precision", _S),
        pa.field("combine", _S),
        pa.field("execution", _S),
        pa.field("channels_last", _B),
        pa.field("compile", _S),
        pa.field("compile_backend", _S),
        pa.field("recipe_json", _S),
        # FINAL record
        pa.field("final_acc", _F),
        pa.field("best_acc", _F),
        pa.field("best_epoch", _I),
        pa.field("train_time_s", _F),
        pa.field("epoch_time_s_mean", _F),
        pa.field("epoch_time_s_steady", _F),
        pa.field("macs_fvcore", _I),
        pa.field("macs_fvcore_error", _S),
        pa.field("flops_torch", _I),
        pa.field("flops_torch_error", _S),
        pa.field("peak_mem_mb", _F),
        pa.field("peak_mem_reserved_mb", _F),
        pa.field("nvml_mem_mb", _F),
        pa.field("mem_source", _S),
        pa.field("mem_baseline_mb", _F),
        pa.field("data_device_mb", _F),
        pa.field("member_schedule", _S),
        pa.field("latency_ms_iqr", _F),
        pa.field("latency_fused_ms_p50", _F),
        pa.field("latency_fused_ms_p90", _F),
        pa.field("latency_fused_ms_iqr", _F),
        pa.field("latency_lock_wait_s", _F),
        pa.field("latency_ms_p50", _F),
        pa.field("latency_ms_p90", _F),
        # a members-parallel trial: its members running at once on their workers (harness.parallel)
        pa.field("latency_concurrent_ms_p50", _F),
        pa.field("latency_concurrent_ms_p90", _F),
        pa.field("throughput_concurrent_sps", _F),
        # the sweep's latency pass (harness.latency_pass), written into the row after the sweep's trials
        pa.field("latency_interleaved_ms_p50", _F),
        pa.field("latency_interleaved_ms_p90", _F),
        pa.field("latency_interleaved_ms_iqr", _F),
        pa.field("throughput_sps", _F),
        pa.field("throughput_batch", _I),
        pa.field("device_name", _S),
        pa.field("device_shared", _B),
        pa.field("device_share", _S),
        pa.field("torch_version", _S),
        pa.field("cuda_version", _S),
        pa.field("num_threads", _I),
        pa.field("hostname", _S),
        pa.field("split_id", _S),
        pa.field("started_at", _TS),
        pa.field("finished_at", _TS),
        # bookkeeping
        pa.field("cpus", _F),
        pa.field("gpus", _F),
        # how the trial spanned devices (resources.parallel: none, data, members) and on how many Ray Train workers
        pa.field("parallel", _S),
        pa.field("workers", _I),
        pa.field("config_json", _S),
        pa.field("run_id", _S),  # the run (driver) that trained the trial and wrote this row (harness.claims)
        pa.field("written_at", _TS, nullable=False),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "trials"},
)

EPOCHS_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + [
        pa.field("epoch", _I, nullable=False),
        pa.field("test_acc", _F),
        pa.field("member_acc", pa.list_(_F)),
        pa.field("member_acc_mean", _F),
        pa.field("train_loss", _F),
        pa.field("test_loss", _F),
        pa.field("epoch_time_s", _F),
        pa.field("data_time_s", _F),
        pa.field("cum_time_s", _F),
        pa.field("lr", _F),
        pa.field("lambda_cot", _F),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "epochs"},
)

SUBNETS_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + [
        pa.field("width_mult", _F, nullable=False),
        pa.field("resolution", _I, nullable=False),
        pa.field("test_acc", _F),
        pa.field("params", _I),
        pa.field("macs", _I),
        pa.field("flops_torch", _I),
        pa.field("latency_ms_p50", _F),
        pa.field("latency_ms_p90", _F),
        pa.field("bn_calib_samples", _I),
        pa.field("device_name", _S),
        # What varies: "width_resolution" (mutual) or "depth" (coop: width_mult 1.0, resolution the image size).
        pa.field("subnet_kind", _S),
        pa.field("network", _S),  # coop: "teammate_1", "teammate_2" or "leader"; null for mutual
        pa.field("scale", _F),  # coop: the sub-network's scaling factor; null for mutual
        pa.field("blocks_executed", _I),  # coop: residual blocks the sub-network runs; null for mutual
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "subnets"},
)

# FINAL-record keys copied as they are into the trials row.
_FINAL_KEYS = (
    "final_acc", "best_acc", "best_epoch", "train_time_s", "macs_fvcore", "macs_fvcore_error", "flops_torch",
    "flops_torch_error", "peak_mem_mb", "peak_mem_reserved_mb", "nvml_mem_mb", "mem_source", "latency_ms_p50",
    "latency_ms_p90", "throughput_sps", "throughput_batch", "device_name", "device_shared", "device_share",
    "torch_version", "cuda_version", "num_threads", "hostname", "split_id", "started_at", "finished_at",
    "channels_last",
    "mem_baseline_mb", "data_device_mb", "member_schedule", "latency_ms_iqr", "latency_fused_ms_p50",
    "latency_fused_ms_p90", "latency_fused_ms_iqr", "latency_lock_wait_s", "latency_concurrent_ms_p50",
    "latency_concurrent_ms_p90", "throughput_concurrent_sps",
)  # fmt: skip
_RECIPE_KEYS = ("lr", "weight_decay", "wd_policy", "schedule", "batch_size", "lambda_cot", "member_views", "precision",
                "combine", "execution", "compile", "compile_backend")  # fmt: skip
_EPOCH_KEYS = ("epoch", "test_acc", "member_acc", "member_acc_mean", "train_loss", "test_loss", "epoch_time_s",
               "cum_time_s", "lr", "lambda_cot", "data_time_s")  # fmt: skip


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def point_id(config: dict) -> str:
    """Return the design point's id: 16 hex chars of sha1 over the trial's identity without its seed
    (`spaces.spec.trial_identity`: data set, design, epochs, and the non-default recipe, resources and threads).

    Trials that differ only in their seed share a point_id (it is what `analysis.store.seed_view` groups by).
    """
    from spaces.spec import identity_hash, trial_identity

    return identity_hash(trial_identity(config, with_seed=False))


def identity_columns(config: dict) -> dict:
    """Return the identity columns both tables carry, taken from a trial config (`spaces.spec.trial_configs`)."""
    design = config.get("design") or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "trial_id": config["trial_id"],
        "point_id": point_id(config),
        "dataset": (config.get("dataset") or {}).get("name"),
        "split": "test",
        "seed": config.get("seed"),
        "design_class": design.get("design_class"),
        "family": design.get("family"),
        "depth": design.get("depth"),
        "width": design.get("width"),
        "members": design.get("members"),
        "budget": design.get("budget"),
        "fit": design.get("fit"),
        "epochs": config.get("epochs"),
        "budget_depth": design.get("budget_depth"),
        "budget_width": design.get("budget_width"),
    }


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def build_trial_row(config: dict, final: dict | None, epoch_rows: list[dict] = (), error: str | None = None,
                    run_id: str | None = None) -> dict:  # fmt: skip
    """Return the trials-table row (a dict of column -> value) for one trial.

    `final` is the trial's FINAL record; when it is None (the trial never finished) the row has status "error" and
    `error` as its text. `run_id`: the run writing the row. Times are seconds, memory MiB, accuracies fractions in
    [0, 1].
    """
    design = config.get("design") or {}
    recipe = config.get("recipe") or {}
    resources = config.get("resources") or {}
    row = identity_columns(config)
    row.update(
        params_member=design.get("params_member"),
        params_total=design.get("params_total"),
        budget_deviation_pct=design.get("budget_deviation"),
        macs=design.get("macs"),
        num_classes=design.get("num_classes"),
        in_chans=design.get("in_chans"),
        image_size=design.get("image_size"),
        family_args=_canonical(design.get("family_args") or {}),
        recipe_json=_canonical(recipe),
        cpus=resources.get("cpus"),
        gpus=resources.get("gpus"),
        config_json=_canonical(config),
        run_id=run_id,
        device_shared=bool(resources.get("fractional_gpu", False)),
        parallel=resources.get("parallel", "none"),
        workers=int(resources.get("workers", 1) or 1),
    )
    for key in _RECIPE_KEYS:
        row[key] = recipe.get(key)
    times = [r.get("epoch_time_s") for r in epoch_rows if r.get("epoch_time_s") is not None]
    row["epoch_time_s_mean"] = sum(times) / len(times) if times else None
    # The first epoch also pays one-off costs (torch.compile, cuDNN algorithm search, allocator growth).
    row["epoch_time_s_steady"] = sum(times[1:]) / len(times[1:]) if len(times) > 1 else None
    if final is None:
        row.update(status="error", error=error or "trial ended without a FINAL record",
                   epochs_done=max((r["epoch"] for r in epoch_rows), default=None))  # fmt: skip
    else:
        for key in _FINAL_KEYS:
            if key in final:
                row[key] = final[key]
        # The effective precision is what the trial really ran with (it may differ from the recipe's request).
        if final.get("precision") is not None:
            row["precision"] = final["precision"]
        # Likewise the execution mode: `auto` resolves to the mode the trial ran.
        if final.get("execution") is not None:
            row["execution"] = final["execution"]
        row.update(status=final.get("status") or "ok", error=final.get("error") or error,
                   epochs_done=final.get("epochs_done"))  # fmt: skip
    row["written_at"] = _utcnow()
    return row


def build_epoch_rows(config: dict, epochs: list[dict]) -> list[dict]:
    """Return the epochs-table rows (one dict per EPOCH record) for one trial, identity columns included."""
    ident = identity_columns(config)
    return [{**ident, **{k: rec.get(k) for k in _EPOCH_KEYS}} for rec in epochs]


def build_subnet_rows(config: dict, result: dict | None) -> list[dict]:
    """Return the subnets-table rows of one trial: one per sub-network in the FINAL record's `subnets` (a mutual
    trial's (width, resolution) grid, a coop trial's (network, scale) grid), identity columns included; [] when the
    result carries none."""
    final = (result or {}).get("final") or {}
    ident = identity_columns(config)
    device = final.get("device_name")
    kind = SUBNET_KINDS.get(ident["design_class"])
    return [{**ident, "device_name": device, "subnet_kind": kind, **sub} for sub in final.get("subnets") or []]


def rows_from_result(config: dict, result: dict | None, error: str | None = None,
                     run_id: str | None = None) -> tuple[dict, list[dict]]:  # fmt: skip
    """Return (trials row, epochs rows) from a trial config and `harness.trial.run_trial`'s result.

    `result` is {"epochs": [...], "final": {...}} or None when the trial failed; `error` is then the error text.
    `run_id`: the run writing the rows (the trials row records it).
    """
    epochs = build_epoch_rows(config, (result or {}).get("epochs") or [])
    return build_trial_row(config, (result or {}).get("final"), epochs, error=error, run_id=run_id), epochs


def _coerce(value, typ: pa.DataType):
    """Convert one value to what pyarrow expects for `typ` (None stays None; NaN stays NaN for floats)."""
    if value is None:
        return None
    if pa.types.is_floating(typ):
        return float(value)
    if pa.types.is_integer(typ):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return int(value)
    if pa.types.is_boolean(typ):
        return bool(value)
    if pa.types.is_string(typ):
        return value if isinstance(value, str) else str(value)
    if pa.types.is_timestamp(typ):
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, int | float):
            value = dt.datetime.fromtimestamp(value, dt.UTC)
        if value.tzinfo is None:  # naive times from the trial are UTC by contract
            value = value.replace(tzinfo=dt.UTC)
        return value
    if pa.types.is_list(typ):
        return [_coerce(v, typ.value_type) for v in value]
    return value


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Return `rows` as a pyarrow Table of exactly `schema` (missing keys are null; unknown keys are dropped)."""
    columns = {f.name: [_coerce(r.get(f.name), f.type) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


@functools.lru_cache(maxsize=16)
def _from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    # A URI is parsed once per process: its query (endpoint_override, scheme, region) configures the filesystem and is
    # not part of the path.
    return pafs.FileSystem.from_uri(uri)


def is_uri(store: str) -> bool:
    """Return True when the store is given as a URI (s3://, gs://, hdfs://, file://), not a local path."""
    return "://" in str(store)


def filesystem(store: str) -> tuple[pafs.FileSystem, str]:
    """Return (pyarrow filesystem, root path in it) for a store given as a local path or a URI.

    A URI goes through `pyarrow.fs.FileSystem.from_uri`, which keeps its query parameters (e.g.
    `s3://bucket/store?endpoint_override=host:port&scheme=http`) in the filesystem; paths are joined on the returned
    root (`bucket/store`), never on the URI text.
    """
    if is_uri(store):
        return _from_uri(str(store))
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(str(store)))


@contextlib.contextmanager
def trial_work_dir(store: str, trial_id: str, rank: int | None = None):
    """Yield the path of a new local working folder for one trial of `store` (one worker's with `rank`), removed on
    the way out: `<tmp>/harness-<trial_id>-<store digest>[-rank<N>]-pid<this process>`. A process killed before it
    could remove its folder (a SIGKILLed driver's trial, a lost worker) leaves it behind; the trial's next run on this
    host removes the folders of its (trial, rank) whose process is gone, so a resumed trial leaves none. A folder whose
    process still runs is never touched (a claim taken over from a live but silent run)."""
    prefix = work_dir_prefix(store, trial_id, rank)
    for left in glob.glob(f"{glob.escape(prefix)}-pid*"):
        pid = left.rsplit("-pid", 1)[1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    path = f"{prefix}-pid{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)  # this process's own, from an attempt it did not finish
    os.makedirs(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def work_dir_prefix(store: str, trial_id: str, rank: int | None = None) -> str:
    """Return the path every working folder of the trial (of one worker: `rank`) starts with, `-pid<N>` following:
    `<tmp>/harness-<trial_id>-<8 hex digits of the store's name>[-rank<N>]` (`trial_work_dir`)."""
    digest = hashlib.sha256(display_name(store).encode()).hexdigest()[:8]
    worker = "" if rank is None else f"-rank{rank}"
    return os.path.join(tempfile.gettempdir(), f"harness-{trial_id}-{digest}{worker}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def display_name(store: str) -> str:
    """Return the store as a person wrote it: a URI as given, a local path made absolute."""
    return str(store) if is_uri(store) else filesystem(store)[1]


def store_path(store: str, table: str, sweep: str, trial_id: str | None = None) -> str:
    """Return the folder of `table` ("trials", "epochs", "subnets") for `sweep` in the store, or a trial's file."""
    _, root = filesystem(store)
    folder = f"{root}/{table}/sweep={sweep}"
    return folder if trial_id is None else f"{folder}/{trial_id}.parquet"


def _write_atomic(fs: pafs.FileSystem, table: pa.Table, path: str) -> None:
    folder, name = path.rsplit("/", 1)
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(table, tmp, filesystem=fs)
    # A rename within one folder is atomic on POSIX filesystems (os.replace semantics).
    fs.move(tmp, path)


def write_trial(store: str, sweep: str, trial_row: dict, epoch_rows: list[dict], subnet_rows: list[dict] = ()) -> str:
    """Write one trial's rows to the store (epochs file first, then the subnets file when there are sub-network rows,
    then the trials file); return the trials file path."""
    fs, _ = filesystem(store)
    trial_id = trial_row["trial_id"]
    _write_atomic(fs, to_table(list(epoch_rows), EPOCHS_SCHEMA), store_path(store, "epochs", sweep, trial_id))
    if subnet_rows:
        _write_atomic(fs, to_table(list(subnet_rows), SUBNETS_SCHEMA), store_path(store, "subnets", sweep, trial_id))
    path = store_path(store, "trials", sweep, trial_id)
    _write_atomic(fs, to_table([trial_row], TRIALS_SCHEMA), path)
    return path


def write_error_row(store: str, sweep: str, trial_row: dict) -> str:
    """Write only the trials row of a trial that failed; return its path.

    Epoch and sub-network rows already in the store (e.g. of a trial that trained and then failed to write its trials
    row) are never replaced: an error row adds what went wrong, it does not erase what was measured.
    """
    fs, _ = filesystem(store)
    path = store_path(store, "trials", sweep, trial_row["trial_id"])
    _write_atomic(fs, to_table([trial_row], TRIALS_SCHEMA), path)
    return path


def update_trial_rows(store: str, sweep: str, values: dict[str, dict]) -> int:
    """Set columns of trials rows already in the store ({trial_id: {column: value}}), rewriting each trial's file
    atomically with the schema's types; return the number of rows rewritten (a trial without a readable row is
    skipped)."""
    fs, _ = filesystem(store)
    written = 0
    for trial_id, columns in values.items():
        path = store_path(store, "trials", sweep, trial_id)
        try:
            rows = pq.read_table(path, filesystem=fs).to_pylist()
        except (OSError, pa.ArrowException):
            continue
        if rows:
            _write_atomic(fs, to_table([{**rows[0], **columns}], TRIALS_SCHEMA), path)
            written += 1
    return written


def read_trial_status(store: str, sweep: str, trial_id: str) -> str | None:
    """Return the status recorded for a trial, or None if it has no (readable) trials row."""
    fs, _ = filesystem(store)
    try:
        table = pq.read_table(store_path(store, "trials", sweep, trial_id), filesystem=fs, columns=["status"])
    except (OSError, pa.ArrowException):
        return None
    return table.column("status")[0].as_py() if table.num_rows else None


def finished_status(store: str, sweep: str, trial_id: str, statuses: tuple[str, ...] = COMPLETE_STATUSES) -> str | None:
    """Return the trial's status when the store holds it finished: a trials row with a status in `statuses` and, unless
    that is "error", an epochs file (and a subnets file, where there is one) that reads; else None. The same test the
    sweep's plan makes (`SweepScan.done`), for one trial."""
    fs, _ = filesystem(store)
    status = read_trial_status(store, sweep, trial_id)
    if status not in statuses:
        return None
    if status != "error":
        for table, must in (("epochs", True), ("subnets", False)):
            path = store_path(store, table, sweep, trial_id)
            try:
                pq.read_table(path, filesystem=fs)
            except FileNotFoundError:
                if must:
                    return None
            except (OSError, pa.ArrowException):
                return None
    return status


class StoreListingError(OSError):
    """The store's folder could not be listed or read (unreachable server, no permission); the message is one line."""


@dataclass
class SweepScan:
    """What the store holds for one sweep: `status` of every trial whose trials row reads, `files` (table -> trial id
    -> path) of every visible file, and `broken` (trial id -> [(path, reason)]) for files that do not read, or an
    epochs file missing beside an ok/diverged trials row."""

    status: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    broken: dict = field(default_factory=dict)

    def done(self, statuses: tuple[str, ...] = COMPLETE_STATUSES) -> set[str]:
        """Return the ids of trials that count as done: a status in `statuses` and every file of the trial reads."""
        return {tid for tid, status in self.status.items() if status in statuses and tid not in self.broken}


def _list_partition(fs: pafs.FileSystem, folder: str) -> dict[str, str]:
    """Return {trial id: path} of the visible Parquet files in one sweep partition (one listing; none if absent)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    except (OSError, pa.ArrowException) as err:
        raise StoreListingError(f"store error: cannot list {folder}: {str(err).splitlines()[0]}") from None
    return {info.base_name[: -len(".parquet")]: info.path for info in infos
            if info.type == pafs.FileType.File and not info.base_name.startswith((".", "_"))
            and info.base_name.endswith(".parquet")}  # fmt: skip


def _read_all(fs: pafs.FileSystem, paths: dict[str, str], schema: pa.Schema, columns: list[str] | None):
    """Read every file of `paths` (trial id -> path) as one dataset (parallel reads); return (table or None, {trial id:
    reason} of the files that do not read). Only when the joint read fails is each file read on its own, to name it."""
    if not paths:
        return None, {}
    try:
        return ds.dataset(list(paths.values()), schema=schema, format="parquet", filesystem=fs).to_table(
            columns=columns), {}  # fmt: skip
    except (OSError, pa.ArrowException):
        pass
    tables, bad = [], {}
    for tid, path in paths.items():
        try:
            tables.append(pq.read_table(path, filesystem=fs, schema=schema, columns=columns))
        except (OSError, pa.ArrowException) as err:
            bad[tid] = str(err).splitlines()[0] if str(err) else type(err).__name__
    return (pa.concat_tables(tables) if tables else None), bad


def scan_sweep(store: str, sweep: str) -> SweepScan:
    """Return what the store holds for `sweep` (see SweepScan): one listing per table folder and one parallel read of
    each table's files. Raises StoreListingError when a folder cannot be listed (a missing folder is empty)."""
    try:
        fs, _ = filesystem(store)
    except (OSError, pa.ArrowException) as err:
        raise StoreListingError(f"store error: cannot open {store}: {str(err).splitlines()[0]}") from None
    scan = SweepScan(files={t: _list_partition(fs, store_path(store, t, sweep)) for t in TABLES})
    schemas = {"trials": TRIALS_SCHEMA, "epochs": EPOCHS_SCHEMA, "subnets": SUBNETS_SCHEMA}
    for table in TABLES:
        # The trials table answers the status; the others are read whole, since a reader of the table reads them whole.
        columns = ["trial_id", "status"] if table == "trials" else None
        read, bad = _read_all(fs, scan.files[table], schemas[table], columns)
        for tid, reason in bad.items():
            scan.broken.setdefault(tid, []).append((scan.files[table][tid], reason))
        if table == "trials" and read is not None:
            scan.status = dict(zip(read.column("trial_id").to_pylist(), read.column("status").to_pylist(), strict=True))
    for tid, status in scan.status.items():
        if status != "error" and tid not in scan.files["epochs"]:
            scan.broken.setdefault(tid, []).append((store_path(store, "epochs", sweep, tid), "missing"))
    return scan


def set_aside(store: str, path: str) -> str:
    """Rename an unreadable store file to a dot-file beside it (readers skip those); return the new path."""
    fs, _ = filesystem(store)
    folder, name = path.rsplit("/", 1)
    new = f"{folder}/.{name}.unreadable-{_utcnow().strftime('%Y%m%dT%H%M%S')}"
    fs.move(path, new)
    return new


def completed_trial_ids(store: str, sweep: str, statuses: tuple[str, ...] = COMPLETE_STATUSES) -> set[str]:
    """Return the ids of the sweep's trials whose trials row exists with a status in `statuses` and whose files all
    read.

    Unreadable (e.g. truncated) files do not count: such a trial runs again and its files are rewritten. A folder that
    cannot be listed raises StoreListingError rather than passing for an empty store.
    """
    return scan_sweep(store, sweep).done(statuses)


def check_store_writable(store: str) -> None:
    """Raise PermissionError (one line: the folder, the reason, the fix) unless a file can be written where each table
    folder of the store is, or would be made: in the folder itself when it exists, else in its nearest existing parent.

    Run before Ray starts, so that an unwritable store fails in a second rather than after every trial trained. The
    probe is a file with a name of its own (`.probe-<random>`) and is the only thing this removes again: no folder is
    made or deleted, so drivers started together on one store cannot delete each other's probes (when a probe's
    folder was deleted, pyarrow's recursive folder delete took the other driver's probe with it). A probe that is gone
    when it is removed was still written, so that is not a write failure.
    """
    fs, root = filesystem(store)
    for table in TABLES:
        folder = f"{root}/{table}"
        try:
            where = folder
            while "/" in where.strip("/") and fs.get_file_info(where).type == pafs.FileType.NotFound:
                where = where.rsplit("/", 1)[0]
            probe = f"{where}/.probe-{uuid.uuid4().hex}"
            with fs.open_output_stream(probe) as out:
                out.write(b"probe")
        except (OSError, pa.ArrowException) as err:
            reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
            raise PermissionError(
                f"store error: cannot write to {folder} ({reason}); pass --store a folder you can write to, or fix "
                "its permissions"
            ) from None
        try:
            fs.delete_file(probe)
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as err:  # a store where files cannot be removed breaks set-aside
            if "no such file" not in str(err).lower():
                raise PermissionError(
                    f"store error: cannot delete {probe} ({str(err).splitlines()[0]}); the store must allow deleting "
                    "files (set-aside and claim files are renamed and removed)"
                ) from None


# --- the costs table (harness.cost_pass) ------------------------------------------------------------------------
# One row per (design point, device): the costs of the point measured alone by the sweep's cost pass, next to the
# trials' own in-run figures. <store>/costs/sweep=<sweep>/<point_id>-<device key>.parquet; results/README.md has the
# columns.
_IDENTITY_BY_NAME = {f.name: f for f in IDENTITY_FIELDS}
# The design point's columns, typed as the trials table types them (one definition: width is a double in both).
_COST_POINT_FIELDS = [_IDENTITY_BY_NAME[n] for n in ("dataset", "design_class", "family", "depth", "width", "members",
                                                     "budget", "fit", "epochs")]  # fmt: skip
COSTS_SCHEMA = pa.schema(
    [
        _IDENTITY_BY_NAME["schema_version"],
        _IDENTITY_BY_NAME["point_id"],
        pa.field("seed_built", _I),
        *_COST_POINT_FIELDS,
        pa.field("params_total", _I),
        # where it was measured, with what
        pa.field("device_name", _S, nullable=False),
        pa.field("device_type", _S),
        pa.field("cpus", _F),
        pa.field("gpus", _F),
        pa.field("threads", _I),
        pa.field("trials_per_gpu", _I),
        pa.field("trials_per_cpu_group", _I),
        pa.field("precision", _S),
        pa.field("execution", _S),
        pa.field("member_schedule", _S),
        pa.field("batch_size", _I),
        pa.field("steps_per_epoch", _F),
        # the figures
        pa.field("step_time_ms_p50", _F),
        pa.field("step_time_ms_p90", _F),
        pa.field("step_time_ms_iqr", _F),
        pa.field("epoch_time_s", _F),
        pa.field("peak_mem_mb", _F),
        pa.field("mem_baseline_mb", _F),
        pa.field("peak_mem_reserved_mb", _F),
        pa.field("mem_source", _S),
        pa.field("latency_ms_p50", _F),
        pa.field("latency_ms_p90", _F),
        pa.field("latency_ms_iqr", _F),
        # the pass's settings
        pa.field("warmup_steps", _I),
        pa.field("timed_steps", _I),
        pa.field("blocks", _I),
        pa.field("memory_steps", _I),
        pa.field("latency_runs", _I),
        pa.field("lock_wait_s", _F),
        pa.field("torch_version", _S),
        pa.field("hostname", _S),
        pa.field("measured_at", _TS, nullable=False),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "costs"},
)


def cost_key(point: str, device_name: str) -> str:
    """Return the costs file's name stem of a design point measured on a device: '<point_id>-<8 hex of the device
    name>' (one file per point and device; the point id already holds the resources and threads)."""
    return f"{point}-{hashlib.sha1(device_name.encode()).hexdigest()[:8]}"


def write_cost_row(store: str, sweep: str, row: dict) -> str:
    """Write one costs row (atomically, replacing an earlier one of the same point and device); return its path."""
    fs, _ = filesystem(store)
    path = store_path(store, "costs", sweep, cost_key(row["point_id"], row["device_name"]))
    _write_atomic(fs, to_table([{"schema_version": SCHEMA_VERSION, **row}], COSTS_SCHEMA), path)
    return path


def read_cost_rows(store: str, sweep: str) -> list[dict]:
    """Return the sweep's costs rows (dicts; [] when the pass has not run); a file that does not read is skipped, so
    its point is measured again."""
    fs, _ = filesystem(store)
    rows = []
    for path in _list_partition(fs, store_path(store, "costs", sweep)).values():
        try:
            rows += pq.read_table(path, filesystem=fs, schema=COSTS_SCHEMA).to_pylist()
        except (OSError, pa.ArrowException):
            continue
    return rows
