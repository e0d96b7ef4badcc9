"""The `mutual` trial: MutualNet (Yang et al. 2020), mutual learning from network width and input resolution.

One slimmable network (`spaces.families.slimmable`) is trained so that every sub-network of width multiplier
w in [w_min, w_max] on every input side in `resolutions` works. Per batch, the sandwich rule:

1. the full width (w_max) on the full-resolution view, loss = CE(logits, y);
2. the smallest width and two widths drawn uniformly from [w_min, w_max], each on the view resized (bilinear,
   antialiased) to a resolution drawn from `resolutions`, loss = KL(softmax(full logits, detached) || softmax(sub));
3. gradients of all four accumulate (one backward each, so only one graph is alive) and ONE optimizer step follows.

BatchNorm is shared. Its running statistics follow the full network only (sub-network passes run with BN momentum
0: they normalize with their batch statistics and leave the running ones alone), so the per-epoch test accuracy is
the full network's on full resolution. After training, for each (width, resolution) of the evaluation grid (widths
from w_min to w_max in steps of `width_step`, times every resolution), BN statistics are recalibrated on
`bn_calib_samples` un-augmented training samples (exact mean over the batches) and the sub-network is evaluated:
test accuracy, executed parameters, MACs (torch FlopCounterMode / 2, batch 1, on the sliced network at that
resolution) and batch-1 latency. Widths whose channel counts round to the same network are evaluated once.

`run_mutual_trial` returns what `harness.trial.run_trial` returns (same EPOCH and FINAL records, measured on the full
network) and the FINAL record additionally holds `subnets`, one dict per grid point (see `SUBNET_KEYS`), which
`harness.store` writes to the `subnets` table. Mixup/cutmix and co-training keys do not apply and are refused/ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness import measure
from harness.data import TrialData, load_data
from harness.trial import (
    build_members,
    derived_seed,
    evaluate,
    final_record,
    load_checkpoint,
    lr_schedule,
    make_optimizer,
    make_views,
    pick_device,
    print_record,
    resolve_precision,
    restore_training,
    run_epochs,
    save_training,
    test_batches,
    train_batches,
    utc_now,
)
from harness.views import ViewMaker
from spaces.families.slimmable import (
    active_channels,
    bn_momentum,
    executed_params,
    make_slimmable,
    reset_bn_stats,
    restore_bn_momentum,
    set_width,
)

# Keys of one sub-configuration's row: width multiplier, input side (px), test accuracy (fraction), executed
# parameters, MACs per sample, torch FLOPs per sample, batch-1 latency (ms), BN recalibration samples.
SUBNET_KEYS = ("width_mult", "resolution", "test_acc", "params", "macs", "flops_torch", "latency_ms_p50",
               "latency_ms_p90", "bn_calib_samples")  # fmt: skip


def width_grid(w_min: float, w_max: float, step: float) -> list[float]:
    """Return the evaluated width multipliers: w_min, w_min + step, ..., and always w_max (rounded to 4 digits)."""
    n = int(math.floor((w_max - w_min) / step + 1e-9))
    grid = [round(w_min + i * step, 4) for i in range(n + 1)]
    if grid[-1] < round(w_max, 4):
        grid.append(round(w_max, 4))
    return grid


def sandwich_widths(w_min: float, w_max: float, gen: torch.Generator) -> list[float]:
    """Return the sub-network widths of one batch: the smallest, then two drawn uniformly from [w_min, w_max]."""
    draws = torch.rand(2, generator=gen, device=gen.device).tolist()
    return [w_min] + [w_min + (w_max - w_min) * u for u in draws]


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """Return the batch `x` resized to side x side pixels (bilinear, antialiased); `x` itself when already so."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def train_one_epoch_mutual(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler,
    data: TrialData,
    views: ViewMaker,
    recipe: dict,
    lr_at: Callable[[int], float],
    step: int,
    gen: torch.Generator,
    device: torch.device,
    amp,
) -> tuple[float, int, float]:
    """Train the slimmable `model` for one epoch by the sandwich rule; return (mean per-sample objective in nats --
    full-width CE plus the three sub-networks' KL --, next step, last lr)."""
    model.train()
    w_min, w_max = (float(w) for w in recipe["widths"])
    resolutions = [int(r) for r in recipe["resolutions"]]
    loss_sum, seen, lr = torch.zeros((), device=device), 0, float("nan")
    for inputs, y in train_batches(data, views, 1, False, recipe["batch_size"], gen, device):
        x = inputs[0]
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        set_width(model, w_max)
        with amp:
            full = model(x)
        loss = F.cross_entropy(full.float(), y, label_smoothing=recipe["label_smoothing"])
        scaler.scale(loss).backward()
        total = loss.detach()
        teacher = F.softmax(full.detach().float(), dim=1)  # in-place distillation: the full network teaches
        saved = bn_momentum(model, 0.0)  # sub-networks leave the running statistics to the full network
        for width in sandwich_widths(w_min, w_max, gen):
            side = resolutions[int(torch.randint(len(resolutions), (1,), generator=gen, device=gen.device))]
            set_width(model, width)
            with amp:
                sub = model(resize(x, side))
            kl = F.kl_div(F.log_softmax(sub.float(), dim=1), teacher, reduction="batchmean")
            scaler.scale(kl).backward()
            total = total + kl.detach()
        restore_bn_momentum(model, saved)
        set_width(model, w_max)
        scaler.step(optimizer)
        scaler.update()
        loss_sum += total * len(y)
        seen += len(y)
        step += 1
    return float(loss_sum) / max(1, seen), step, lr


def calibration_batches(data: TrialData, samples: int, batch_size: int, seed: int, device: torch.device):
    """Yield normalized, un-augmented training batches: `samples` samples in a fixed seeded order."""
    if data.loader:
        # Folder data: the train loader's first view (its augmentation is part of the loader).
        left = samples
        for batch_views, _ in data.train_loader:
            x = batch_views[0][:left].to(device, non_blocking=True)
            yield x
            left -= len(x)
            if left <= 0:
                return
        return
    gen = torch.Generator(device=device).manual_seed(derived_seed(seed, "calibration"))
    order = torch.randperm(data.num_train, generator=gen, device=device)[:samples]
    for start in range(0, len(order), batch_size):
        yield data.normalize(data.train_x[order[start : start + batch_size]])


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches, side: int, amp) -> int:
    """Set every BN's running statistics to the exact mean over `batches` resized to `side` at the model's current
    width; return the samples seen. The model is left in eval mode."""
    reset_bn_stats(model)
    model.train()
    seen = 0
    for x in batches:
        with amp:
            model(resize(x, side))
        seen += len(x)
    model.eval()
    return seen


@torch.no_grad()
def subnet_accuracy(model: nn.Module, data: TrialData, side: int, batch_size: int, device, amp) -> float:
    """Return the test accuracy (fraction) of the model at its current width on the test split resized to `side`."""
    model.eval()
    correct, n = torch.zeros((), device=device), 0
    for x, y in test_batches(data, batch_size, device):
        with amp:
            logits = model(resize(x, side))
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    return float(correct) / max(1, n)


@torch.no_grad()
def batch1_latency_ms(model: nn.Module, shape: tuple[int, int, int], device, warmup: int, runs: int, amp) -> tuple:
    """Return (p50, p90) batch-1 inference latency in ms of the model at its current width."""
    x = torch.randn(1, *shape, device=device)

    def run():
        with amp:
            model(x)

    return measure.latency_p50_p90_ms(run, device, warmup, max(1, runs))


def evaluate_subnets(
    model: nn.Module, data: TrialData, recipe: dict, measure_cfg: dict, seed: int, device: torch.device, amp
) -> list[dict]:
    """Return one row (`SUBNET_KEYS`) per (width, resolution) of the evaluation grid, BN recalibrated for each; the
    model's own BN statistics and full width are restored afterwards."""
    w_min, w_max = (float(w) for w in recipe["widths"])
    samples = int(recipe["bn_calib_samples"])
    bs = int(recipe["eval_batch_size"])
    bn_state = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}
    momenta = bn_momentum(model, None)
    rows, cache = [], {}
    for side in sorted({int(r) for r in recipe["resolutions"]}, reverse=True):
        for width in width_grid(w_min, w_max, float(recipe["width_step"])):
            key = (active_channels(model, width), side)
            if key not in cache:
                set_width(model, width)
                seen = recalibrate_bn(model, calibration_batches(data, samples, bs, seed, device), side, amp)
                acc = subnet_accuracy(model, data, side, bs, device, amp)
                sample = torch.zeros(1, data.in_chans, side, side, device=device)
                counter = FlopCounterMode(display=False)
                with counter, torch.no_grad():
                    model(sample)
                flops = int(counter.get_total_flops())
                p50, p90 = batch1_latency_ms(
                    model,
                    (data.in_chans, side, side),
                    device,
                    int(measure_cfg["latency_warmup"]),
                    int(measure_cfg["latency_runs"]),
                    amp,
                )
                cache[key] = {
                    "test_acc": acc,
                    "params": executed_params(model, width, sample),
                    "macs": flops // 2,
                    "flops_torch": flops,
                    "latency_ms_p50": p50,
                    "latency_ms_p90": p90,
                    "bn_calib_samples": seen,
                }
            rows.append({"width_mult": width, "resolution": side, **cache[key]})
    restore_bn_momentum(model, momenta)
    model.load_state_dict(bn_state, strict=False)
    set_width(model, w_max)
    model.eval()
    return rows


def run_mutual_trial(
    config: dict, report: Callable[[dict], None] = print_record, checkpoint_dir: str | None = None
) -> dict:
    """Train and measure one `mutual` trial; return {"epochs": EPOCH records, "final": FINAL record with `subnets`}.

    Reports and checkpoints exactly like `harness.trial.run_trial`; EPOCH records describe the full network
    (member_acc has one entry, lambda_cot is 0).
    """
    started_at = utc_now()
    trial_id, seed, epochs = config["trial_id"], int(config["seed"]), int(config["epochs"])
    design, recipe, measure_cfg = config["design"], config["recipe"], config["measure"]
    if recipe.get("mixup_alpha", 0) or recipe.get("cutmix_alpha", 0):
        raise ValueError("the mutual class does not support mixup/cutmix (its sub-networks distil the full network)")
    if int(measure_cfg.get("threads", 0)) > 0:
        torch.set_num_threads(int(measure_cfg["threads"]))
    device = pick_device(config.get("resources", {}))
    precision, amp_dtype = resolve_precision(recipe["precision"], device)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    ckpt_path, state = load_checkpoint(checkpoint_dir, trial_id, device)

    data = load_data(
        config["dataset"], device, batch_size=recipe["batch_size"], eval_batch_size=recipe["eval_batch_size"]
    )
    views = make_views(recipe, data)
    gen = torch.Generator(device=device).manual_seed(derived_seed(seed, "views"))
    torch.manual_seed(derived_seed(seed, "torch"))
    (model,) = build_members({**design, "members": 1}, seed, device, channels_last=False)
    make_slimmable(model)
    optimizer = make_optimizer([model], recipe)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    iters_per_epoch = len(data.train_loader) if data.loader else math.ceil(data.num_train / recipe["batch_size"])
    lr_at = lr_schedule(recipe, epochs, iters_per_epoch)
    fmt = torch.contiguous_format

    history, step = [], 0
    if state is not None:
        history, step, started_at = restore_training(state, [model], optimizer, scaler, gen, device)

    def train_epoch(epoch: int, step: int) -> tuple[float, int, float, float]:
        train_loss, step, lr = train_one_epoch_mutual(
            model, optimizer, scaler, data, views, recipe, lr_at, step, gen, device, amp
        )
        return train_loss, step, lr, 0.0

    def evaluate_epoch() -> tuple[float, list[float], float]:
        return evaluate([model], data, "logits", recipe["eval_batch_size"], device, amp, fmt)

    def save(history: list[dict], step: int) -> None:
        save_training(
            ckpt_path, trial_id, "sequential", [model], optimizer, scaler, gen, device, history, step, started_at
        )

    status, error = run_epochs(
        trial_id, epochs, history, step, device, train_epoch, evaluate_epoch, save if ckpt_path else None, report
    )

    memory = measure.peak_memory(device)
    subnets = evaluate_subnets(model, data, recipe, measure_cfg, seed, device, amp) if status == "ok" else []
    final = final_record(
        config, [model], history, data, memory, device, precision, amp_dtype, status, error, started_at, "sequential"
    )
    final["subnets"] = subnets
    report(final)
    return {"epochs": history, "final": final}
