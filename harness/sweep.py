"""The sweep driver: trial configs -> Ray Tune trials -> rows in the Parquet results store (DESIGN sections 4, 7, 8).

`run_sweep(spec)` turns `spaces.spec.trial_configs(spec)` into one Tune trial each. The trainable calls
`harness.trial.run_trial` with Tune's `report` and a local working folder, and at the end writes the trial's rows to the
store from the worker (so on a cluster the store must be a shared filesystem or an object-store URI).

Checkpoints are Ray Tune's: after each epoch the trial's state is reported with `tune.report(..., checkpoint=...)`, and
Ray persists it to the run's storage, `<store>/_tune/<run>/<trial_id>/checkpoint_<n>/` (local, NFS, S3 alike, only the
latest kept). A retried trial gets it back from `tune.get_checkpoint()`; a trial of a later run (a killed driver, an
error row rerun) from the latest checkpoint an earlier run of the sweep left. A finished trial's checkpoints are
deleted.

Reruns are cheap and safe: trials whose files are all in the store and read are skipped (one listing per table); a
file that does not read is set aside and its trial runs again. Drivers sharing a store train each trial once: a worker
claims its trial in the store before training it (`harness.claims`), and a trial another run holds a live claim on is
skipped and said so; rows record the `run_id` that trained them. A trial error that will recur
(`harness.errors.is_deterministic`) is recorded at once with status "error"; a transient one is retried `max_failures`
times first. An error row never replaces epoch or sub-network rows. Before any trial, `harness.preflight` checks the
data sets, the store and the address (one line, `PreflightError`). Ray's own output goes to a log file
(`ray_log_path`).

Ray: with no address (and no RAY_ADDRESS) an embedded local Ray sized to the machine is started and stopped; an address
(or RAY_ADDRESS, which `ray job submit` sets for its entrypoint) connects to an existing cluster; a Ray already
initialised in this process is used as it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.experiment import Trial

from harness.claims import CLAIM_STALE_S, Claims, new_run_id, skipped_lines, supported_or_warning
from harness.errors import InjectedTransientError, is_deterministic, one_line
from harness.preflight import PreflightError, SweepPlan, check_nodes, plan_sweep, scan_store
from harness.store import (
    SweepScan,
    build_subnet_rows,
    display_name,
    filesystem,
    finished_status,
    is_uri,
    rows_from_result,
    set_aside,
    trial_work_dir,
    write_error_row,
    write_trial,
)
from harness.terminal import ray_output_to
from spaces.spec import trial_workers

DEFAULT_MAX_FAILURES = 2
# A data set whose first this-many trials fail with the same deterministic error, none succeeding, is stopped.
DETERMINISTIC_STOP_AFTER = 2
# Test-only trial config key: a folder; the trial's first attempt leaves a marker there and raises a transient error.
TEST_FAIL_FIRST_ATTEMPT = "test_fail_first_attempt"


def tune_root(store: str) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path) of Tune's storage for a store: `<store>/_tune`, beside the tables.

    Each run is a folder there (`<sweep>-<YYYYmmdd-HHMMSS>`), each trial a folder `<trial_id>` in it, and Ray keeps
    the trial's latest checkpoint in `checkpoint_<n>/` (local, NFS or object storage alike).
    """
    fs, root = filesystem(store)
    return fs, f"{root}/_tune"


def _run_folders(fs: pafs.FileSystem, root: str, sweep: str, current: str | None) -> list[str]:
    """Return the folders of the sweep's earlier runs in Tune's storage, newest first."""
    pattern = re.compile(rf"{re.escape(sweep)}-\d{{8}}-\d{{6}}(-[0-9a-f]{{6}})?")  # harness.claims.new_run_id
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    runs = [i for i in infos if i.type == pafs.FileType.Directory and pattern.fullmatch(i.base_name)]
    return [i.path for i in sorted(runs, key=lambda i: i.base_name, reverse=True) if i.base_name != current]


def _checkpoints(fs: pafs.FileSystem, trial_dir: str) -> list[str]:
    """Return the checkpoint folders Ray persisted in one trial folder, oldest first."""
    infos = fs.get_file_info(pafs.FileSelector(trial_dir, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_"))


def earlier_checkpoint(store: str, sweep: str, trial_id: str, current_run: str | None = None) -> str | None:
    """Return the path (in the store's filesystem) of the trial's latest checkpoint left by an earlier run of the sweep
    (a driver killed mid-trial, a trial recorded as an error), or None.

    Within one run Ray hands a retried trial its checkpoint itself (`tune.get_checkpoint`); a new run starts new Tune
    trials, so this finds what the earlier runs persisted.
    """
    return next(earlier_checkpoints(store, sweep, trial_id, current_run), None)


def earlier_checkpoints(store: str, sweep: str, trial_id: str, current_run: str | None = None):
    """Yield the paths of every checkpoint of the trial that earlier runs of the sweep left, newest first."""
    fs, root = tune_root(store)
    for run in _run_folders(fs, root, sweep, current_run):
        yield from reversed(_checkpoints(fs, f"{run}/{trial_id}"))


def remove_checkpoints(store: str, sweep: str, trial_id: str) -> int:
    """Delete every checkpoint folder of the trial in every run of the sweep (the rows are the durable result);
    return how many were deleted."""
    fs, root = tune_root(store)
    gone = 0
    for run in _run_folders(fs, root, sweep, None):
        for path in _checkpoints(fs, f"{run}/{trial_id}"):
            with contextlib.suppress(OSError, FileNotFoundError):
                fs.delete_dir(path)
                gone += 1
    return gone


def is_parallel(config: dict) -> bool:
    """Return True for a trial that runs on several Ray Train workers (`resources.workers` >= 2, `harness.parallel`)."""
    return trial_workers(config) > 1


def trial_resources(config: dict) -> dict:
    """Return the Ray resources one trial asks for: {"CPU": cpus, "GPU": gpus}.

    GPUs are whole (a fraction is rounded up) unless `resources.fractional_gpu` is true. Packing divides the device:
    `trials_per_gpu` = N asks for 1/N of the GPU, `trials_per_cpu_group` = N for cpus / N CPUs. A parallel trial's
    are its workers' together (N x `cpus` CPUs, N GPUs on GPUs), which its Ray Train run reserves, not the Tune trial.
    """
    res = config.get("resources") or {}
    if is_parallel(config):
        n = int(res["workers"])
        return {"CPU": n * float(res.get("cpus", 1) or 0), "GPU": float(n) if float(res.get("gpus", 0) or 0) else 0.0}
    cpus = float(res.get("cpus", 1) or 0) / int(res.get("trials_per_cpu_group", 1) or 1)
    gpus = float(res.get("gpus", 0) or 0)
    if gpus and int(res.get("trials_per_gpu", 1) or 1) > 1:
        return {"CPU": cpus, "GPU": gpus / int(res["trials_per_gpu"])}
    if gpus and not res.get("fractional_gpu", False):
        gpus = float(math.ceil(gpus))
    return {"CPU": cpus, "GPU": gpus}


def measurement_resources(config: dict) -> dict:
    """Return the Ray resources the cost pass asks for on a cluster: the trial's whole device, unpacked ({"CPU": cpus,
    "GPU": gpus rounded up to whole GPUs}), so that it measures alone."""
    res = config.get("resources") or {}
    gpus = float(res.get("gpus", 0) or 0)
    return {"CPU": float(res.get("cpus", 1) or 0), "GPU": float(math.ceil(gpus)) if gpus else 0.0}


# What the Tune trial of a parallel trial holds: its Ray Train workers reserve their own placement group, and a Tune
# trial that held CPUs while its workers wait for theirs would never start on a small machine. Tune needs a non-empty
# bundle; one byte of memory is the least a bundle can ask.
PARALLEL_TUNE_TRIAL = {"memory": 1}


def _placement(tune_config: dict) -> tune.PlacementGroupFactory:
    if is_parallel(tune_config["trial"]):
        return tune.PlacementGroupFactory([PARALLEL_TUNE_TRIAL])
    return tune.PlacementGroupFactory([trial_resources(tune_config["trial"])])


def _metrics(record: dict) -> dict:
    """Return the scalar part of an EPOCH/FINAL record for Tune (Tune sets its own `trial_id`, so ours is left out)."""
    return {k: v for k, v in record.items()
            if k != "trial_id" and (isinstance(v, int | float | str | bool))}  # fmt: skip


def dataset_key(config: dict) -> str:
    """Return the text that identifies a trial's data set (its whole `dataset` section) for the stop rule."""
    return json.dumps(config.get("dataset") or {}, sort_keys=True, default=str)


def _dataset_name(config: dict) -> str:
    dataset = config.get("dataset") or {}
    return dataset.get("name", "?") + (f" at {dataset['root']}" if dataset.get("root") else "")


class DeterministicGuard:
    """A Ray actor shared by the sweep's trials: it stops a data set whose trials all fail with one deterministic error.

    A data set is stopped once `stop_after` of its trials failed with the same error text and none of it succeeded;
    a trial of a stopped data set is not run.
    """

    def __init__(self, stop_after: int = DETERMINISTIC_STOP_AFTER):
        self.stop_after, self.ok, self.fails, self.stopped = stop_after, set(), {}, {}

    def succeeded(self, key: str) -> None:
        self.ok.add(key)

    def failed(self, key: str, text: str) -> bool:
        """Count a deterministic failure; return True when it stops the data set (only once)."""
        counts = self.fails.setdefault(key, {})
        counts[text] = counts.get(text, 0) + 1
        if key in self.ok or key in self.stopped or counts[text] < self.stop_after:
            return False
        self.stopped[key] = text
        return True

    def stopped_by(self, key: str) -> str | None:
        return self.stopped.get(key)


def _guard(name: str | None):
    if not name:
        return None
    try:
        return ray.get_actor(name)
    except ValueError:  # no such actor: the trainable runs outside run_sweep
        return None


def device_share(config: dict) -> tuple[bool, str | None]:
    """Return (shared, what was shared) for a trial running under Ray: a CPU trial shares its node when it holds fewer
    CPUs than the node has; a GPU trial when its GPU is fractional. The text names the share, e.g. "1 of 2 CPUs".
    """
    need = trial_resources(config)
    try:
        node_id = ray.get_runtime_context().get_node_id()
        have = next(n["Resources"] for n in ray.nodes() if n.get("NodeID") == node_id)
    except Exception:  # outside Ray, or the GCS did not answer: nothing known
        return bool(need["GPU"] and need["GPU"] < 1), None
    if need["GPU"]:
        shared = need["GPU"] < 1
        return shared, f"{need['GPU']:g} of a GPU" if shared else None
    cpus = have.get("CPU", 0)
    if need["CPU"] and need["CPU"] < cpus:
        return True, f"{need['CPU']:g} of {cpus:g} CPUs (up to {int(cpus // need['CPU'])} trials at once on the node)"
    return False, None


def _record_error(tune_config: dict, config: dict, text: str, **extra) -> None:
    """Write the trial's error row and report it to Tune as its FINAL record; the trial ends normally (no retry)."""
    row, _ = rows_from_result(config, None, error=text, run_id=tune_config.get("run"))
    write_error_row(tune_config["store"], tune_config["sweep"], row)
    tune.report({"kind": "final", "status": "error", "error": text, "deterministic": True, **extra})


def _train(tune_config: dict) -> None:
    """The Tune function trainable: claim the trial in the store (`harness.claims`), run it, forward its records to
    Tune, write its rows to the store, release the claim.

    A trial another run holds a live claim on, or finished since this run was planned, is not run (FINAL status
    "elsewhere"). A deterministic error (`harness.errors.is_deterministic`) is recorded at once as an error row and
    ends the trial normally, so Tune does not retry it; any other error is raised for Tune to retry.
    """
    config, store, sweep = tune_config["trial"], tune_config["store"], tune_config["sweep"]
    claims = Claims(store, sweep, tune_config.get("claim_stale_s", CLAIM_STALE_S))
    if not claims.supported or not tune_config.get("run"):
        _train_claimed(tune_config)
        return
    with claims.held(config["trial_id"], tune_config["run"], tune_config.get("driver")) as outcome:
        if outcome.mine is None:
            holder = outcome.holder
            why = f"being trained by {holder.describe()} since {holder.claimed_at:%H:%M} UTC" if holder else ""
            tune.report({"kind": "final", "status": "elsewhere", "error": why or "claimed by another run"})
            return
        if outcome.taken_over is not None:
            print(f"[{sweep}] trial {config['trial_id']}: the claim of {outcome.taken_over.describe()} had no "
                  f"heartbeat for {outcome.taken_over.age_s():.0f} s (limit {claims.stale_s:g} s); taken over",
                  flush=True)  # fmt: skip
        status = finished_status(store, sweep, config["trial_id"], tuple(tune_config.get("done_statuses", ())))
        if status is not None:  # another run finished it after this one was planned
            tune.report({"kind": "final", "status": "elsewhere", "error": f"finished by another run ({status})"})
            return
        _train_claimed(tune_config)


def _train_claimed(tune_config: dict) -> None:
    """Run the trial whose claim this run holds (see `_train`)."""
    from harness.loop import CHECKPOINT_FILE  # imported in the worker, where the trial runs
    from harness.trial import run_trial

    config, store, sweep = tune_config["trial"], tune_config["store"], tune_config["sweep"]
    guard, key = _guard(tune_config.get("guard")), dataset_key(config)
    stopped = ray.get(guard.stopped_by.remote(key)) if guard else None
    if stopped:
        tune.report({"kind": "final", "status": "not_run", "error": f"not run: its data set is stopped ({stopped})"})
        return
    if is_parallel(config):
        _train_parallel(tune_config, guard, key)
        return
    marker_dir = config.get(TEST_FAIL_FIRST_ATTEMPT)  # test-only: a transient failure on the first attempt
    if marker_dir and not os.path.exists(os.path.join(marker_dir, config["trial_id"])):
        open(os.path.join(marker_dir, config["trial_id"]), "w").close()
        raise InjectedTransientError("injected failure on the first attempt (test only)")

    # Ray keeps the checkpoints in the run's storage; the trial reads and writes a local working folder.
    with trial_work_dir(store, config["trial_id"]) as work:
        _restore_checkpoint(store, sweep, config["trial_id"], tune_config.get("run"), work)

        def report(record: dict) -> None:
            # run_trial saves the epoch's checkpoint before it reports the epoch, so the folder holds that epoch.
            saved = record.get("kind") == "epoch" and os.path.exists(os.path.join(work, CHECKPOINT_FILE))
            tune.report(_metrics(record), checkpoint=tune.Checkpoint.from_directory(work) if saved else None)

        try:
            result = run_trial(config, report=report, checkpoint_dir=work)
        except Exception as err:
            if not is_deterministic(err):
                raise
            _record_deterministic_error(tune_config, config, err, guard, key)
            return
        if guard:
            guard.succeeded.remote(key)
        result["final"]["device_shared"], result["final"]["device_share"] = device_share(config)
        trial_row, epoch_rows = rows_from_result(config, result, run_id=tune_config.get("run"))
        write_trial(store, sweep, trial_row, epoch_rows, build_subnet_rows(config, result))
        if not tune_config.get("keep_checkpoints", False):
            # The rows are the durable result; the checkpoints only served to resume.
            remove_checkpoints(store, sweep, config["trial_id"])


def _record_deterministic_error(tune_config: dict, config: dict, err: BaseException, guard, key: str) -> None:
    """Record a trial's deterministic error (one line) as its error row, after telling the data set's guard, which
    says whether the error stops the data set's other trials."""
    text = one_line(err)
    stops = bool(guard and ray.get(guard.failed.remote(key, text)))
    _record_error(tune_config, config, text, stops_dataset=stops)


def _train_parallel(tune_config: dict, guard, key: str) -> None:
    """Run a parallel trial (`harness.parallel_trial.fit_parallel`) whose claim this Tune trial holds: its Ray Train run
    (restored by the trial's id) reports each record to Tune and its rank 0 writes the rows; then the run's
    checkpoints are deleted unless kept. A worker's deterministic error (`harness.errors.is_deterministic`) is
    recorded at once; any other error is raised for Tune to retry (the retry restores the latest checkpoint)."""
    from harness.parallel_trial import fit_parallel, train_storage

    config, store, sweep = tune_config["trial"], tune_config["store"], tune_config["sweep"]
    fs, path = train_storage(store)
    try:
        fit_parallel(config, store, sweep, tune_config.get("run"), path, fs if is_uri(store) else None)
    except Exception as err:
        causes = list((getattr(err, "worker_failures", None) or {}).values())
        cause = next((c for c in causes if is_deterministic(c)), None)
        if cause is None:
            raise
        _record_deterministic_error(tune_config, config, cause, guard, key)
        return
    if guard:
        guard.succeeded.remote(key)
    if not tune_config.get("keep_checkpoints", False):
        with contextlib.suppress(OSError, FileNotFoundError):
            fs.delete_dir(f"{path}/{config['trial_id']}")


def _restore_checkpoint(store: str, sweep: str, trial_id: str, run: str | None, work: str) -> str | None:
    """Copy the trial's checkpoint into the local folder `work`: the one Ray hands a retried trial, else the latest
    an earlier run of the sweep left; return where it came from (None: the trial starts from scratch).

    A checkpoint file that does not load as data (`harness.loop.checkpoint_problem`: truncated, corrupt, or holding
    objects that unpickling would run) is renamed to a dot-file in the store itself, where every later attempt would
    otherwise fetch it again, with a one-line warning saying where it went; the next older checkpoint is tried."""
    from harness.loop import CHECKPOINT_FILE, checkpoint_problem

    fs = filesystem(store)[0]
    given = tune.get_checkpoint()
    candidates = [given] if given is not None else []
    candidates += (tune.Checkpoint(path, filesystem=fs) for path in earlier_checkpoints(store, sweep, trial_id, run))
    local = os.path.join(work, CHECKPOINT_FILE)
    for checkpoint in candidates:
        checkpoint.to_directory(work)
        if not os.path.exists(local):  # its file was set aside before
            continue
        problem = checkpoint_problem(local)
        if problem is None:
            return checkpoint.path
        os.remove(local)
        source = f"{checkpoint.path}/{CHECKPOINT_FILE}"
        try:
            where = f"set aside there as {set_aside(store, source)}"
        except (OSError, FileNotFoundError) as err:  # another attempt set it aside first, or the store refused
            where = f"could not be set aside ({str(err).splitlines()[0]})"
        warnings.warn(f"checkpoint {source} in the store {display_name(store)} does not load ({problem}); {where}; "
                      "the trial resumes from an older checkpoint if one loads, else from epoch 1", stacklevel=2)
    return None


def _describe(config: dict) -> str:
    d = config.get("design") or {}
    return (f"{d.get('design_class')} k={d.get('members')} {d.get('family')}-{d.get('depth')} w={d.get('width')} "
            f"seed={config.get('seed')}")  # fmt: skip


def _error_text(trial) -> str:
    """Return the text of a trial's last error: the exception line first, then the traceback's tail."""
    text = ""
    with contextlib.suppress(Exception):
        err = trial.get_error()
        text = str(err) if err is not None else ""
    if not text and getattr(trial, "error_file", None):
        with contextlib.suppress(OSError), open(trial.error_file) as f:
            text = f.read()
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # Ray colours its task names
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "trial failed (no error text was recorded)"
    last = lines[-1].strip()
    return last if len(text) <= len(last) + 1 else f"{last}\n{text[-4000:]}"


def failure_reason(text: str) -> str:
    """Return why a trial's attempt failed, in a few words: a lost node (with its address when Ray names it), a dead
    worker process, out of memory, or else the error's first line."""
    low = text.lower()
    ip = re.search(r"(?:ip[:= ]+|node )(\d+\.\d+\.\d+\.\d+)", text, re.IGNORECASE)
    where = f" {ip.group(1)}" if ip else ""
    if "nodediederror" in low or "node has died" in low or "node died" in low or "node was marked as dead" in low:
        return f"its node{where} was lost"
    if "out of memory" in low or "outofmemoryerror" in low:
        return "its worker ran out of memory" + (f" on{where}" if ip else "")
    if "actordiederror" in low or "actor died" in low or "worker died" in low or "workercrashederror" in low:
        return "its worker process" + (f" on{where}" if ip else "") + " died (killed, or its node went away)"
    return f"failed: {text.splitlines()[0]}"


def _fmt_duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class SweepSummary:
    """What a sweep did: counts of trials by outcome, where the results are, and the best accuracy seen."""

    sweep: str
    store: str
    total: int
    skipped: int
    statuses: dict = field(default_factory=dict)  # status -> trials of this sweep, after the run
    wall_time_s: float = 0.0
    best_acc: float | None = None
    missing: list = field(default_factory=list)  # trial ids with no row in the store after the run
    log_path: str | None = None  # where Ray's output went (None: to the terminal, or nothing ran)
    # trial id -> harness.claims.Claim: trials with no row yet that another run is training (a live claim)
    elsewhere: dict = field(default_factory=dict)
    claim_stale_s: float = CLAIM_STALE_S
    seeds_text: str = ""  # adaptive seeds: seeds spent against max everywhere

    @property
    def ok(self) -> bool:
        """True when every trial of the sweep has a row or is being trained by another run, and none is an error."""
        return not self.missing and not self.statuses.get("error")


class SweepProgress(tune.Callback):
    """Driver-side Tune callback: plain one-line progress, error rows for trials that failed for good.

    Prints an event line when a trial ends and a status line at most every `every_s` seconds, e.g.
    `[digits 1m05s] 9/16 done (ok 8, diverged 0, error 1) | running 2 | pending 5 | best acc 0.962 (dct k=2 ...)`.
    Plain lines (no terminal control codes) so that a Ray Job's log reads the same as a terminal.
    """

    def __init__(self, store: str, sweep: str, total: int, skipped: int, every_s: float = 5.0,
                 enabled: bool = True, stream=None, run_id: str | None = None):  # fmt: skip
        self.store, self.sweep, self.total, self.skipped = store, sweep, total, skipped
        self.every_s, self.enabled, self.stream, self.run_id = every_s, enabled, stream, run_id
        self.counts = {"ok": 0, "diverged": 0, "error": 0, "not_run": 0, "elsewhere": 0}
        self.best_acc, self.best_what = None, ""
        self.start = time.monotonic()
        self._last_print = 0.0
        self._trials = []
        self.extra_status = None  # adaptive seeds: a callable returning the line's part on seeds spent (seed_search)

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment state; an open stream cannot be, and is not needed there.
        return {**self.__dict__, "stream": None}

    def _print(self, line: str) -> None:
        if self.enabled:
            print(line, file=self.stream or sys.stdout, flush=True)

    def _status_line(self) -> str:
        running = sum(t.status == Trial.RUNNING for t in self._trials)
        pending = sum(t.status == Trial.PENDING for t in self._trials)
        done = self.skipped + sum(self.counts.values())
        best = f"{self.best_acc:.4f} ({self.best_what})" if self.best_acc is not None else "-"
        not_run, elsewhere = self.counts["not_run"], self.counts["elsewhere"]
        return (f"[{self.sweep} {_fmt_duration(time.monotonic() - self.start)}] {done}/{self.total} done "
                f"(ok {self.counts['ok']}, diverged {self.counts['diverged']}, error {self.counts['error']}"
                f"{f', not run {not_run}' if not_run else ''}"
                f"{f', another run {elsewhere}' if elsewhere else ''}"
                f"{f', skipped {self.skipped}' if self.skipped else ''}) | running {running} | pending {pending} "
                f"| best acc {best}" + (f" | {self.extra_status()}" if self.extra_status else ""))  # fmt: skip

    def _see_acc(self, acc, config: dict) -> None:
        if isinstance(acc, int | float) and math.isfinite(acc) and (self.best_acc is None or acc > self.best_acc):
            self.best_acc, self.best_what = float(acc), _describe(config)

    # Tune callback hooks (signatures as in ray.tune.Callback)
    def on_step_end(self, iteration, trials, **info):
        self._trials = trials
        now = time.monotonic()
        if now - self._last_print >= self.every_s:
            self._last_print = now
            self._print(self._status_line())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._see_acc(result.get("test_acc", result.get("best_acc")), trial.config["trial"])

    def on_trial_complete(self, iteration, trials, trial, **info):
        config, last = trial.config["trial"], trial.last_result or {}
        status = last.get("status", "ok") if last.get("kind") == "final" else "ok"
        self.counts[status] = self.counts.get(status, 0) + 1
        acc, head = last.get("final_acc"), f"[{self.sweep}] trial {config['trial_id']} {_describe(config)}"
        if status == "not_run":
            self._print(f"{head}: not run (its data set is stopped)")
        elif status == "elsewhere":
            self._print(f"{head}: skipped, {last.get('error')}")
        elif status == "error":
            self._print(f"{head}: error (not retried, it would recur): {last.get('error')}")
        else:
            self._print(f"{head}: {status}" + (f", final acc {acc:.4f}" if isinstance(acc, int | float) else ""))
        if last.get("stops_dataset"):
            self._print(f"[{self.sweep}] stopping data set {_dataset_name(config)}: {DETERMINISTIC_STOP_AFTER} of "
                        "its trials failed with the same error, none succeeded; its other trials are not run")

    def on_trial_recover(self, iteration, trials, trial, **info):
        config, last = trial.config["trial"], trial.last_result or {}
        epoch = last.get("epoch") if last.get("kind") == "epoch" else None
        resume = f"from its checkpoint of epoch {epoch}" if isinstance(epoch, int) else "from epoch 1"
        if is_parallel(config):  # its Train run relays the records to Tune later than it checkpoints them
            known = f"epoch {epoch} or later" if isinstance(epoch, int) else "if it saved one"
            resume = f"from its Ray Train run's latest checkpoint ({known})"
        why = failure_reason(_error_text(trial))
        self._print(f"[{self.sweep}] trial {config['trial_id']} {_describe(config)}: {why} (attempt "
                    f"{trial.num_failures}); it restarts {resume}, on whichever node has room")  # fmt: skip

    def on_trial_error(self, iteration, trials, trial, **info):
        config, last = trial.config["trial"], trial.last_result or {}
        text = _error_text(trial)
        row, _ = rows_from_result(config, None, error=text, run_id=self.run_id)
        if isinstance(last.get("epoch"), int):
            row["epochs_done"] = last["epoch"]
        try:
            write_error_row(self.store, self.sweep, row)  # the trial's epoch rows, if any were written, stay
        except Exception as err:  # a store problem must not stop the other trials
            self._print(f"[{self.sweep}] could not record the error of trial {config['trial_id']}: {err}")
        self.counts["error"] += 1
        self._print(f"[{self.sweep}] trial {config['trial_id']} {_describe(config)}: error after "
                    f"{trial.num_failures} attempt(s): {text.splitlines()[0]}")  # fmt: skip

    def on_experiment_end(self, trials, **info):
        self._trials = trials
        self._print(self._status_line())


def _init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to or start Ray; return True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as err:
            if "auth" in str(err).lower() or type(err).__name__ == "AuthenticationError":
                raise PreflightError(
                    f"address error: the Ray cluster at {address} refused the connection ({one_line(err)}); it uses "
                    "token authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token)"
                ) from None
            raise PreflightError(f"address error: could not connect to the Ray cluster at {address}: "
                                 f"{one_line(err)}") from None  # fmt: skip
    else:
        # "local" always starts a fresh embedded Ray, even if a `ray start` cluster runs on this machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    return True


def _check_feasible(configs: list[dict], embedded: bool, out=None) -> None:
    """Fail fast (embedded Ray) or warn (cluster, which may autoscale) when a trial asks for more than exists."""
    have = ray.cluster_resources()
    for config in configs:
        need = trial_resources(config)
        short = [f"{k} {v:g} (cluster has {have.get(k, 0):g})" for k, v in need.items() if v > have.get(k, 0)]
        if short:
            msg = f"trial {config['trial_id']} asks for {', '.join(short)}; it would never start"
            if embedded:
                raise PreflightError(f"resources error: {msg}; lower [resources] in the spec or use --address to "
                                     "reach a bigger cluster")  # fmt: skip
            print(f"warning: {msg} unless the cluster grows", file=out or sys.stderr, flush=True)
            return


def ray_log_path(store: str, run_name: str) -> str:
    """Return the file Ray's output goes to: `<store>/_tune/<run>.log`, or a local temp file for a URI store."""
    if is_uri(store):
        return os.path.join(tempfile.gettempdir(), "harness-logs", f"{run_name}.log")
    return os.path.join(store, "_tune", f"{run_name}.log")


def run_sweep(spec, store: str = "results", address: str | None = None, max_failures: int = DEFAULT_MAX_FAILURES,
              progress: bool = True, progress_every_s: float = 5.0, rerun_errors: bool = False,
              keep_checkpoints: bool = False, num_cpus: int | None = None, reuse_actors: bool = True,
              configs: list[dict] | None = None, verbose: bool = False,
              plan: SweepPlan | None = None, claim_stale_s: float = CLAIM_STALE_S,
              seeds_wanted=None) -> SweepSummary:  # fmt: skip
    """Run every trial of `spec` on Ray Tune into the results store; return a SweepSummary.

    `store`: local path (made absolute) or URI; must be shared by all nodes on a cluster. `address`: Ray cluster
    address (default RAY_ADDRESS, else an embedded local Ray with `num_cpus` CPUs, default all). `max_failures`:
    retries of a trial that failed with a transient error before it is recorded with status "error" (a deterministic
    error is recorded at once). `rerun_errors`: train trials recorded as errors again. `configs`: trial configs to run
    instead of `spaces.spec.trial_configs(spec)` (same shape). `verbose`: let Ray print to the terminal; by default
    its output goes to a log file (`ray_log_path`) that the footer names. `plan`: the `harness.preflight.plan_sweep`
    the caller already made for this store (the CLI makes it before importing Ray); without one it is made here.
    `claim_stale_s`: seconds without a heartbeat after which another run's claim on a trial is stale and taken over
    (`harness.claims`; a given `plan` carries its own).
    `seeds_wanted(store, sweep)`: with a spec whose seeds are an adaptive policy (`seed_policy`), returns the design
    points the next look extends (`analysis.est.seeds_wanted`'s rows); the run then adds seeds look by look
    (`harness.seed_search.AdaptiveSeeds`).

    Raises PreflightError (one line) before any trial starts and before anything is written to the store when a data
    set cannot be read, the store is not writable or the Ray address does not answer.
    """
    t0 = time.monotonic()
    if plan is not None:
        configs = plan.configs
    elif configs is None:
        from spaces.spec import trial_configs

        configs = trial_configs(spec)
    store = display_name(store)  # a URI as given (its query configures the filesystem), a local path made absolute
    sweep = getattr(spec, "name", None) or (configs[0]["sweep"] if configs else "sweep")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials see the driver's cwd; Tune passes this on

    if plan is None:
        plan = plan_sweep(configs, store, sweep, address, rerun_errors, claim_stale_s)
    configs, scan, done, pending = plan.configs, plan.scan, plan.done, plan.pending
    say = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    skipped = len(configs) - len(pending)  # in the store, or claimed by another run
    set_aside_unreadable(store, sweep, scan, {c["trial_id"] for c in configs}, say)
    trials = f"{len(configs)} trial{'' if len(configs) == 1 else 's'}"
    reruns = sum(c["trial_id"] in scan.status and c["trial_id"] not in done for c in configs)
    again = f" ({reruns} of them again: error rows with --rerun-errors, or files that do not read)" if reruns else ""
    say(f"[{sweep}] {trials}: {skipped - len(plan.claimed)} already in the store {store}, {len(pending)} to "
        f"run{again}")  # fmt: skip
    for line in skipped_lines(sweep, plan.claimed, plan.stale, plan.claim_stale_s):
        say(line)
    unclaimed = supported_or_warning(store) if pending else None
    if unclaimed:
        say(f"[{sweep}] {unclaimed}")

    best, log_path, run_name = None, None, None
    searcher = _adaptive(spec, store, sweep, configs, pending, seeds_wanted, say)
    if pending or (searcher is not None and searcher.queue):
        run_name = new_run_id(sweep)
        log_path = None if verbose else ray_log_path(store, run_name)
        try:
            best = _fit(pending, store, sweep, configs, skipped, address, run_name, log_path, max_failures, progress,
                        progress_every_s, keep_checkpoints, num_cpus, reuse_actors, verbose, plan,
                        searcher)  # fmt: skip
        except PreflightError:
            if log_path:  # nothing ran: leave no trace in the store
                with contextlib.suppress(OSError):
                    os.remove(log_path)
                    os.rmdir(os.path.dirname(log_path))
            raise
    elif not (address or os.environ.get("RAY_ADDRESS")):
        # Nothing to train, but a pass that did not finish (a killed driver) is completed here; a finished one measures
        # nothing (every point has its row).
        with open(os.devnull, "w") as devnull:
            _run_cost_pass(store, sweep, configs, True, sys.stdout if progress else devnull)

    added = searcher.added if searcher is not None else []
    summary = _summarize(store, sweep, configs + added, skipped, time.monotonic() - t0, best, plan.claim_stale_s,
                         run_name)  # fmt: skip
    summary.log_path = log_path
    if searcher is not None:
        summary.seeds_text = (f"seeds spent: {len(scan_store(store, sweep).status)} trials of {searcher.cap} with max "
                              f"seeds everywhere ({searcher.looks} look(s) after the first round)")  # fmt: skip
    if progress:
        print_footer(summary)
    return summary


def set_aside_unreadable(store: str, sweep: str, scan: SweepScan, ids: set[str], say) -> None:
    """Rename each file of the sweep that does not read to a dot-file (readers skip them; nothing is deleted) and say
    which trial runs again because of it."""
    for trial_id, problems in sorted(scan.broken.items()):
        for path, reason in problems:
            if reason == "missing":
                say(f"[{sweep}] trial {trial_id}: its epochs file {path} is missing; the trial runs again")
                continue
            new = set_aside(store, path)
            again = "the trial runs again" if trial_id in ids else "the trial is not in this spec"
            say(f"[{sweep}] trial {trial_id}: {path} does not read ({reason}); set aside as {new}; {again}")


def _adaptive(spec, store, sweep, configs, pending, seeds_wanted, say):
    """Return the AdaptiveSeeds searcher of a spec with an adaptive seed policy (None otherwise). With the first round
    already in the store (a rerun), its first look is made here, so a finished sweep starts no Ray."""
    policy = (getattr(spec, "data", None) or {}).get("seed_policy")
    if not policy or seeds_wanted is None:
        return None
    from harness.seed_search import AdaptiveSeeds, configs_for_look

    def next_look() -> list[dict]:
        have = set(scan_store(store, sweep).status)
        return configs_for_look(seeds_wanted(store, sweep), configs, have)

    def on_look(n: int, added: list[dict]) -> None:
        text = (f"[{sweep}] look {n}: {len(added)} trial(s) added to the design points whose cells on the EST's path "
                "are unresolved" if added else f"[{sweep}] look {n}: nothing on the EST's path is open (or it is at "
                f"max {policy['max']} seeds); done")  # fmt: skip
        if searcher.tracker is not None:  # the progress line's total counts the trials the looks add
            searcher.tracker.total += len(added)
        if searcher.stream is not None:  # during the Tune run: the terminal the progress lines go to
            print(text, file=searcher.stream, flush=True)
        else:
            say(text)

    cap = len(configs) // policy["min"] * policy["max"]
    searcher = AdaptiveSeeds(pending, next_look, cap, done_before=len(configs) - len(pending), on_look=on_look)
    searcher.stream = searcher.tracker = None
    if not pending:
        searcher.queue = next_look()
        searcher.added += searcher.queue
        searcher.looks = 1
        on_look(1, searcher.queue)
    searcher.done_before = len(scan_store(store, sweep).status)
    return searcher


def _fit(pending, store, sweep, configs, skipped, address, run_name, log_path, max_failures, progress,
         progress_every_s, keep_checkpoints, num_cpus, reuse_actors, verbose, plan, searcher=None):  # fmt: skip
    """Start or join Ray, check the nodes, run the Tune experiment; return the best accuracy seen (or None). On the way
    out the run's claims still in the store are released (a worker releases its own; these are what Ctrl-C left)."""
    with ray_output_to(log_path) as term:
        started = _init_ray(address, num_cpus)
        guard = None
        try:
            embedded = started and not (address or os.environ.get("RAY_ADDRESS"))
            first = pending or (searcher.queue if searcher is not None else [])
            if not embedded:
                check_nodes(first)  # the data paths are the workers'
            _check_feasible(first, embedded=embedded, out=term)
            guard_name = f"harness-guard-{sweep}-{uuid.uuid4().hex[:8]}"
            guard = ray.remote(num_cpus=0)(DeterministicGuard).options(name=guard_name).remote()
            # A look made before the run (a rerun whose first round is done) already added trials: count them, so
            # the line never reads more than 100%; the looks made during the run add theirs through `on_look`.
            total = len(configs) + (len(searcher.added) if searcher is not None else 0)
            tracker = SweepProgress(store, sweep, total, skipped, every_s=progress_every_s, enabled=progress,
                                    stream=term, run_id=run_name)  # fmt: skip
            storage_fs, storage_path = tune_root(store)
            fixed = {"store": store, "sweep": sweep, "keep_checkpoints": keep_checkpoints, "guard": guard_name,
                     "run": run_name, "driver": {"host": socket.gethostname(), "pid": os.getpid()},
                     "claim_stale_s": plan.claim_stale_s, "done_statuses": list(plan.statuses)}  # fmt: skip
            if searcher is not None:  # adaptive seeds: the searcher suggests every trial, round by round
                tracker.extra_status = searcher.progress
                searcher.stream, searcher.tracker = term, tracker
                space, search = fixed, {"search_alg": searcher, "num_samples": -1}
            else:
                space, search = {"trial": tune.grid_search(pending), **fixed}, {"num_samples": 1}
            tuner = tune.Tuner(
                tune.with_resources(_train, _placement),
                param_space=space,
                tune_config=tune.TuneConfig(
                    **search,
                    max_concurrent_trials=_parallel_concurrency(first),
                    reuse_actors=reuse_actors,
                    trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                    trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
                ),
                run_config=tune.RunConfig(
                    name=run_name,
                    # Tune's experiment state and the trials' checkpoints sit next to the results (shared on a
                    # cluster) but outside the tables; the filesystem carries a URI's query (endpoint, scheme).
                    storage_path=storage_path,
                    storage_filesystem=storage_fs if is_uri(store) else None,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # each epoch's replaces the one before
                    failure_config=tune.FailureConfig(max_failures=max_failures),
                    verbose=1 if verbose else 0,
                    callbacks=[tracker],
                ),
            )
            tuner.fit()
            if not all((c.get("measure") or {}).get("cost_pass", True) for c in configs):
                # The cost pass times every design point's latency in the same way; without it, every trial here.
                _run_latency_pass(store, sweep, configs, embedded, term)
            _run_cost_pass(store, sweep, configs, embedded, term)
            return tracker.best_acc
        finally:
            if guard is not None:
                with contextlib.suppress(Exception):
                    ray.kill(guard)
            if started:
                ray.shutdown()
            with contextlib.suppress(Exception):  # a claim left behind only delays a later run by the limit
                Claims(store, sweep, plan.claim_stale_s).release_run(run_name)


def _parallel_concurrency(configs: list[dict]) -> int | None:
    """Return how many trials may run at once when the sweep has parallel trials (None: no limit): as many as the
    cluster's CPUs and GPUs hold worker groups of the largest. Their Tune trials hold no CPU, so without a limit every
    trial would start its Ray Train run at once, all but a few waiting for their workers."""
    needs = [trial_resources(c) for c in configs if is_parallel(c)]
    if not needs:
        return None
    have = ray.cluster_resources()
    fits = [have.get(k, 0) // v for need in needs for k, v in need.items() if v > 0]
    return max(1, int(min(fits))) if fits else 1


def _run_latency_pass(store: str, sweep: str, configs: list[dict], embedded: bool, out) -> None:
    """Run `harness.latency_pass.latency_pass` over the sweep's ok trials: here when Ray is embedded (this machine
    ran the trials), else as one Ray task with a trial's resources, so on the trials' kind of device. Say what it
    did in one line; a failure is said in one line and does not fail the sweep (each row keeps its own latency)."""
    from harness.latency_pass import latency_pass

    try:
        if embedded:
            timed = latency_pass(store, sweep, configs)
        else:
            res = trial_resources(configs[0])
            task = ray.remote(latency_pass).options(num_cpus=res["CPU"], num_gpus=res["GPU"])
            timed = ray.get(task.remote(store, sweep, configs))
        print(f"[{sweep}] latency pass: {timed} trials timed in interleaved blocks, budget by budget "
              "(latency_interleaved_ms_p50)", file=out, flush=True)  # fmt: skip
    except Exception as err:  # the trials' own latencies stand; the pass adds a comparison-grade reading
        print(f"[{sweep}] latency pass failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''});"
              " each trial keeps its own latency_ms_p50", file=out, flush=True)  # fmt: skip


def _run_cost_pass(store: str, sweep: str, configs: list[dict], embedded: bool, out) -> None:
    """Run `harness.cost_pass.cost_pass` over the sweep's design points (those whose `measure.cost_pass` is on):
    here when Ray is embedded, else as one Ray task holding a trial's whole device (`measurement_resources`). Say what
    it did in one line; a failure is said in one line and does not fail the sweep (the trials' in-run figures stand; a
    rerun measures the points again)."""
    from harness.cost_pass import cost_pass

    # A parallel trial's costs are those of its worker group, which the pass (one device per point) does not measure:
    # its rows keep the in-run figures (the slowest worker's epoch time, the largest worker's memory).
    configs = [c for c in configs if (c.get("measure") or {}).get("cost_pass", True) and not is_parallel(c)]
    if not configs:
        return
    start = time.monotonic()
    try:
        if embedded or not ray.is_initialized():
            measured = cost_pass(store, sweep, configs)
        else:
            res = measurement_resources(configs[0])
            task = ray.remote(cost_pass).options(num_cpus=res["CPU"], num_gpus=res["GPU"])
            measured = ray.get(task.remote(store, sweep, configs))
        took = f" in {_fmt_duration(time.monotonic() - start)}" if measured else "; every point already has its row"
        print(f"[{sweep}] cost pass: {measured} design points measured alone (step time, epoch time, peak memory, "
              f"latency) into the costs table{took}", file=out, flush=True)  # fmt: skip
    except Exception as err:  # the trials' in-run costs stand
        print(f"[{sweep}] cost pass failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
              "the trials keep their in-run costs; a rerun measures the missing points", file=out, flush=True)


def _summarize(store: str, sweep: str, configs: list[dict], skipped: int, wall: float, best,
               claim_stale_s: float = CLAIM_STALE_S, run_id: str | None = None) -> SweepSummary:  # fmt: skip
    scan = scan_store(store, sweep)
    statuses, missing = {}, []
    for c in configs:
        status = scan.status.get(c["trial_id"])
        if status is None:
            missing.append(c["trial_id"])
        else:
            statuses[status] = statuses.get(status, 0) + 1
    elsewhere = {}
    claims = Claims(store, sweep, claim_stale_s)
    if missing and claims.supported:
        with contextlib.suppress(OSError):
            elsewhere, _ = claims.others(missing, run_id)  # still training in another run: not missing
    return SweepSummary(sweep=sweep, store=store, total=len(configs), skipped=skipped, statuses=statuses,
                        wall_time_s=round(wall, 3), best_acc=best,
                        missing=[m for m in missing if m not in elsewhere], elsewhere=elsewhere,
                        claim_stale_s=claim_stale_s)  # fmt: skip


def print_footer(summary: SweepSummary, stream=None) -> None:
    """Print where the results are and a two-line pandas example of querying them."""
    out = stream or sys.stdout
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items())) or "none"
    print(f"[{summary.sweep}] finished in {_fmt_duration(summary.wall_time_s)}: {counts}"
          + (f"; {len(summary.missing)} trials not run (no row)" if summary.missing else ""), file=out)  # fmt: skip
    for line in skipped_lines(summary.sweep, summary.elsewhere, {}, summary.claim_stale_s):
        print(line, file=out)
    if summary.seeds_text:
        print(f"[{summary.sweep}] {summary.seeds_text}", file=out)
    if is_uri(summary.store):
        # A URI's query (endpoint, scheme) configures the filesystem, so the tables are not "<uri>/trials".
        print(f"results: tables trials/, epochs/ (sweep={summary.sweep}) under {summary.store} "
              "(schema: results/README.md)", file=out)  # fmt: skip
        if summary.log_path:
            print(f"Ray's output (banners, warnings, tracebacks of failed attempts): {summary.log_path}", file=out)
        print("query them with pandas (analysis.store parses the URI with pyarrow):", file=out)
        print(f"    from analysis.store import load_trials; "
              f"t = load_trials({summary.store!r}, sweep={summary.sweep!r})", file=out)  # fmt: skip
    else:
        print(f"results: {summary.store}/trials/sweep={summary.sweep}/ and "
              f"{summary.store}/epochs/sweep={summary.sweep}/ (schema: results/README.md)", file=out)  # fmt: skip
        if summary.log_path:
            print(f"Ray's output (banners, warnings, tracebacks of failed attempts): {summary.log_path}", file=out)
        print("query them with pandas:", file=out)
        print(f"    import pandas as pd; t = pd.read_parquet({summary.store + '/trials'!r}, "
              f"filters=[('sweep', '=', {summary.sweep!r})])", file=out)  # fmt: skip
    print('    print(t.groupby(["budget", "design_class"])["final_acc"].agg(["mean", "std", "count"]))', file=out,
          flush=True)  # fmt: skip
