"""The `fixed` trial kind: single networks and deq / weq / dct ensembles (DESIGN section 4).

`members` networks of the design trained together by one optimizer on `sum_i CE + lambda_cot(epoch) * JS`, each on
its own augmented view when `member_views` (dct) or on one shared view, with mixup/cutmix drawn once per batch for
all views. Execution (`recipe.execution`, see `harness.fused`): `sequential` runs the members one after another,
`fused` as one vmapped computation over stacked weights, `auto` the mode measured fastest on the device; the FINAL
record's `execution` is the mode that really ran. `compile` wraps the members' forward in `torch.compile`.

Member schedule (the FINAL record's `member_schedule`): an independent ensemble (recipe `lambda_cot` = 0) in
sequential execution trains **per member** within each batch -- member i's forward, backward and optimizer step, then
member i+1's -- so only one member's activations are alive at a time: the training memory of an ensemble whose k
networks train one at a time, as More-or-Less reports it. Each member's gradient depends only on its own CE, and the
SGD update of a parameter depends only on its own gradient and state, so this is the joint step's mathematics
(`tests/harness/test_member_schedule.py` checks equal weights in float64). A co-trained ensemble (the JS term couples
the members) and fused execution (one vmapped computation) train **joint**: all members forward, one backward, one
step. The mixing draw is the same either way (one per batch, before any member runs).
"""

from __future__ import annotations

import torch

from harness.fused import (
    FusedMembers,
    check_compile_supported,
    compile_args,
    member_forward,
    member_runners,
    resolve_execution,
    uses_cuda_graphs,
)
from harness.kinds.base import Setup, TrialKind, register_kind
from harness.losses import cot_weight, cotraining_loss, cross_entropy
from harness.networks import build_members, evaluate, make_optimizer
from harness.views import apply_mix, draw_mix, soft_targets


class FixedKind(TrialKind):
    """Members trained as an ensemble; EPOCH records hold the ensemble's and every member's accuracy."""

    def __init__(self, setup: Setup):
        super().__init__(setup)
        recipe, design, device = setup.recipe, setup.design, setup.device
        compile_kwargs = compile_args(recipe["compile"], recipe["compile_backend"])
        # .get: configs written before the opt-in key existed lack it (and so did not opt in).
        check_compile_supported(compile_kwargs, device, bool(recipe.get("inductor_cpu", False)))
        # A checkpoint's mode wins over what `auto` would pick now: the optimizer state's layout (per-member or
        # stacked parameters) depends on it.
        self.execution = resolve_execution(recipe["execution"], device, design["members"])
        if setup.checkpoint is not None:
            self.execution = setup.checkpoint.get("execution", "sequential")
        self.channels_last = bool(recipe["channels_last"]) and device.type == "cuda" and self.execution == "sequential"
        self.fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.models = build_members(design, setup.seed, device, self.channels_last)
        # Fused: the members' tensors become views of stacked ones, which the optimizer steps (harness.fused).
        fused = FusedMembers(self.models) if self.execution == "fused" else None
        self.optimizer = make_optimizer(self.models, recipe, fused.params if fused else None)
        self.forward = member_forward(self.models, fused, self.fmt, compile_kwargs)
        self.lambda_cot = 0.0
        self.member_schedule = member_schedule(self.execution, float(recipe["lambda_cot"]))
        if self.member_schedule == "per_member":
            self.runners = member_runners(self.models, compile_kwargs)
            self.graphed = uses_cuda_graphs(compile_kwargs) and device.type == "cuda"

    @classmethod
    def data_views(cls, design: dict, recipe: dict) -> int:
        return int(design["members"]) if recipe["member_views"] else 1

    def views_per_batch(self) -> tuple[int, bool]:
        return len(self.models), bool(self.setup.recipe["member_views"])

    def start_epoch(self, epoch: int) -> float:
        super().start_epoch(epoch)
        recipe = self.setup.recipe
        self.lambda_cot = cot_weight(epoch, recipe["lambda_cot"], recipe["cot_warmup_epochs"], recipe["cot_floor"])
        return self.lambda_cot

    def mixed_batch(self, inputs, y) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return (the members' inputs, targets) after one mixing draw per batch, shared by every member's view."""
        recipe, data, gen = self.setup.recipe, self.setup.data, self.setup.gen
        plan = draw_mix(len(y), *inputs[0].shape[-2:], recipe["mixup_alpha"], recipe["cutmix_alpha"], gen)
        if plan is not None:
            mixed = {id(x): apply_mix(x, plan) for x in inputs}
            inputs = [mixed[id(x)] for x in inputs]
        targets = y if plan is None else soft_targets(y, data.num_classes, plan, recipe["label_smoothing"])
        return inputs, targets

    def train_batch(self, inputs, y, scale) -> torch.Tensor:
        inputs, targets = self.mixed_batch(inputs, y)
        with self.setup.amp:
            logits = self.forward(inputs)
        loss, _ = cotraining_loss(logits, targets, self.lambda_cot, self.setup.recipe["label_smoothing"])
        scale(loss).backward()
        return loss.detach()

    def train_step(self, inputs, y, scale, step) -> torch.Tensor:
        if self.member_schedule == "joint":
            return super().train_step(inputs, y, scale, step)
        inputs, targets = self.mixed_batch(inputs, y)
        total = torch.zeros((), device=self.setup.device)
        for run, x in zip(self.runners, inputs, strict=True):
            if self.graphed:
                torch.compiler.cudagraph_mark_step_begin()
            with self.setup.amp:
                logits = run(x.contiguous(memory_format=self.fmt))
            loss = cross_entropy(logits, targets, self.setup.recipe["label_smoothing"])
            scale(loss).backward()  # frees this member's activations before the next member runs
            step()
            total += loss.detach()
        return total

    def evaluate(self) -> tuple[float, list[float], float]:
        s = self.setup
        bs = s.recipe["eval_batch_size"]
        return evaluate(self.models, s.data, s.recipe["combine"], bs, s.device, s.amp, self.fmt, self.forward)


def member_schedule(execution: str, lambda_cot: float) -> str:
    """Return how the members of a fixed design train within a batch: "per_member" (one at a time: forward, backward,
    step) for an independent ensemble in sequential execution, else "joint" (co-training or fused)."""
    return "per_member" if execution == "sequential" and lambda_cot == 0 else "joint"


register_kind("fixed", FixedKind)
