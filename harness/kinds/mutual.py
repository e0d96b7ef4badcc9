"""The `mutual` trial kind: MutualNet (Yang et al. 2020), mutual learning from network width and input resolution.

One slimmable network (`spaces.families.slimmable`) is trained so that every sub-network of width multiplier
w in [w_min, w_max] on every input side in `resolutions` works. Per batch, the sandwich rule:

1. the full width (w_max) on the full-resolution view, loss = CE(logits, y);
2. the smallest width and two widths drawn uniformly from [w_min, w_max], each on the view resized (bilinear,
   antialiased) to a resolution drawn from `resolutions`, loss = KL(softmax(full logits, detached) || softmax(sub));
3. gradients of all four accumulate (one backward each, so only one graph is alive) and ONE optimizer step follows.

BatchNorm is shared. Its running statistics follow the full network only (sub-network passes run with BN momentum
0: they normalize with their batch statistics and leave the running ones alone), so the per-epoch test accuracy is
the full network's on full resolution (EPOCH records: member_acc has one entry, lambda_cot is 0). After training,
for each (width, resolution) of the evaluation grid (widths from w_min to w_max in steps of `width_step`, times every
resolution), BN statistics are recalibrated on `bn_calib_samples` un-augmented training samples (exact mean over the
batches) and the sub-network is evaluated: test accuracy, executed parameters, MACs (torch FlopCounterMode / 2,
batch 1, on the sliced network at that resolution) and batch-1 latency. Widths whose channel counts round to the same
network are evaluated once. The FINAL record (measured on the full network) holds them as `subnets`, the rows that
`harness.store` writes to the subnets table (results/README.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness import measure
from harness.data import TrialData
from harness.kinds.base import Setup, TrialKind, register_kind
from harness.networks import build_members, derived_seed, evaluate, make_optimizer
from harness.views import resize
from spaces.families.slimmable import (
    active_channels,
    bn_momentum,
    executed_params,
    make_slimmable,
    reset_bn_stats,
    restore_bn_momentum,
    set_width,
)


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


def evaluate_subnets(
    model: nn.Module, data: TrialData, recipe: dict, measure_cfg: dict, seed: int, device: torch.device, amp
) -> list[dict]:
    """Return one subnets row per (width, resolution) of the evaluation grid, BN recalibrated for each: width_mult,
    resolution (px), test_acc (fraction), params (executed), macs and flops_torch (per sample), latency_ms_p50/p90
    (ms, batch 1), bn_calib_samples. The model's own BN statistics and full width are restored afterwards."""
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
                acc = measure.subnet_accuracy(model, data, side, bs, device, amp)
                sample = torch.zeros(1, data.in_chans, side, side, device=device)
                flops, _ = measure.torch_flops([model], sample)
                p50, p90 = measure.batch1_latency_ms(
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
                    "macs": None if flops is None else flops // 2,
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


class MutualKind(TrialKind):
    """One slimmable network trained by the sandwich rule; its sub-networks are evaluated after training."""

    def __init__(self, setup: Setup):
        super().__init__(setup)
        (self.model,) = build_members({**setup.design, "members": 1}, setup.seed, setup.device, channels_last=False)
        make_slimmable(self.model)
        self.models = [self.model]
        self.optimizer = make_optimizer(self.models, setup.recipe)

    def train_batch(self, inputs, y, scale) -> torch.Tensor:
        """The sandwich rule on one batch; the objective is the full-width CE plus the three sub-networks' KL."""
        model, recipe, gen, amp = self.model, self.setup.recipe, self.setup.gen, self.setup.amp
        w_min, w_max = (float(w) for w in recipe["widths"])
        resolutions = [int(r) for r in recipe["resolutions"]]
        x = inputs[0]
        set_width(model, w_max)
        with amp:
            full = model(x)
        loss = F.cross_entropy(full.float(), y, label_smoothing=recipe["label_smoothing"])
        scale(loss).backward()
        total = loss.detach()
        teacher = F.softmax(full.detach().float(), dim=1)  # in-place distillation: the full network teaches
        saved = bn_momentum(model, 0.0)  # sub-networks leave the running statistics to the full network
        for width in sandwich_widths(w_min, w_max, gen):
            side = resolutions[int(torch.randint(len(resolutions), (1,), generator=gen, device=gen.device))]
            set_width(model, width)
            with amp:
                sub = model(resize(x, side))
            kl = F.kl_div(F.log_softmax(sub.float(), dim=1), teacher, reduction="batchmean")
            scale(kl).backward()
            total = total + kl.detach()
        restore_bn_momentum(model, saved)
        set_width(model, w_max)
        return total

    def evaluate(self) -> tuple[float, list[float], float]:
        s = self.setup
        bs = s.recipe["eval_batch_size"]
        return evaluate(self.models, s.data, "logits", bs, s.device, s.amp, torch.contiguous_format)

    def final_fields(self, status: str) -> dict:
        s = self.setup
        if status != "ok":
            return {"subnets": []}
        measure_cfg = s.config["measure"]
        return {"subnets": evaluate_subnets(self.model, s.data, s.recipe, measure_cfg, s.seed, s.device, s.amp)}


register_kind("mutual", MutualKind)
