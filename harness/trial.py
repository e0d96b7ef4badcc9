"""The trial function: train one design point (1..k members) for E epochs with one seed, and measure it.

`run_trial(config, report, checkpoint_dir)` reads top to bottom: set up device, data, views, members, optimizer and
schedules; restore a checkpoint if one exists; then per epoch train (timed, synchronized), evaluate, save, report;
then measure once (params, FLOPs, memory, latency, environment) and report the FINAL record. The config is the
contract's trial config (CONTRACT.md); the records are its EPOCH and FINAL records.

Decisions that are visible in the numbers:
- The learning rate is stepped **per iteration**: cosine decays smoothly over all iterations after a linear warm-up
  over `warmup_epochs`; step decays at the first iteration of each milestone epoch (so it equals a per-epoch step
  schedule). An EPOCH record's `lr` is the rate of that epoch's last iteration.
- `lambda_cot` is stepped **per epoch** (see `harness.losses.cot_weight`); the EPOCH record holds the value used.
- `train_loss` is the epoch's mean per-sample training objective (sum of member CEs + lambda_cot * JS), on the
  augmented (and mixed) views; `test_loss` is the NLL of the ensemble's combined prediction on the test split.
- A non-finite training loss is detected at the end of the epoch (checking every step would force a device sync
  per iteration); the trial then stops with status "diverged" and that epoch is not reported.
- Execution (`recipe.execution`, see `harness.fused`): `sequential` runs the members one after another, `fused` as
  one vmapped computation over stacked weights, `auto` the mode measured fastest on the device; the FINAL record's
  `execution` is the mode that really ran.
- Randomness: model init per member from a seed derived from (trial seed, member index), inside
  `torch.random.fork_rng`; views, shuffling and mixing from one explicit generator on the device; dropout-style
  layers use torch's global RNG, which is seeded from the trial seed here and checkpointed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime

import torch
import torch.nn.functional as F
from torch import nn

from harness import measure
from harness.data import TrialData, load_data
from harness.fused import FusedMembers, check_compile_supported, compile_args, member_forward, resolve_execution
from harness.losses import COMBINERS, cot_weight, cotraining_loss, ensemble_log_probs
from harness.trial_settings import apply_trial_settings, set_aside_checkpoint
from harness.views import ViewMaker, apply_mix, draw_mix, soft_targets
from spaces.families import create_model

CHECKPOINT_FILE = "trial_state.pt"


def print_record(record: dict) -> None:
    """Print a record as one JSON line on stdout (the default `report`)."""
    print(json.dumps(record), flush=True)


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC text."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def derived_seed(seed: int, *tags: object) -> int:
    """Return a 63-bit seed derived from the trial seed and tags (stable across processes and platforms)."""
    text = ":".join(str(t) for t in (seed, *tags))
    return int(hashlib.sha1(text.encode()).hexdigest()[:15], 16)


def pick_device(resources: dict) -> torch.device:
    """Return CUDA when it is available and the trial asked for a GPU, else the CPU."""
    if torch.cuda.is_available() and float(resources.get("gpus", 0)) > 0:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_precision(requested: str, device: torch.device) -> tuple[str, torch.dtype | None]:
    """Return (precision actually used, autocast dtype or None). Mixed precision applies on CUDA only."""
    if requested not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {requested!r}; allowed: fp32, bf16, fp16")
    if device.type != "cuda" or requested == "fp32":
        return "fp32", None
    return requested, torch.bfloat16 if requested == "bf16" else torch.float16


def build_members(design: dict, seed: int, device: torch.device, channels_last: bool) -> list[nn.Module]:
    """Return the design's `members` models on `device`, each initialised from its own derived seed."""
    models = []
    for i in range(int(design["members"])):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(seed, "member", i))
            model = create_model(
                design["family"],
                design["depth"],
                design["width"],
                num_classes=design["num_classes"],
                in_chans=design["in_chans"],
                **design.get("family_args", {}),
            )
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        models.append(model.to(device=device, memory_format=fmt))
    return models


def make_optimizer(
    models: list[nn.Module], recipe: dict, stacked: dict[str, torch.Tensor] | None = None
) -> torch.optim.Optimizer:
    """Return one SGD (momentum, Nesterov) over all members' parameters, or over their `stacked` parameters (fused
    execution: name -> tensor with a leading member dimension); weight decay on conv/linear weights only."""
    if recipe.get("optimizer", "sgd") != "sgd":
        raise ValueError(f"unknown optimizer {recipe['optimizer']!r}; allowed: sgd")
    decayed = {
        f"{prefix}.weight" if prefix else "weight"
        for prefix, module in models[0].named_modules()
        if isinstance(module, nn.modules.conv._ConvNd | nn.Linear) and module.weight is not None
    }
    sources = [stacked] if stacked is not None else [dict(model.named_parameters()) for model in models]
    decay = [param for params in sources for name, param in params.items() if name in decayed]
    no_decay = [param for params in sources for name, param in params.items() if name not in decayed]
    groups = [{"params": decay, "weight_decay": recipe["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=recipe["lr"], momentum=recipe["momentum"], nesterov=recipe["nesterov"])


def lr_schedule(recipe: dict, epochs: int, iters_per_epoch: int) -> Callable[[int], float]:
    """Return lr_at(step): the learning rate of 0-based iteration `step` (per-iteration schedule).

    Linear warm-up over `warmup_epochs` (from lr/warmup_iters up to lr), then cosine to 0 over the remaining
    iterations, or step decay by `gamma` at each epoch in `milestones`.
    """
    base, total = float(recipe["lr"]), max(1, epochs * iters_per_epoch)
    warmup = int(round(float(recipe.get("warmup_epochs", 0)) * iters_per_epoch))
    kind = recipe["schedule"]
    if kind not in ("cosine", "step"):
        raise ValueError(f"unknown schedule {kind!r}; allowed: cosine, step")
    milestones, gamma = [int(m) for m in recipe.get("milestones", [])], float(recipe.get("gamma", 0.1))

    def lr_at(step: int) -> float:
        if step < warmup:
            return base * (step + 1) / warmup
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return base * 0.5 * (1.0 + math.cos(math.pi * progress))
        epoch = step // iters_per_epoch
        return base * gamma ** sum(epoch >= m for m in milestones)

    return lr_at


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


def test_batches(data: TrialData, batch_size: int, device: torch.device):
    """Yield normalized (inputs, labels) test batches in a fixed order."""
    if data.loader:
        for x, y in data.test_loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return
    for start in range(0, data.num_test, batch_size):
        yield data.test_x[start : start + batch_size], data.test_y[start : start + batch_size]


def train_one_epoch(
    members, forward, optimizer, scaler, data, views, recipe, lambda_cot, lr_at, step, gen, device, amp
) -> tuple[float, int, float]:
    """Train every member for one epoch, running them through `forward` (`harness.fused.member_forward`); return
    (mean per-sample training loss in nats, next step, last lr)."""
    for model in members:
        model.train()
    k, member_views = len(members), bool(recipe["member_views"])
    loss_sum, seen, lr = torch.zeros((), device=device), 0, float("nan")
    for inputs, y in train_batches(data, views, k, member_views, recipe["batch_size"], gen, device):
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # One mixing draw per batch, shared by every member's view.
        plan = draw_mix(len(y), *inputs[0].shape[-2:], recipe["mixup_alpha"], recipe["cutmix_alpha"], gen)
        if plan is not None:
            mixed = {id(x): apply_mix(x, plan) for x in inputs}
            inputs = [mixed[id(x)] for x in inputs]
        targets = y if plan is None else soft_targets(y, data.num_classes, plan, recipe["label_smoothing"])
        with amp:
            logits = forward(inputs)
        loss, _ = cotraining_loss(logits, targets, lambda_cot, recipe["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * len(y)
        seen += len(y)
        step += 1
    return float(loss_sum) / max(1, seen), step, lr


@torch.no_grad()
def evaluate(members, data, combine, batch_size, device, amp, fmt, forward=None) -> tuple[float, list[float], float]:
    """Return (ensemble accuracy, per-member accuracies, ensemble test loss in nats per sample) on the test split;
    the members run through `forward` (`harness.fused.member_forward`) when given, else one after another in memory
    format `fmt`."""
    forward = forward or member_forward(members, None, fmt)
    for model in members:
        model.eval()
    correct = torch.zeros((), device=device)
    member_correct = torch.zeros(len(members), device=device)
    nll, n = torch.zeros((), device=device), 0
    for x, y in test_batches(data, batch_size, device):
        with amp:
            logits = forward([x] * len(members))
        log_probs = ensemble_log_probs(logits, combine)
        nll += F.nll_loss(log_probs, y, reduction="sum")
        correct += (log_probs.argmax(1) == y).sum()
        member_correct += torch.stack([(z.argmax(1) == y).sum() for z in logits]).float()
        n += len(y)
    return float(correct) / n, [float(c) / n for c in member_correct.tolist()], float(nll) / n


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
    """Write `state` to `path` atomically (temp file in the same folder, then os.replace)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def restore_training(
    state: dict, models: list[nn.Module], optimizer, scaler, gen: torch.Generator, device: torch.device
) -> tuple[list[dict], int, str]:
    """Load a checkpoint's model, optimizer, scaler and RNG states in place; return its (EPOCH history, optimizer
    step, started_at)."""
    for model, saved in zip(models, state["models"], strict=True):
        model.load_state_dict(saved)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], gen, device)
    return state["history"], state["step"], state["started_at"]


def save_training(
    ckpt_path: str,
    trial_id: str,
    execution: str,
    models: list[nn.Module],
    optimizer,
    scaler,
    gen: torch.Generator,
    device: torch.device,
    history: list[dict],
    step: int,
    started_at: str,
) -> None:
    """Write everything `restore_training` needs to `ckpt_path` (atomically, creating its folder)."""
    os.makedirs(os.path.dirname(ckpt_path), exist_ok=True)
    save_checkpoint(
        ckpt_path,
        {
            "trial_id": trial_id,
            "execution": execution,
            "models": [m.state_dict() for m in models],
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(gen, device),
            "history": history,
            "step": step,
            "started_at": started_at,
        },
    )


def load_checkpoint(checkpoint_dir: str | None, trial_id: str, device: torch.device) -> tuple[str | None, dict | None]:
    """Return (this trial's checkpoint file path or None, its saved state or None); another trial's file is an error.

    A file that does not load (truncated, corrupt) is set aside (`harness.trial_settings.set_aside_checkpoint`) and the
    state is None: the trial starts from scratch rather than failing on every retry."""
    ckpt_path = os.path.join(checkpoint_dir, CHECKPOINT_FILE) if checkpoint_dir else None
    if not (ckpt_path and os.path.exists(ckpt_path)):
        return ckpt_path, None
    try:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
    except Exception as err:  # truncated or corrupt: set aside (renamed, named in a warning), start from scratch
        set_aside_checkpoint(ckpt_path, err)
        return ckpt_path, None
    if state["trial_id"] != trial_id:
        raise ValueError(f"checkpoint {ckpt_path} belongs to trial {state['trial_id']}, not {trial_id}")
    return ckpt_path, state


def make_views(recipe: dict, data) -> ViewMaker:
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


def run_epochs(
    trial_id: str,
    epochs: int,
    history: list[dict],
    step: int,
    device: torch.device,
    train_epoch: Callable[[int, int], tuple[float, int, float, float]],
    evaluate_epoch: Callable[[], tuple[float, list[float], float]],
    save: Callable[[list[dict], int], None] | None,
    report: Callable[[dict], None],
) -> tuple[str, str | None]:
    """Run epochs len(history)+1..epochs of one trial, appending each EPOCH record to `history`; return (status,
    error): ("ok", None), or ("diverged", why) at the first non-finite training loss.

    `train_epoch(epoch, step)` trains 0-based `epoch` from optimizer step `step` and returns (mean training loss in
    nats, next step, last lr, lambda_cot); its time (device-synchronized, s) is the epoch's `epoch_time_s`.
    `evaluate_epoch()` returns (test accuracy, per-member accuracies, test loss in nats). After each epoch
    `save(history, step)` checkpoints (when given) and then `report` gets the record. Peak memory is measured from
    here on.
    """
    measure.reset_peak_memory(device)
    for epoch in range(len(history), epochs):
        measure.sync(device)
        start = time.perf_counter()
        train_loss, step, lr, lambda_cot = train_epoch(epoch, step)
        measure.sync(device)
        epoch_time = time.perf_counter() - start
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
) -> dict:
    """Return the FINAL record: the accuracy summary of `history` (fractions) and the trained `models` measured now in
    eval mode: params (count), forward MACs/FLOPs per sample, batch-1 latency (ms) and throughput (samples/s);
    `memory` is the peak-memory reading (MiB) taken when training ended."""
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


def run_trial(config: dict, report: Callable[[dict], None] = print_record, checkpoint_dir: str | None = None) -> dict:
    """Train and measure one trial; return {"epochs": all EPOCH records, "final": the FINAL record}.

    Calls `report` with each new EPOCH record and then the FINAL record. With `checkpoint_dir`, resumes from the
    state saved there (epochs restored from it are returned but not reported again) and saves after every epoch.
    """
    apply_trial_settings(config)  # threads, cudnn.benchmark, global seeds: nothing carries over from an earlier trial
    if config["design"]["design_class"] == "mutual":
        from harness.mutual import run_mutual_trial  # one slimmable network, trained by the sandwich rule

        return run_mutual_trial(config, report, checkpoint_dir)
    if config["design"]["design_class"] == "coop":
        from harness.coop import run_coop_trial  # two depth-adaptive teammates and a leader, trained cooperatively

        return run_coop_trial(config, report, checkpoint_dir)
    started_at = utc_now()
    trial_id, seed, epochs = config["trial_id"], int(config["seed"]), int(config["epochs"])
    design, recipe, measure_cfg = config["design"], config["recipe"], config["measure"]
    if recipe["combine"] not in COMBINERS:
        raise ValueError(f"unknown combiner {recipe['combine']!r}; allowed: {', '.join(COMBINERS)}")
    if int(measure_cfg.get("threads", 0)) > 0:
        torch.set_num_threads(int(measure_cfg["threads"]))

    # Device and numerics.
    device = pick_device(config.get("resources", {}))
    precision, amp_dtype = resolve_precision(recipe["precision"], device)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    compile_kwargs = compile_args(recipe.get("compile", "off"), recipe.get("compile_backend", "inductor"))
    check_compile_supported(compile_kwargs, device)
    if device.type == "cuda":
        # Input shapes are fixed, so timing cuDNN's algorithms once pays off; off gives run-to-run reproducibility.
        torch.backends.cudnn.benchmark = bool(recipe.get("cudnn_benchmark", True))

    # Execution mode. A checkpoint's mode wins over what `auto` would pick now: the optimizer state's layout
    # (per-member or stacked parameters) depends on it.
    ckpt_path, state = load_checkpoint(checkpoint_dir, trial_id, device)
    execution = resolve_execution(recipe.get("execution", "sequential"), device, design["members"])
    if state is not None:
        execution = state.get("execution", "sequential")
    channels_last = bool(recipe["channels_last"]) and device.type == "cuda" and execution == "sequential"
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    # Data, views, members, optimizer, schedules.
    k = int(design["members"])
    data = load_data(
        config["dataset"],
        device,
        member_views=k if recipe["member_views"] else 1,
        batch_size=recipe["batch_size"],
        eval_batch_size=recipe["eval_batch_size"],
    )
    views = make_views(recipe, data)
    gen = torch.Generator(device=device).manual_seed(derived_seed(seed, "views"))
    torch.manual_seed(derived_seed(seed, "torch"))  # dropout / stochastic depth draw from the global RNG
    members = build_members(design, seed, device, channels_last)
    # Fused: the members' tensors become views of stacked ones, which the optimizer steps (harness.fused).
    fused = FusedMembers(members) if execution == "fused" else None
    optimizer = make_optimizer(members, recipe, fused.params if fused else None)
    forward = member_forward(members, fused, fmt, compile_kwargs)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    iters_per_epoch = len(data.train_loader) if data.loader else math.ceil(data.num_train / recipe["batch_size"])
    lr_at = lr_schedule(recipe, epochs, iters_per_epoch)

    # Resume.
    history, step = [], 0
    if state is not None:
        history, step, started_at = restore_training(state, members, optimizer, scaler, gen, device)

    # Train.
    def train_epoch(epoch: int, step: int) -> tuple[float, int, float, float]:
        lambda_cot = cot_weight(epoch, recipe["lambda_cot"], recipe["cot_warmup_epochs"], recipe["cot_floor"])
        train_loss, step, lr = train_one_epoch(
            members, forward, optimizer, scaler, data, views, recipe, lambda_cot, lr_at, step, gen, device, amp
        )
        return train_loss, step, lr, lambda_cot

    def evaluate_epoch() -> tuple[float, list[float], float]:
        return evaluate(members, data, recipe["combine"], recipe["eval_batch_size"], device, amp, fmt, forward)

    def save(history: list[dict], step: int) -> None:
        save_training(
            ckpt_path, trial_id, execution, members, optimizer, scaler, gen, device, history, step, started_at
        )

    status, error = run_epochs(
        trial_id, epochs, history, step, device, train_epoch, evaluate_epoch, save if ckpt_path else None, report
    )

    # Measure once.
    memory = measure.peak_memory(device)
    final = final_record(
        config,
        members,
        history,
        data,
        memory,
        device,
        precision,
        amp_dtype,
        status,
        error,
        started_at,
        execution,
        channels_last,
    )
    report(final)
    return {"epochs": history, "final": final}


def main(argv: list[str] | None = None) -> int:
    """CLI: run trial N of a spec and print one JSON object per report on stdout; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m harness.trial", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="spec file or preset name (e.g. digits)")
    parser.add_argument("--index", type=int, default=0,
                        help="which trial of the spec (0-based; trials = design points x seeds, as the dry run numbers "
                        "them)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec key")
    parser.add_argument("--checkpoint-dir", default=None, help="resume from / save to this folder")
    args = parser.parse_args(argv)
    from spaces.spec import SpecError, load_spec, trial_configs

    try:
        configs = trial_configs(load_spec(args.spec, args.set))
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not 0 <= args.index < len(configs):
        print(f"error: --index {args.index} out of range; the spec has {len(configs)} trials", file=sys.stderr)
        return 2
    config = configs[args.index]
    d = config["design"]
    # Each JSON line says which trial it is: index N counts trials (design points x seeds, design-major).
    design = f"{d['design_class']} k={d['members']} {d['family']}-{d['depth']} w={d['width']} seed={config['seed']}"
    result = run_trial(config, lambda rec: print_record({**rec, "index": args.index, "design": design}),
                       args.checkpoint_dir)  # fmt: skip
    return 0 if result["final"]["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
