"""Checks run before any trial: the data sets exist and are readable, the store is writable, the Ray address answers.

Each check raises `PreflightError` with one line naming the thing, the value and the fix; `run_sweep.py` prints it
and exits with code 2. Nothing here imports torch or Ray at module level, so the driver pays for neither before a
check fails. On a Ray cluster the data-set check runs on every node (`check_nodes`), because the path is the
workers', not the driver's.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from harness.claims import CLAIM_STALE_S
from harness.errors import DatasetMissingError
from spaces.datasets import DATASETS

ADDRESS_TIMEOUT_S = 10.0

# Files under `root` that torchvision's loaders read, per data set (the official train and test parts).
_TORCHVISION_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]),
    "cifar100": ("cifar-100-python", ["train", "test"]),
    "svhn": ("", ["train_32x32.mat", "test_32x32.mat"]),
}
_FOLDER_PARTS = ("train", "val")


class PreflightError(Exception):
    """A pre-flight check failed; the message is one line: the thing, the value, the fix."""


def expected_path(name: str, root: str) -> str:
    """Return the file or folder under `root` whose absence means the data set `name` is missing."""
    if name in _TORCHVISION_FILES:
        sub, files = _TORCHVISION_FILES[name]
        return os.path.join(root, sub) if sub else os.path.join(root, files[0])
    return os.path.join(root, "train")


def _missing(name: str, path: str, why: str = "") -> DatasetMissingError:
    detail = f" ({why})" if why else ""
    return DatasetMissingError(
        f"{name} not found at {path}{detail}. To get it: {DATASETS[name].how_to_get}; "
        "or set dataset.root to the folder that holds it."
    )


def check_dataset(dataset: dict) -> None:
    """Raise DatasetMissingError (one line: the path and how to get the data) unless the config's data set can be read.

    Checks what the loaders in `harness.data` read, without loading: the torchvision files of CIFAR-10/100 and SVHN,
    the `train` and `val` folders of an ImageFolder set. With `download = true`, a missing set only needs a root that
    can be written. digits is bundled with scikit-learn.
    """
    name = dataset["name"]
    if name == "digits" or name not in DATASETS:
        return
    root = os.path.abspath(os.path.expanduser(dataset.get("root") or ""))
    if not dataset.get("root"):
        raise DatasetMissingError(f"{name} needs dataset.root (a local folder); to get it: {DATASETS[name].how_to_get}")
    if name in _TORCHVISION_FILES:
        sub, files = _TORCHVISION_FILES[name]
        paths = [os.path.join(root, sub, f) for f in files]
    else:
        paths = [os.path.join(root, part) for part in _FOLDER_PARTS]
    absent = [p for p in paths if not os.path.exists(p)]
    if absent and name in _TORCHVISION_FILES and _TORCHVISION_FILES[name][0]:
        folder = os.path.join(root, _TORCHVISION_FILES[name][0])
        absent = [folder] if not os.path.isdir(folder) else absent  # name the folder when it is the thing missing
    if absent and dataset.get("download") and name in _TORCHVISION_FILES:
        parent = root
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK):
            raise _missing(name, absent[0], f"and {parent} is not writable, so it cannot be downloaded there")
        return
    if absent:
        raise _missing(name, absent[0])
    for p in paths:
        if not os.access(p, os.R_OK | (os.X_OK if os.path.isdir(p) else 0)):
            raise _missing(name, p, "not readable by this user")
        if os.path.isdir(p) and not os.listdir(p):
            raise _missing(name, p, "empty folder")


def check_datasets(configs: list[dict], where: str = "") -> None:
    """Raise PreflightError for the first trial config whose data set cannot be read (each distinct set once)."""
    seen = set()
    for config in configs:
        dataset = config.get("dataset") or {}
        key = (dataset.get("name"), dataset.get("root"), bool(dataset.get("download")))
        if key in seen:
            continue
        seen.add(key)
        try:
            check_dataset(dataset)
        except DatasetMissingError as err:
            raise PreflightError(f"data set error{where}: {err}") from None


def _node_check(configs: list[dict], store: str | None) -> str | None:
    """Run on one node: return the first problem (data sets, then the store) as one line, or None."""
    try:
        check_datasets(configs, where=f" on node {socket.gethostname()}")
        if store is not None:
            from harness.store import check_store_writable

            check_store_writable(store)
    except Exception as err:  # the message travels back to the driver as text
        return str(err)
    return None


def check_nodes(configs: list[dict], store: str | None = None, timeout_s: float = 120.0) -> None:
    """Run `check_datasets` (and the store probe when `store` is given) on every alive Ray node, one small task each
    (no CPU reserved, pinned to the node); raise PreflightError with the first problem found."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # Only the data sets: the rest of each config does not travel.
    small = [{"dataset": c.get("dataset") or {}} for c in configs]
    task = ray.remote(num_cpus=0)(_node_check)
    nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
    pinned = [NodeAffinitySchedulingStrategy(node, soft=False) for node in nodes]
    refs = [task.options(scheduling_strategy=where).remote(small, store) for where in pinned]
    for problem in ray.get(refs, timeout=timeout_s):
        if problem:
            raise PreflightError(problem if problem.startswith(("data set error", "store error")) else
                                 f"pre-flight check failed on a node: {problem}")  # fmt: skip


def _host_port(address: str) -> tuple[str, int] | None:
    """Return (host, port) of a Ray address ("host:port", "ray://host:port"), or None for "auto"/"local"."""
    if address in ("auto", "local") or "://" in address and not address.startswith(("ray://", "http://", "https://")):
        return None
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if not parts.hostname:
        return None
    default = 10001 if address.startswith("ray://") else 6379
    try:
        return parts.hostname, parts.port or default
    except ValueError:
        raise PreflightError(
            f"address error: {address!r} has no valid port; use host:port, e.g. 10.0.0.5:6379"
        ) from None


def check_address(address: str, source: str = "--address", timeout_s: float = ADDRESS_TIMEOUT_S) -> None:
    """Raise PreflightError unless something accepts a TCP connection at the Ray address within `timeout_s`, and,
    for a `ray://` address, unless the Ray Client package (grpcio) is installed."""
    what = f"--address {address}" if source == "--address" else f"{source}={address}"
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (what `ray[client]` adds)
        except ImportError:
            raise PreflightError(
                f"address error: {what} needs the Ray Client (pip install 'ray[client]'); or give the "
                "cluster's GCS address host:6379, or submit with `ray job submit -- python run_sweep.py ...`"
            ) from None
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as err:
        why = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err)).lower()
        raise PreflightError(
            f"address error: nothing answers at {what} ({why} within {timeout_s:g} s); start the cluster "
            "there (`ray start --head`), fix the address, or leave out --address for an embedded local Ray"
        ) from None


def _ray_running() -> bool:
    ray = sys.modules.get("ray")  # not imported here: a failed check must not pay for importing Ray
    return bool(ray is not None and ray.is_initialized())


def preflight_local(configs: list[dict], store: str, address: str | None) -> None:
    """Run the checks that need no Ray, before it starts: the Ray address answers (when one is given), the data sets
    of `configs` can be read (embedded Ray only; on a cluster the path is the workers', see `check_nodes`), the store
    is writable. Raise PreflightError with one line."""
    given = address or os.environ.get("RAY_ADDRESS") or None
    if given and not _ray_running():
        check_address(given, source="--address" if address else "RAY_ADDRESS")
    if not given and not _ray_running():
        check_datasets(configs)
    from harness.store import check_store_writable

    try:
        check_store_writable(store)
    except PermissionError as err:
        raise PreflightError(str(err)) from None


def scan_store(store: str, sweep: str):
    """Return `harness.store.scan_sweep(store, sweep)`; a store that cannot be listed raises a one-line PreflightError
    (an unreachable server must not pass for an empty store)."""
    from harness.store import StoreListingError, scan_sweep

    try:
        return scan_sweep(store, sweep)
    except StoreListingError as err:
        raise PreflightError(f"{err}; check the store URI, its endpoint and credentials") from None


@dataclass
class SweepPlan:
    """What a sweep will run, decided once before Ray starts: `configs` (one per trial id), the store's `scan`, the
    ids already `done` in it, the `pending` configs, whose pre-flight checks passed, the trials another run holds a
    live claim on (`claimed`, skipped) and those whose claims are `stale` (taken over), see `harness.claims`."""

    configs: list[dict]
    scan: object  # harness.store.SweepScan
    done: set[str]
    pending: list[dict]
    claimed: dict = field(default_factory=dict)  # trial id -> harness.claims.Claim
    stale: dict = field(default_factory=dict)
    claim_stale_s: float = CLAIM_STALE_S
    statuses: tuple = ()  # the statuses that count as done (error too, unless --rerun-errors)


def plan_sweep(configs: list[dict], store: str, sweep: str, address: str | None, rerun_errors: bool,
               claim_stale_s: float = CLAIM_STALE_S) -> SweepPlan:  # fmt: skip
    """Return the SweepPlan of `configs` (duplicates of a trial id dropped): the store scanned once, trials complete
    in it skipped (error rows too, unless `rerun_errors`), trials with another run's live claim (no heartbeat for
    less than `claim_stale_s` seconds) skipped, and `preflight_local` run on the rest; raise PreflightError (one line)
    when a check fails."""
    from harness.claims import Claims
    from harness.store import COMPLETE_STATUSES

    unique: dict[str, dict] = {}
    for c in configs:
        unique.setdefault(c["trial_id"], c)  # the first config of each trial id, in order
    configs = list(unique.values())
    statuses = tuple(s for s in COMPLETE_STATUSES if not (rerun_errors and s == "error"))
    scan = scan_store(store, sweep)
    done = scan.done(statuses)
    pending = [c for c in configs if c["trial_id"] not in done]
    claims = Claims(store, sweep, claim_stale_s)
    claimed, stale = {}, {}
    if pending and claims.supported:
        try:
            if claims.kind == "s3":
                claims.s3_client()  # boto3 is there: the workers claim with a conditional put
            claimed, stale = claims.others(c["trial_id"] for c in pending)
        except (OSError, RuntimeError) as err:
            raise PreflightError(f"store error: cannot read the claims in {claims.folder}: "
                                 f"{str(err).splitlines()[0]}") from None  # fmt: skip
        pending = [c for c in pending if c["trial_id"] not in claimed]
    if pending:
        preflight_local(pending, store, address)
    return SweepPlan(configs, scan, done, pending, claimed, stale, claim_stale_s, statuses)
