"""The sweep's cost pass: the training costs of every design point measured once, alone on its device, so that
trials may train packed (several per GPU or CPU core group) without their costs being measured under neighbours.

Accuracy does not depend on what runs beside a trial; its costs do, and they do not depend on the seed. So after the
sweep's trials, holding the node's measurement lock (`measure.one_measurement_per_node`: no trial of this node trains
meanwhile), the pass measures each design point that has an ok trial (with the networks of its lowest seed):

- step time: one fresh process builds every design point of a budget as its trial builds it (`harness.loop.prologue`
  and the point's trial kind: data, views, networks, optimizer, precision, execution) and times whole training steps
  (making the batch's views, forward, backward, optimizer step; device-synchronized) in blocks interleaved across the
  budget's points after WARMUP_STEPS untimed steps each (`measure.blocked_latency_ms`: p50 the median of the block
  medians). `epoch_time_s` = p50 x the trial's samples per epoch / batch size.
- latency: batch 1, members one after another, in the same process, interleaved across the budget's fixed-class
  points as the latency pass does (adaptive classes deploy sub-networks: their subnets rows hold those latencies).
- peak memory: a fresh process per design point loads the data, takes the baseline (`measure.memory_baseline`: after
  the imports and the data, before the networks), builds the point and runs MEMORY_STEPS training steps; the peak above
  the baseline is the CUDA allocator's, or on a CPU the process's peak resident memory (VmHWM). A fresh process holds
  nothing of another design or seed, so the figure is the same for every seed of a point. These processes may run
  side by side (a process's peak counts only its own memory); the timing process runs alone.

Rows go to the store's `costs` table (`harness.store.COSTS_SCHEMA`), one per (design point, device); a point that
already has its row there is not measured again.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import gc
import importlib
import json
import os
import pickle
import socket
import tempfile
import traceback
from itertools import groupby

import torch

from harness import measure
from harness.data import load_data
from harness.isolate import call_in_child
from harness.kinds import kind_for
from harness.latency_pass import BLOCKS as LATENCY_BLOCKS
from harness.latency_pass import RUNS_FACTOR, batch1_run, trial_threads
from harness.loop import optimizer_step, pick_device, prologue, train_batches
from harness.store import completed_trial_ids, point_id, read_cost_rows, write_cost_row
from harness.trial_settings import apply_trial_settings
from spaces.classes import FIXED_CLASSES

# Our choices. The first steps pay one-off costs (allocator growth, oneDNN primitive creation, cuDNN's algorithm
# search, compilation), so they are dropped. 20 timed steps in 10 blocks of 2: on this project's noisy 2-core VM the
# two seeds of a default-sweep design read within about 1.05x of each other with 20, 30 or 40 steps alike (what
# remains is mostly each network's own memory layout, fixed for the life of its process), and each step costs the
# sweep's wall time, since the pass runs alone: the default sweep's pass times 8 points x 22 steps, about 1.3 epochs
# of its 16 trials x 8 epochs.
WARMUP_STEPS = 2
TIMED_STEPS = 20
BLOCKS = 10
# The optimizer's state (momentum buffers) is made by the first step; the second step's backward holds it beside the
# gradients and the activations: the steady peak.
MEMORY_STEPS = 2
# A measuring server that has not answered in this long is stopped: the pass fails, its points get no row and are
# measured on a rerun.
CHILD_TIMEOUT_S = 1800


def loaded_once():
    """Return a `harness.data.load_data` that loads each (data set, device, options) once and hands the same
    `TrialData` to every later call: the timing process builds every design point of the sweep on the same data, and
    the trials only read it."""
    cache: dict[str, object] = {}

    def load(dataset: dict, device, **options):
        key = json.dumps([dataset, str(device), options], sort_keys=True, default=str)
        if key not in cache:
            cache[key] = load_data(dataset, device, **options)
        return cache[key]

    return load


def _trainer(config: dict, device: torch.device, data_loader=None):
    """Return (a function running one full training step of the config's design, the kind, the Setup): the point
    built as its trial builds it (prologue, trial kind, GradScaler), in the mid-training epoch's mode; each call makes
    the next full batch's views (as the trial's epoch does) and runs the kind's `train_step` with the loop's optimizer
    step. Partial last batches are skipped, so every step has the trial's batch size."""
    design, recipe = config["design"], config["recipe"]
    kind_class = kind_for(design["design_class"])
    setup = prologue(config, None, device, kind_class.data_views(design, recipe), data_loader=data_loader)
    return _steps(setup, kind_class(setup))


def _steps(setup, kind):
    recipe, device = setup.recipe, setup.device
    scaler = torch.amp.GradScaler(device.type, enabled=setup.precision == "fp16")
    kind.start_epoch(int(setup.config["epochs"]) // 2)
    count, member_views = kind.views_per_batch()
    batch_size = int(recipe["batch_size"])

    def full_batches():
        while True:
            for inputs, y in train_batches(setup.data, setup.views, count, member_views, batch_size, setup.gen,
                                           device):  # fmt: skip
                if len(y) == batch_size:
                    yield inputs, y

    batches = full_batches()

    def step_now() -> None:
        optimizer_step(kind.optimizer, scaler)

    def step() -> None:
        inputs, y = next(batches)
        kind.train_step(inputs, y, scaler.scale, step_now)

    kind.optimizer.zero_grad(set_to_none=True)
    return step, kind, setup


def _with_threads(run, threads: int):
    """Return `run` made to run with `threads` torch threads (points of one budget may differ in their threads)."""

    def wrapped():
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        run()

    return wrapped


def unit_key(config: dict, per_seed: bool = False) -> str:
    """Return what the pass measures a config as: its design point's id, or with `per_seed` its trial id (each seed
    measured on its own: how the seeds' agreement is checked)."""
    return config["trial_id"] if per_seed else point_id(config)


def time_points(configs: list[dict], per_seed: bool = False, warmup: int = WARMUP_STEPS, steps: int = TIMED_STEPS,
                blocks: int = BLOCKS) -> dict[str, dict]:  # fmt: skip
    """Return {point_id (trial_id with `per_seed`): {step_time_ms_p50/p90/iqr, epoch_time_s, steps_per_epoch,
    execution, member_schedule, precision, latency_ms_p50/p90/iqr (None for adaptive classes)}}: the training step
    time (ms) of one config per point, timed in blocks interleaved across the points of each budget, and their
    batch-1 latency (ms), likewise. Run in a process of its own (`measure_points`) by `cost_pass`, which holds the
    node's measurement lock."""
    device = pick_device(configs[0].get("resources") or {})
    out: dict[str, dict] = {}
    load = loaded_once()
    for _, group in groupby(sorted(configs, key=lambda c: c["design"]["budget"]), key=lambda c: c["design"]["budget"]):
        group = list(group)
        runs, info = {}, {}
        for config in group:
            apply_trial_settings(config)  # seeds, cudnn.benchmark, threads: as the trial starts
            threads = trial_threads(config)
            torch.set_num_threads(threads)
            step, kind, setup = _trainer(config, device, load)
            pid = unit_key(config, per_seed)
            runs[pid] = _with_threads(step, threads)
            info[pid] = {"execution": kind.execution, "member_schedule": kind.member_schedule,
                         "precision": setup.precision,
                         "steps_per_epoch": setup.data.num_train / int(config["recipe"]["batch_size"])}  # fmt: skip
        timed = measure.blocked_latency_ms(runs, device, warmup, steps, blocks, rotate=True)
        runs.clear()
        gc.collect()
        fixed = [c for c in group if c["design"]["design_class"] in FIXED_CLASSES]
        latency = {}
        if fixed:
            cfg = fixed[0]["measure"]
            modes = {unit_key(c, per_seed): _with_threads(batch1_run(c, device), trial_threads(c)) for c in fixed}
            latency = measure.blocked_latency_ms(modes, device, int(cfg["latency_warmup"]),
                                                 RUNS_FACTOR * int(cfg["latency_runs"]), LATENCY_BLOCKS)  # fmt: skip
        for pid, t in timed.items():
            lat = latency.get(pid, {})
            out[pid] = {**info[pid], "step_time_ms_p50": t["p50"], "step_time_ms_p90": t["p90"],
                        "step_time_ms_iqr": t["iqr"], "epoch_time_s": t["p50"] / 1000.0 * info[pid]["steps_per_epoch"],
                        "latency_ms_p50": lat.get("p50"), "latency_ms_p90": lat.get("p90"),
                        "latency_ms_iqr": lat.get("iqr")}  # fmt: skip
    return out


# glibc's default thresholds (bytes): allocations of 128 KiB and more are mmapped, and the heap is trimmed above
# 128 KiB free. glibc raises the mmap threshold as large blocks are freed, so where a buffer lands (heap, kept after
# free; or mmap, returned) depends on the allocation history and the peak resident memory of one design moved by up to
# 3% between runs here; held fixed, repeated runs and seeds agree within 1%.
MMAP_THRESHOLD, TRIM_THRESHOLD = 128 * 1024, 128 * 1024


def fixed_malloc_policy() -> None:
    """Hold glibc's mmap and trim thresholds at their defaults (mallopt), so this process's peak resident memory does
    not depend on its allocation history; a no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (setting it turns off the dynamic adjustment)
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


def peak_memory_of(config: dict, steps: int = MEMORY_STEPS) -> dict:
    """Return the peak training memory of the config's design (`measure.peak_memory` fields, MiB): in this process,
    which must be fresh (`measure_points`), the baseline is taken after the imports and the data, then the design is
    built and trains `steps` steps."""
    device = pick_device(config.get("resources") or {})
    if device.type == "cpu":
        fixed_malloc_policy()
    apply_trial_settings(config)
    torch.set_num_threads(trial_threads(config))
    design, recipe = config["design"], config["recipe"]
    kind_class = kind_for(design["design_class"])
    setup = prologue(config, None, device, kind_class.data_views(design, recipe))
    baseline = measure.memory_baseline(device)
    measure.reset_peak_memory(device)
    step, _, _ = _steps(setup, kind_class(setup))
    for _ in range(steps):
        step()
    measure.sync(device)
    return measure.peak_memory(device, baseline)


def design_points(store: str, sweep: str, configs: list[dict]) -> dict[str, dict]:
    """Return {point_id: config} of the points of `configs` with at least one ok trial in the store, each the config
    of its lowest ok seed (the networks the pass builds)."""
    ok = completed_trial_ids(store, sweep, ("ok",))
    points: dict[str, dict] = {}
    for config in sorted((c for c in configs if c["trial_id"] in ok), key=lambda c: c["seed"]):
        points.setdefault(point_id(config), config)
    return points


# Imported once by the measuring server, so that each process forked from it starts with them loaded (torch, the
# trial's code, the data set's reader): a bare interpreter per design point would cost seconds of imports each.
# Every trial's views import torchvision's transforms (`harness.views`), which import torch._dynamo: about 1.2 s here,
# paid once by the server instead of once per forked process. Imports run no torch operation, so forking stays safe.
PRELOAD_ALL = ("torchvision.transforms.v2",)
PRELOAD = {"digits": ("sklearn.datasets", "sklearn.model_selection")}
PRELOAD_OTHER = ("torchvision.datasets",)


def run_forked(tasks: list[tuple], workers: int) -> list:
    """Return [function(argument) for (function, argument) in tasks], each computed in a process forked for it from
    this one, at most `workers` at a time; a task's exception is raised here (as RuntimeError with its traceback).

    This process must have run no torch operation (forking a process whose thread pools started can deadlock): it
    is the measuring server that `measure_points` runs in a fresh interpreter, which only imports."""
    results: list = [None] * len(tasks)
    pending, running = list(enumerate(tasks)), {}
    with tempfile.TemporaryDirectory(prefix="harness-costs-") as tmp:
        while pending or running:
            while pending and len(running) < workers:
                index, (function, argument) = pending.pop(0)
                path = os.path.join(tmp, f"{index}.pkl")
                pid = os.fork()
                if pid == 0:  # the child: compute, write the outcome, leave without running the parent's cleanup
                    try:
                        outcome = ("ok", function(argument))
                    except BaseException:  # noqa: BLE001 -- every failure goes back to the parent as text
                        outcome = ("error", traceback.format_exc())
                    with open(path, "wb") as f:
                        pickle.dump(outcome, f)
                    os._exit(0)
                running[pid] = (index, path)
            pid, status = os.wait()
            index, path = running.pop(pid)
            if not os.path.exists(path):
                raise RuntimeError(f"the cost pass's process for task {index} ended without a result (wait status "
                                   f"{status})")  # fmt: skip
            with open(path, "rb") as f:
                outcome, value = pickle.load(f)
            if outcome == "error":
                raise RuntimeError(f"the cost pass's task {index} failed:\n{value}")
            results[index] = value
    return results


def measure_points(configs: list[dict], workers: int, per_seed: bool = False) -> tuple[dict, list[dict]]:
    """Return (`time_points(configs, per_seed)`, [`peak_memory_of(c)` for c in configs]), each in a process of its
    own forked from this one after torchvision's transforms and the data sets' readers (PRELOAD) are imported: the
    timing process alone, then up to `workers` memory processes at a time. Run in a fresh interpreter
    (`harness.isolate.call_in_child`) by `cost_pass`."""
    names = set(PRELOAD_ALL) | {n for c in configs for n in PRELOAD.get(c["dataset"]["name"], PRELOAD_OTHER)}
    for name in sorted(names):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    (timed,) = run_forked([(functools.partial(time_points, per_seed=per_seed), configs)], 1)
    return timed, run_forked([(peak_memory_of, c) for c in configs], workers)


def _parallel_children(configs: list[dict]) -> int:
    """Return how many memory processes run at once: as many as the node has room for at the trials' threads."""
    threads = max(trial_threads(c) for c in configs)
    return max(1, min(len(configs), (os.cpu_count() or 1) // threads))


def _measured_alone(configs: list[dict], per_seed: bool = False) -> tuple[dict, list[dict], float]:
    """Return (`measure_points(configs, ..., per_seed)`'s timings and memory, the seconds waited for the lock): run in
    a fresh interpreter while this process holds the node's measurement lock, so no trial of the node trains
    meanwhile."""
    with measure.one_measurement_per_node() as waited:
        timed, memory = call_in_child("harness.cost_pass:measure_points", configs, _parallel_children(configs),
                                      per_seed, timeout_s=CHILD_TIMEOUT_S)  # fmt: skip
    return timed, memory, waited


def cost_pass(store: str, sweep: str, configs: list[dict]) -> int:
    """Measure the costs of every design point of `configs` that has an ok trial in the store and no costs row for
    this device yet, alone, holding the node's measurement lock (the module docstring says how); write one costs row
    per point; return the number of points measured (0 on a rerun whose points all have their rows)."""
    points = design_points(store, sweep, configs)
    if not points:
        return 0
    device = pick_device(next(iter(points.values())).get("resources") or {})
    name = measure.device_name(device)
    have = {r["point_id"] for r in read_cost_rows(store, sweep) if r["device_name"] == name}
    todo = [c for pid, c in points.items() if pid not in have]
    if not todo:
        return 0
    timed, memory, waited = _measured_alone(todo)
    now = dt.datetime.now(dt.UTC)
    for config, mem in zip(todo, memory, strict=True):
        write_cost_row(store, sweep, cost_row(config, timed[point_id(config)], mem, name, device, waited, now))
    return len(todo)


def seed_costs(store: str, sweep: str, configs: list[dict]) -> list[dict]:
    """Return, for every trial of `configs` that is ok in the store, its own network measured alone as the pass
    measures a design point (each seed apart: how the seeds' agreement is checked): {trial_id, point_id, seed, the
    design's keys, epoch_time_s (s), step_time_ms_p50 (ms), peak_mem_mb (MiB), mem_source}. Holds the node's
    measurement lock, as `cost_pass` does; writes nothing."""
    ok = completed_trial_ids(store, sweep, ("ok",))
    todo = [c for c in configs if c["trial_id"] in ok]
    if not todo:
        return []
    timed, memory, _ = _measured_alone(todo, per_seed=True)
    return [{"trial_id": c["trial_id"], "point_id": point_id(c), "seed": c["seed"],
             **{k: c["design"].get(k) for k in ("design_class", "members", "family", "depth", "width", "budget")},
             "epoch_time_s": timed[c["trial_id"]]["epoch_time_s"],
             "step_time_ms_p50": timed[c["trial_id"]]["step_time_ms_p50"],
             "peak_mem_mb": mem["peak_mem_mb"], "mem_source": mem["mem_source"]}
            for c, mem in zip(todo, memory, strict=True)]  # fmt: skip


def cost_row(config: dict, timed: dict, mem: dict, name: str, device: torch.device, waited: float,
             now: dt.datetime) -> dict:  # fmt: skip
    """Return the costs row of one design point from its timing (`time_points`) and memory (`peak_memory_of`)."""
    design, resources, cfg = config["design"], config.get("resources") or {}, config["measure"]
    return {
        "point_id": point_id(config),
        "seed_built": config["seed"],
        "dataset": config["dataset"]["name"],
        **{k: design.get(k) for k in ("design_class", "family", "depth", "width", "members", "budget", "fit")},
        "epochs": config["epochs"],
        "params_total": design.get("params_total"),
        "device_name": name,
        "device_type": device.type,
        "cpus": resources.get("cpus"),
        "gpus": resources.get("gpus"),
        "threads": trial_threads(config),
        "trials_per_gpu": resources.get("trials_per_gpu", 1),
        "trials_per_cpu_group": resources.get("trials_per_cpu_group", 1),
        "batch_size": config["recipe"]["batch_size"],
        **timed,
        "peak_mem_mb": mem["peak_mem_mb"],
        "mem_baseline_mb": mem["mem_baseline_mb"],
        "peak_mem_reserved_mb": mem.get("peak_mem_reserved_mb"),
        "mem_source": mem["mem_source"],
        "warmup_steps": WARMUP_STEPS,
        "timed_steps": TIMED_STEPS,
        "blocks": BLOCKS,
        "memory_steps": MEMORY_STEPS,
        "latency_runs": RUNS_FACTOR * int(cfg["latency_runs"]) if timed.get("latency_ms_p50") is not None else None,
        "lock_wait_s": waited,
        "torch_version": torch.__version__,
        "hostname": socket.gethostname(),
        "measured_at": now,
    }
