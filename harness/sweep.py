"""The sweep driver: trial configs -> Ray Tune trials -> rows in the Parquet results store (DESIGN sections 4, 7, 8).

`run_sweep(spec)` turns `spaces.spec.trial_configs(spec)` into one Tune trial each. The trainable calls
`harness.trial.run_trial` with Tune's `report`, a checkpoint folder in the store, and at the end writes the trial's rows
to the store from the worker (so on a cluster the store must be a shared filesystem or an object-store URI).

Reruns are cheap and safe: trials whose row is already in the store are skipped, interrupted trials resume from their
checkpoint folder, a failing trial is retried `max_failures` times and then recorded with status "error".

Ray: with no address (and no RAY_ADDRESS) an embedded local Ray sized to the machine is started and stopped; an address
(or RAY_ADDRESS, which `ray job submit` sets for its entrypoint) connects to an existing cluster; a Ray already
initialised in this process is used as it is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field

from ray import tune
from ray.tune.experiment import Trial

from harness.store import (
    COMPLETE_STATUSES,
    build_subnet_rows,
    completed_trial_ids,
    filesystem,
    rows_from_result,
    write_trial,
)

DEFAULT_MAX_FAILURES = 2


def checkpoint_root(store: str, sweep: str) -> str | None:
    """Return the folder under which each trial of `sweep` keeps its checkpoint folder, or None for a URI store.

    Checkpoints live in the store (shared by every node) when the store is a local/shared path; `run_trial` needs a
    local folder, so a URI store gets no resumable checkpoints.
    """
    if "://" in str(store):
        return None
    return os.path.join(filesystem(store)[1], "checkpoints", f"sweep={sweep}")


def trial_resources(config: dict) -> dict:
    """Return the Ray resources one trial asks for: {"CPU": cpus, "GPU": gpus}.

    GPUs are whole (a fraction is rounded up) unless `resources.fractional_gpu` is true.
    """
    res = config.get("resources") or {}
    cpus = float(res.get("cpus", 1) or 0)
    gpus = float(res.get("gpus", 0) or 0)
    if gpus and not res.get("fractional_gpu", False):
        gpus = float(math.ceil(gpus))
    return {"CPU": cpus, "GPU": gpus}


def _placement(tune_config: dict) -> tune.PlacementGroupFactory:
    return tune.PlacementGroupFactory([trial_resources(tune_config["trial"])])


def _metrics(record: dict) -> dict:
    """Return the scalar part of an EPOCH/FINAL record for Tune (Tune sets its own `trial_id`, so ours is left out)."""
    return {k: v for k, v in record.items()
            if k != "trial_id" and (isinstance(v, int | float | str | bool))}  # fmt: skip


def _train(tune_config: dict) -> None:
    """The Tune function trainable: run one trial, forward its records to Tune, write its rows to the store."""
    from harness.trial import run_trial  # imported in the worker, where the trial runs

    config, store, sweep = tune_config["trial"], tune_config["store"], tune_config["sweep"]
    root = checkpoint_root(store, sweep)
    ckpt = os.path.join(root, config["trial_id"]) if root else None

    def report(record: dict) -> None:
        tune.report(_metrics(record))

    result = run_trial(config, report=report, checkpoint_dir=ckpt)
    trial_row, epoch_rows = rows_from_result(config, result)
    write_trial(store, sweep, trial_row, epoch_rows, build_subnet_rows(config, result))
    if ckpt and not tune_config.get("keep_checkpoints", False):
        # The row is the durable result; the checkpoint only served to resume.
        shutil.rmtree(ckpt, ignore_errors=True)


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

    @property
    def ok(self) -> bool:
        """True when every trial of the sweep has a row and none is an error."""
        return not self.missing and not self.statuses.get("error")


class SweepProgress(tune.Callback):
    """Driver-side Tune callback: plain one-line progress, error rows for trials that failed for good.

    Prints an event line when a trial ends and a status line at most every `every_s` seconds, e.g.
    `[digits 1m05s] 9/16 done (ok 8, diverged 0, error 1) | running 2 | pending 5 | best acc 0.962 (dct k=2 ...)`.
    Plain lines (no terminal control codes) so that a Ray Job's log reads the same as a terminal.
    """

    def __init__(self, store: str, sweep: str, total: int, skipped: int, every_s: float = 5.0,
                 enabled: bool = True, stream=None):  # fmt: skip
        self.store, self.sweep, self.total, self.skipped = store, sweep, total, skipped
        self.every_s, self.enabled, self.stream = every_s, enabled, stream
        self.counts = {"ok": 0, "diverged": 0, "error": 0}
        self.best_acc, self.best_what = None, ""
        self.start = time.monotonic()
        self._last_print = 0.0
        self._trials = []

    def _print(self, line: str) -> None:
        if self.enabled:
            print(line, file=self.stream or sys.stdout, flush=True)

    def _status_line(self) -> str:
        running = sum(t.status == Trial.RUNNING for t in self._trials)
        pending = sum(t.status == Trial.PENDING for t in self._trials)
        done = self.skipped + sum(self.counts.values())
        best = f"{self.best_acc:.4f} ({self.best_what})" if self.best_acc is not None else "-"
        return (f"[{self.sweep} {_fmt_duration(time.monotonic() - self.start)}] {done}/{self.total} done "
                f"(ok {self.counts['ok']}, diverged {self.counts['diverged']}, error {self.counts['error']}"
                f"{f', skipped {self.skipped}' if self.skipped else ''}) | running {running} | pending {pending} "
                f"| best acc {best}")  # fmt: skip

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
        acc = last.get("final_acc")
        self._print(f"[{self.sweep}] trial {config['trial_id']} {_describe(config)}: {status}"
                    + (f", final acc {acc:.4f}" if isinstance(acc, int | float) else ""))  # fmt: skip

    def on_trial_recover(self, iteration, trials, trial, **info):
        config = trial.config["trial"]
        self._print(f"[{self.sweep}] trial {config['trial_id']} failed (attempt {trial.num_failures}); retrying: "
                    f"{_error_text(trial).splitlines()[0]}")  # fmt: skip

    def on_trial_error(self, iteration, trials, trial, **info):
        config, last = trial.config["trial"], trial.last_result or {}
        text = _error_text(trial)
        row, epochs = rows_from_result(config, None, error=text)
        if isinstance(last.get("epoch"), int):
            row["epochs_done"] = last["epoch"]
        try:
            write_trial(self.store, self.sweep, row, epochs)
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
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as err:
            if "auth" in str(err).lower() or type(err).__name__ == "AuthenticationError":
                raise RuntimeError(
                    f"could not connect to the Ray cluster at {address}: {err}. The cluster uses token "
                    "authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token)."
                ) from err
            raise
    else:
        # "local" always starts a fresh embedded Ray, even if a `ray start` cluster runs on this machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    return True


def _check_feasible(configs: list[dict], embedded: bool) -> None:
    """Fail fast (embedded Ray) or warn (cluster, which may autoscale) when a trial asks for more than exists."""
    import ray

    have = ray.cluster_resources()
    for config in configs:
        need = trial_resources(config)
        short = [f"{k} {v:g} (cluster has {have.get(k, 0):g})" for k, v in need.items() if v > have.get(k, 0)]
        if short:
            msg = f"trial {config['trial_id']} asks for {', '.join(short)}; it would never start"
            if embedded:
                raise ValueError(msg + "; lower [resources] in the spec or use --address to reach a bigger cluster")
            print(f"warning: {msg} unless the cluster grows", file=sys.stderr)
            return


def run_sweep(spec, store: str = "results", address: str | None = None, max_failures: int = DEFAULT_MAX_FAILURES,
              progress: bool = True, progress_every_s: float = 5.0, rerun_errors: bool = False,
              keep_checkpoints: bool = False, num_cpus: int | None = None, reuse_actors: bool = True,
              configs: list[dict] | None = None) -> SweepSummary:  # fmt: skip
    """Run every trial of `spec` on Ray Tune into the results store; return a SweepSummary.

    `store`: local path (made absolute) or URI; must be shared by all nodes on a cluster. `address`: Ray cluster
    address (default RAY_ADDRESS, else an embedded local Ray with `num_cpus` CPUs, default all). `max_failures`:
    retries of a failing trial before it is recorded with status "error". `rerun_errors`: train trials recorded as
    errors again. `configs`: trial configs to run instead of `spaces.spec.trial_configs(spec)` (same shape).
    """
    t0 = time.monotonic()
    if configs is None:
        from spaces.spec import trial_configs

        configs = trial_configs(spec)
    unique = {}
    for c in configs:
        unique.setdefault(c["trial_id"], c)
    configs = list(unique.values())
    sweep = getattr(spec, "name", None) or (configs[0]["sweep"] if configs else "sweep")
    store = store if "://" in str(store) else filesystem(store)[1]
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials see the driver's cwd; Tune passes this on

    statuses = tuple(s for s in COMPLETE_STATUSES if not (rerun_errors and s == "error"))
    done = completed_trial_ids(store, sweep, statuses)
    pending = [c for c in configs if c["trial_id"] not in done]
    skipped = len(configs) - len(pending)
    say = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)
    say(f"[{sweep}] {len(configs)} trials: {skipped} already in the store {store}, {len(pending)} to run")

    best = None
    if pending:
        started = _init_ray(address, num_cpus)
        try:
            _check_feasible(pending, embedded=started and not (address or os.environ.get("RAY_ADDRESS")))
            tracker = SweepProgress(store, sweep, len(configs), skipped, every_s=progress_every_s, enabled=progress)
            local = "://" not in store
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            tuner = tune.Tuner(
                tune.with_resources(_train, _placement),
                param_space={
                    "trial": tune.grid_search(pending),
                    "store": store,
                    "sweep": sweep,
                    "keep_checkpoints": keep_checkpoints,
                },  # fmt: skip
                tune_config=tune.TuneConfig(
                    num_samples=1,
                    reuse_actors=reuse_actors,
                    trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                    trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
                ),
                run_config=tune.RunConfig(
                    name=f"{sweep}-{stamp}",
                    # Tune's own experiment state sits next to the results (shared on a cluster) but outside the tables.
                    storage_path=os.path.join(store, "_tune") if local else f"{store.rstrip('/')}/_tune",
                    failure_config=tune.FailureConfig(max_failures=max_failures),
                    verbose=0,
                    callbacks=[tracker],
                ),
            )
            tuner.fit()
            best = tracker.best_acc
        finally:
            if started:
                import ray

                ray.shutdown()

    summary = _summarize(store, sweep, configs, skipped, time.monotonic() - t0, best)
    if progress:
        print_footer(summary)
    return summary


def _summarize(store: str, sweep: str, configs: list[dict], skipped: int, wall: float, best) -> SweepSummary:
    from harness.store import read_trial_status

    statuses, missing = {}, []
    for c in configs:
        status = read_trial_status(store, sweep, c["trial_id"])
        if status is None:
            missing.append(c["trial_id"])
        else:
            statuses[status] = statuses.get(status, 0) + 1
    return SweepSummary(sweep=sweep, store=store, total=len(configs), skipped=skipped, statuses=statuses,
                        wall_time_s=round(wall, 3), best_acc=best, missing=missing)  # fmt: skip


def print_footer(summary: SweepSummary, stream=None) -> None:
    """Print where the results are and a two-line pandas example of querying them."""
    out = stream or sys.stdout
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items())) or "none"
    print(f"[{summary.sweep}] finished in {_fmt_duration(summary.wall_time_s)}: {counts}"
          + (f"; {len(summary.missing)} trials have no row" if summary.missing else ""), file=out)  # fmt: skip
    print(f"results: {summary.store}/trials/sweep={summary.sweep}/ and {summary.store}/epochs/sweep={summary.sweep}/ "
          "(schema: results/README.md)", file=out)  # fmt: skip
    print("query them with pandas:", file=out)
    print(f"    import pandas as pd; t = pd.read_parquet({summary.store + '/trials'!r}, "
          f"filters=[('sweep', '=', {summary.sweep!r})])", file=out)  # fmt: skip
    print('    print(t.groupby(["budget", "design_class"])["final_acc"].agg(["mean", "std", "count"]))', file=out,
          flush=True)  # fmt: skip
