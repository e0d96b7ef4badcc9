"""The trial loop: train one design point for E epochs with one seed, and measure it -- for every design class.

`run_trial(config, report, checkpoint_dir)` reads top to bottom: the prologue (threads, device and precision, the
checkpoint to resume from, data, views, generator), then the trial kind of the config's design class builds its
networks and optimizer (`harness.kinds`); then per epoch train (timed, synchronized), evaluate, save, report; then
measure once (params, FLOPs, memory, latency, environment) and report the FINAL record. The config is one of
`spaces.spec.trial_configs`; the EPOCH and FINAL records become the store's rows (`harness.store`, results/README.md).

What a design class changes lives in its trial kind (`harness.kinds.base.TrialKind`): building the networks, one
batch's forward and backward, the per-epoch evaluation, extra FINAL fields (sub-network rows). Adding a class is one
line in `spaces/classes.py` and one kind file; this loop does not change. A toy example:

    # harness/kinds/toy.py -- one network trained on plain cross-entropy
    import torch
    import torch.nn.functional as F
    from harness.kinds.base import TrialKind, register_kind
    from harness.networks import build_members, evaluate, make_optimizer

    class ToyKind(TrialKind):
        def __init__(self, setup):
            super().__init__(setup)
            self.models = build_members({**setup.design, "members": 1}, setup.seed, setup.device, False)
            self.optimizer = make_optimizer(self.models, setup.recipe)

        def train_batch(self, inputs, y, scale):
            with self.setup.amp:
                loss = F.cross_entropy(self.models[0](inputs[0]).float(), y)
            scale(loss).backward()
            return loss.detach()

        def evaluate(self):
            s = self.setup
            bs = s.recipe["eval_batch_size"]
            return evaluate(self.models, s.data, "logits", bs, s.device, s.amp, torch.contiguous_format)

    register_kind("toy", ToyKind)

    # spaces/classes.py, in CLASSES (and `from harness.kinds import toy` in harness/kinds/__init__.py):
    DesignClass("toy", False, "same_network_for", "toy", None, "#17becf"),

Decisions that are visible in the numbers:
- The learning rate is stepped **per iteration**: cosine decays smoothly over all iterations after a linear warm-up
  over `warmup_epochs`; step decays at the first iteration of each milestone epoch (so it equals a per-epoch step
  schedule). An EPOCH record's `lr` is the rate of that epoch's last iteration.
- `lambda_cot` is stepped **per epoch** (see `harness.losses.cot_weight`); the EPOCH record holds the value used.
- `train_loss` is the epoch's mean per-sample training objective of the kind (for fixed designs: sum of member CEs +
  lambda_cot * JS, on the augmented and mixed views); `test_loss` is the NLL of the (ensemble's) prediction on the
  test split.
- A non-finite training loss is detected at the end of the epoch (checking every step would force a device sync
  per iteration); the trial then stops with status "diverged" and that epoch is not reported.
- Randomness: model init per member from a seed derived from (trial seed, member index), inside
  `torch.random.fork_rng`; views, shuffling, mixing and every draw of a kind from one explicit generator on the
  device; dropout-style layers use torch's global RNG, which is seeded from the trial seed here and checkpointed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime

import torch
from torch import nn

from harness import measure
from harness.data import TrialData, load_data
from harness.errors import one_line
from harness.kinds import Setup, TrialKind, kind_for
from harness.networks import derived_seed
from harness.parallel import JointTrainingShare, to_cpu
from harness.trial_settings import apply_trial_settings, set_aside_checkpoint
from harness.views import ViewMaker
from spaces.spec import RECIPE_KEYS, trial_workers

CHECKPOINT_FILE = "trial_state.pt"


class CheckpointRefused(Exception):
    """A checkpoint file holds something other than tensors and plain data, so it is not loaded."""


def print_record(record: dict) -> None:
    """Print a record as one JSON line on stdout (the default `report`)."""
    print(json.dumps(record), flush=True)


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC text."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def pick_device(resources: dict) -> torch.device:
    """Return CUDA when it is available and the trial asked for a GPU, else the CPU."""
    if torch.cuda.is_available() and float(resources.get("gpus", 0)) > 0:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_precision(requested: str, device: torch.device) -> tuple[str, torch.dtype | None]:
    """Return (precision actually used, autocast dtype or None). Mixed precision applies on CUDA only."""
    allowed = RECIPE_KEYS["precision"].allowed
    if requested not in allowed:
        raise ValueError(f"unknown precision {requested!r}; allowed: {', '.join(allowed)}")
    if device.type != "cuda" or requested == "fp32":
        return "fp32", None
    return requested, torch.bfloat16 if requested == "bf16" else torch.float16


def lr_schedule(recipe: dict, epochs: int, iters_per_epoch: int) -> Callable[[int], float]:
    """Return lr_at(step): the learning rate of 0-based iteration `step` (per-iteration schedule).

    Linear warm-up over `warmup_epochs` (from lr/warmup_iters up to lr), then cosine to 0 over the remaining
    iterations, or step decay by `gamma` at each epoch in `milestones`.
    """
    base, total = float(recipe["lr"]), max(1, epochs * iters_per_epoch)
    warmup = int(round(float(recipe["warmup_epochs"]) * iters_per_epoch))
    kind = recipe["schedule"]
    milestones, gamma = [int(m) for m in recipe["milestones"]], float(recipe["gamma"])

    def lr_at(step: int) -> float:
        if step < warmup:
            return base * (step + 1) / warmup
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return base * 0.5 * (1.0 + math.cos(math.pi * progress))
        epoch = step // iters_per_epoch
        return base * gamma ** sum(epoch >= m for m in milestones)

    return lr_at


def make_views(recipe: dict, data: TrialData) -> ViewMaker:
    """Return the augmentation pipeline the recipe asks for, normalising with the data set's statistics."""
    return ViewMaker(
        padding=int(recipe["crop_padding"]),
        flip=bool(recipe["flip"]),
        normalize=data.normalize,
        autoaugment=bool(recipe["autoaugment"]),
        randaugment=bool(recipe["randaugment"]),
        random_erasing=float(recipe["random_erasing"]),
        autoaugment_policy="svhn" if data.name == "svhn" else "cifar10",
    )


def train_batches(
    data: TrialData,
    views: ViewMaker,
    count: int,
    member_views: bool,
    batch_size: int,
    gen: torch.Generator,
    device: torch.device,
):
    """Yield (list of `count` member inputs, labels) for one epoch, in a shuffled order drawn from `gen`."""
    if data.loader:
        for batch_views, y in data.train_loader:
            inputs = [v.to(device, non_blocking=True) for v in batch_views]
            yield (inputs if member_views else inputs[:1] * count), y.to(device, non_blocking=True)
        return
    order = torch.randperm(data.num_train, generator=gen, device=device)
    for start in range(0, data.num_train, batch_size):
        idx = order[start : start + batch_size]
        yield views.views(data.train_x[idx], count, member_views, gen), data.train_y[idx]


# --- checkpoints ------------------------------------------------------------------------------------------------


def rng_state(gen: torch.Generator, device: torch.device) -> dict:
    """Return every RNG state the trial draws from (our generator, torch CPU, and CUDA when used)."""
    state = {"views": gen.get_state(), "torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, gen: torch.Generator, device: torch.device) -> None:
    """Restore the states saved by `rng_state`."""
    gen.set_state(state["views"])
    torch.set_rng_state(state["torch_cpu"])
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"], device)


def save_checkpoint(path: str, state: dict) -> None:
    """Write `state` to `path` atomically (temp file in the same folder, then os.replace).

    The state holds data only (tensors, numbers, strings, lists and dicts of them), so `read_checkpoint` can load it
    with `weights_only=True`."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """Return the state saved in the checkpoint file `path`, loaded as data only (`torch.load(weights_only=True)`).

    Raises `CheckpointRefused` when the file holds anything but tensors and plain data (unpickling it could run code:
    anyone who can write to the store could have put it there), and the loader's own error when it does not load
    (truncated, corrupt)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" not in text:
            raise
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:  # the unpickler met a reference to code (a function or class) where only data may be
            raise CheckpointRefused(
                f"it holds {found.group(1)}, not only tensors and plain data; refused, since loading it could run code"
            ) from None
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        why = detail[0] if detail else "unreadable"
        raise pickle.UnpicklingError(f"not a checkpoint this harness wrote ({why})") from None


def checkpoint_problem(path: str) -> str | None:
    """Return why the checkpoint file `path` cannot be resumed from (one line), or None when it loads as data."""
    try:
        read_checkpoint(path)
    except Exception as err:
        return one_line(err)
    return None


def load_checkpoint(checkpoint_dir: str | None, trial_id: str, device: torch.device) -> tuple[str | None, dict | None]:
    """Return (this trial's checkpoint file path or None, its saved state or None); another trial's file is an error.

    A file that does not load as data (truncated, corrupt, or holding objects that unpickling would run) is set aside
    (`harness.trial_settings.set_aside_checkpoint`) and the state is None: the trial starts from scratch rather than
    failing on every retry."""
    ckpt_path = os.path.join(checkpoint_dir, CHECKPOINT_FILE) if checkpoint_dir else None
    if not (ckpt_path and os.path.exists(ckpt_path)):
        return ckpt_path, None
    try:
        state = read_checkpoint(ckpt_path, device)
    except Exception as err:  # refused, truncated or corrupt: set aside (renamed, named in a warning), start over
        set_aside_checkpoint(ckpt_path, err)
        return ckpt_path, None
    if state["trial_id"] != trial_id:
        raise ValueError(f"checkpoint {ckpt_path} belongs to trial {state['trial_id']}, not {trial_id}")
    return ckpt_path, state


def restore_training(state: dict, kind: TrialKind, scaler, gen: torch.Generator, device: torch.device,
                     workers=None):  # fmt: skip
    """Load a checkpoint's model, optimizer, scaler and RNG states into the kind's networks in place; return its
    (EPOCH history, optimizer step, started_at). In a parallel trial (`workers`, `harness.parallel.Workers`) each
    worker takes its own members, optimizer and torch RNG state from the whole trial's checkpoint."""
    own = workers.own_members(len(state["models"])) if workers is not None else range(len(state["models"]))
    for model, i in zip(kind.models, own, strict=True):
        model.load_state_dict(state["models"][i])
    members_parallel = workers is not None and workers.mode == "members"
    kind.optimizer.load_state_dict(state["optimizer"][workers.rank] if members_parallel else state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], gen, device)
    if workers is not None:
        torch.set_rng_state(state["rank_rng"][workers.rank])
    return state["history"], state["step"], state["started_at"]


def save_training(ckpt_path: str, trial_id: str, kind: TrialKind, scaler, gen: torch.Generator, device: torch.device,
                  history: list[dict], step: int, started_at: str, workers=None) -> None:  # fmt: skip
    """Write everything `restore_training` needs to `ckpt_path` (atomically, creating its folder). In a parallel trial
    every worker calls it (the members, optimizers and RNG states are gathered) and rank 0 writes the file."""
    models = [m.state_dict() for m in kind.models]
    optimizer = kind.optimizer.state_dict()
    extra = {}
    if workers is not None:
        if workers.mode == "members":  # each worker holds its members and their optimizer
            parts = workers.gather_objects(([to_cpu(m) for m in models], to_cpu(optimizer)))
            models = [m for part_models, _ in parts for m in part_models]
            optimizer = [part_optimizer for _, part_optimizer in parts]
        extra = {"rank_rng": workers.gather_objects(torch.get_rng_state()), "parallel": workers.mode,
                 "workers": workers.world}  # fmt: skip
        if not workers.lead:
            return
    os.makedirs(os.path.dirname(ckpt_path), exist_ok=True)
    save_checkpoint(
        ckpt_path,
        {
            "trial_id": trial_id,
            "execution": kind.execution,
            "models": models,
            "optimizer": optimizer,
            "scaler": scaler.state_dict(),
            "rng": rng_state(gen, device),
            "history": history,
            "step": step,
            "started_at": started_at,
            **extra,
        },
    )


# --- the loop ---------------------------------------------------------------------------------------------------


def prologue(config: dict, checkpoint: dict | None, device: torch.device, data_views: int, workers=None,
             data_loader=None) -> Setup:  # fmt: skip
    """Return the trial's Setup: precision and autocast on `device`, data (folder data making `data_views` views per
    sample), views, the trial's generator; torch's global RNG is seeded from the trial seed (and the worker's rank in
    a parallel trial, `workers`: dropout masks differ between workers as between samples). `data_loader` (default
    `harness.data.load_data`) is what loads the data: the cost pass passes one that loads each data set once."""
    seed, recipe = int(config["seed"]), config["recipe"]
    precision, amp_dtype = resolve_precision(recipe["precision"], device)
    amp = measure.autocast_context(device, amp_dtype)
    if device.type == "cuda":
        # Input shapes are fixed, so timing cuDNN's algorithms once pays off; off gives run-to-run reproducibility.
        torch.backends.cudnn.benchmark = bool(recipe["cudnn_benchmark"])
    data = (data_loader or load_data)(
        config["dataset"],
        device,
        member_views=data_views,
        batch_size=recipe["batch_size"],
        eval_batch_size=recipe["eval_batch_size"],
        augment=recipe,
    )
    views = make_views(recipe, data)
    gen = torch.Generator(device=device).manual_seed(derived_seed(seed, "views"))
    # dropout / stochastic depth draw from the global RNG
    torch.manual_seed(derived_seed(seed, "torch", *([workers.rank] if workers is not None and workers.rank else [])))
    return Setup(config, seed, device, precision, amp_dtype, amp, data, views, gen, checkpoint, workers)


def optimizer_step(optimizer: torch.optim.Optimizer, scaler) -> None:
    """Step `optimizer` on the gradients present (through the GradScaler: unscale, skip on inf/NaN, update the scale),
    then drop the gradients (set to None), so a later step in the same batch only moves parameters that got new ones.

    Every parameter update of every trial kind goes through here: once per batch (joint schedule), or once per member
    in the batch (per-member schedule, `harness.kinds.fixed`). torch's optimizers skip parameters whose `.grad` is
    None, so a step after one member's backward moves that member only."""
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def train_one_epoch(kind: TrialKind, setup: Setup, scaler, lr_at: Callable[[int], float], step: int,
                    share=None):  # fmt: skip
    """Train the kind's networks for one epoch, one optimizer step per batch (per member and batch for a per-member
    schedule); return (mean per-sample training loss in nats, next step, last lr, data time in s: the part of the
    epoch spent making batches and their views). `step` counts batches. `share` (a `measure.TrainingShare`) is held
    around each batch, so that another trial's latency measurement on this node runs between batches."""
    recipe, device, optimizer = setup.recipe, setup.device, kind.optimizer
    count, member_views = kind.views_per_batch()
    batches = train_batches(setup.data, setup.views, count, member_views, recipe["batch_size"], setup.gen, device)
    loss_sum, seen, lr = torch.zeros((), device=device), 0, float("nan")
    data_timer = measure.PhaseTimer(device)

    def step_now() -> None:
        optimizer_step(optimizer, scaler)

    optimizer.zero_grad(set_to_none=True)
    while True:
        with data_timer:  # making the batch's views (augmentation) or fetching it from the loader
            batch = next(batches, None)
        if batch is None:
            break
        inputs, y = batch
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with share or nullcontext():
            loss = kind.train_step(inputs, y, scaler.scale, step_now)
        loss_sum += loss * len(y)
        seen += len(y)
        step += 1
    return float(loss_sum) / max(1, seen), step, lr, data_timer.total_s()


def run_epochs(
    trial_id: str,
    epochs: int,
    history: list[dict],
    step: int,
    device: torch.device,
    train_epoch: Callable[[int, int], tuple[float, int, float, float, float]],
    evaluate_epoch: Callable[[], tuple[float, list[float], float]],
    save: Callable[[list[dict], int], None] | None,
    report: Callable[[dict], None],
    slowest: Callable[[float], float] = float,
) -> tuple[str, str | None]:
    """Run epochs len(history)+1..epochs of one trial, appending each EPOCH record to `history`; return (status,
    error): ("ok", None), or ("diverged", why) at the first non-finite training loss.

    `train_epoch(epoch, step)` trains 0-based `epoch` from optimizer step `step` and returns (mean training loss in
    nats, next step, last lr, lambda_cot, data time in s); its time (device-synchronized, s) is the epoch's
    `epoch_time_s`, the data time (making batches and views, inside it) its `data_time_s`.
    `evaluate_epoch()` returns (test accuracy, per-member accuracies, test loss in nats). After each epoch
    `save(history, step)` checkpoints (when given) and then `report` gets the record. Peak memory is measured from
    here on. `slowest(seconds)` turns this process's epoch and data times into the trial's (a parallel trial's: the
    slowest worker's).
    """
    measure.reset_peak_memory(device)
    for epoch in range(len(history), epochs):
        measure.sync(device)
        start = time.perf_counter()
        train_loss, step, lr, lambda_cot, data_time = train_epoch(epoch, step)
        measure.sync(device)
        epoch_time = slowest(time.perf_counter() - start)
        data_time = slowest(data_time)
        if not math.isfinite(train_loss):
            return "diverged", f"non-finite training loss ({train_loss}) in epoch {epoch + 1}"
        test_acc, member_acc, test_loss = evaluate_epoch()
        record = {
            "kind": "epoch",
            "trial_id": trial_id,
            "epoch": epoch + 1,
            "test_acc": test_acc,
            "member_acc": member_acc,
            "member_acc_mean": sum(member_acc) / len(member_acc),
            "train_loss": train_loss,
            "test_loss": test_loss,
            "epoch_time_s": epoch_time,
            "data_time_s": data_time,
            "cum_time_s": (history[-1]["cum_time_s"] if history else 0.0) + epoch_time,
            "lr": lr,
            "lambda_cot": lambda_cot,
        }
        history.append(record)
        if save is not None:
            save(history, step)
        report(record)
    return "ok", None


def final_record(
    config: dict,
    models: list[nn.Module],
    history: list[dict],
    data,
    memory: dict,
    device: torch.device,
    precision: str,
    amp_dtype,
    status: str,
    error: str | None,
    started_at: str,
    execution: str,
    channels_last: bool = False,
    fused_forward: Callable | None = None,
) -> dict:
    """Return the FINAL record: the accuracy summary of `history` (fractions) and the trained `models` measured now in
    eval mode: params (count), forward MACs/FLOPs per sample, batch-1 latency (ms) and throughput (samples/s);
    `memory` is the peak-memory reading (MiB) taken when training ended, with the member schedule that ran.
    `fused_forward` (the members' vmapped forward, when the trial ran fused) is timed beside the sequential one."""
    for model in models:
        model.eval()
    measure_cfg = config["measure"]
    sample = torch.zeros(1, data.in_chans, data.image_size, data.image_size, device=device)
    macs_fvcore, macs_fvcore_error = measure.fvcore_macs(models, sample)
    flops_torch, flops_torch_error = measure.torch_flops(models, sample)
    latency = measure.inference_latency(
        models,
        (data.in_chans, data.image_size, data.image_size),
        device,
        int(measure_cfg["latency_warmup"]),
        int(measure_cfg["latency_runs"]),
        int(measure_cfg["throughput_batch"]),
        amp_dtype,
        channels_last,
        fused_forward,
    )
    accs = [r["test_acc"] for r in history]
    best = max(range(len(accs)), key=lambda i: accs[i]) if accs else None
    params = [measure.count_params(m) for m in models]
    return {
        "kind": "final",
        "trial_id": config["trial_id"],
        "status": status,
        "error": error,
        "epochs_done": len(history),
        "final_acc": accs[-1] if accs else None,
        "best_acc": accs[best] if accs else None,
        "best_epoch": best + 1 if accs else None,
        "train_time_s": history[-1]["cum_time_s"] if history else 0.0,
        "params_member": params,
        "params_total": sum(params),
        "macs_fvcore": macs_fvcore,
        "macs_fvcore_error": macs_fvcore_error,
        "flops_torch": flops_torch,
        "flops_torch_error": flops_torch_error,
        **memory,
        **latency,
        **measure.environment(device, precision, config.get("resources", {}).get("fractional_gpu", False)),
        "execution": execution,
        "channels_last": channels_last,
        "split_id": data.split_id,
        "started_at": started_at,
        "finished_at": utc_now(),
    }


def run_trial(config: dict, report: Callable[[dict], None] = print_record, checkpoint_dir: str | None = None,
              workers=None) -> dict:  # fmt: skip
    """Train and measure one trial; return {"epochs": all EPOCH records, "final": the FINAL record}.

    Calls `report` with each new EPOCH record and then the FINAL record. With `checkpoint_dir`, resumes from the
    state saved there (epochs restored from it are returned but not reported again) and saves after every epoch.
    `workers` (`harness.parallel.Workers`): this process is one worker of a parallel trial; every worker runs this
    same loop on its device and reports as often, rank 0's records are the trial's (epoch time: the slowest worker's;
    peak memory: the largest worker's), and only rank 0 writes the checkpoint and measures the FINAL record (the
    others report a FINAL record with their status only).
    """
    spans = trial_workers(config)
    if workers is None and spans > 1:  # it would silently train on one device what its config says runs on several
        raise ValueError(f"trial {config['trial_id']} runs on {spans} Ray Train workers (resources.workers); run it "
                         "through run_sweep.py (harness.parallel_trial), not as one process")  # fmt: skip
    apply_trial_settings(config)  # threads, cudnn.benchmark, global seeds: nothing carries over from an earlier trial
    started_at = utc_now()
    trial_id, epochs, recipe = config["trial_id"], int(config["epochs"]), config["recipe"]
    kind_class = kind_for(config["design"]["design_class"])
    if int(config["measure"]["threads"]) > 0:
        torch.set_num_threads(int(config["measure"]["threads"]))
    device = workers.device if workers is not None else pick_device(config.get("resources", {}))
    ckpt_path, state = load_checkpoint(checkpoint_dir, trial_id, device)
    setup = prologue(config, state, device, kind_class.data_views(config["design"], recipe), workers)
    # Training memory is what the networks, their optimizer and their activations add to the process.
    mem_baseline_mb = measure.memory_baseline(device)
    kind = kind_class(setup)  # the networks and their optimizer
    scaler = torch.amp.GradScaler(device.type, enabled=setup.precision == "fp16")
    data = setup.data
    iters_per_epoch = len(data.train_loader) if data.loader else math.ceil(data.num_train / recipe["batch_size"])
    lr_at = lr_schedule(recipe, epochs, iters_per_epoch)

    history, step = [], 0
    if state is not None:
        history, step, started_at = restore_training(state, kind, scaler, setup.gen, device, workers)

    # Pauses between batches while another trial here measures latency; a parallel trial's workers pause together.
    share = measure.TrainingShare() if workers is None else JointTrainingShare(workers)

    def train_epoch(epoch: int, step: int) -> tuple[float, int, float, float, float]:
        lambda_cot = kind.start_epoch(epoch)
        train_loss, step, lr, data_time = train_one_epoch(kind, setup, scaler, lr_at, step, share)
        if workers is not None:
            train_loss = workers.epoch_loss(train_loss)
        return train_loss, step, lr, lambda_cot, data_time

    def save(history: list[dict], step: int) -> None:
        save_training(ckpt_path, trial_id, kind, scaler, setup.gen, device, history, step, started_at, workers)

    try:
        status, error = run_epochs(trial_id, epochs, history, step, device, train_epoch, kind.evaluate,
                                   save if ckpt_path else None, report,
                                   workers.slowest if workers is not None else float)  # fmt: skip
    finally:
        share.close()

    # Measure once.
    memory = {
        **measure.peak_memory(device, mem_baseline_mb),
        "data_device_mb": measure.data_device_mb(setup.data, device) if device.type == "cuda" else None,
        "member_schedule": kind.member_schedule,
    }
    together = kind.measure_on_workers() if workers is not None else {}  # e.g. concurrent inference latency
    measured = kind.networks_to_measure()
    if workers is not None:  # the largest worker's memory (each worker has one device)
        memory = max(workers.gather_objects(memory), key=lambda m: m["peak_mem_mb"])
        if not workers.lead:
            final = {"kind": "final", "trial_id": trial_id, "status": status, "error": error}
            report(final)
            return {"epochs": history, "final": final}
    extra = kind.final_fields(status)
    final = final_record(config, measured, history, data, memory, device, setup.precision,
                         setup.amp_dtype, status, error, started_at, kind.execution, kind.channels_last,
                         getattr(kind, "forward", None) if kind.execution == "fused" else None)  # fmt: skip
    final.update(extra)
    if workers is not None:
        final.update(parallel=workers.mode, workers=workers.world, **together)
    report(final)
    return {"epochs": history, "final": final}
