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

On several workers (`setup.workers`, `harness.parallel`): data-parallel wraps every member in DDP (BatchNorm
synchronised with `sync_bn`) and trains each worker's share of the global batch; members-parallel builds this worker's
share of the members only, keeps their views, and adds the JS term over all members' gathered logits.
"""

from __future__ import annotations

import math

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
from harness.losses import cot_weight, cotraining_loss, cross_entropy, js_divergence
from harness.networks import build_members, evaluate, make_optimizer
from harness.parallel import concurrent_inference, shard_batch, to_cpu, wrap_data_parallel
from harness.views import apply_mix, draw_mix, soft_targets


class FixedKind(TrialKind):
    """Members trained as an ensemble; EPOCH records hold the ensemble's and every member's accuracy."""

    def __init__(self, setup: Setup):
        super().__init__(setup)
        recipe, design, device = setup.recipe, setup.design, setup.device
        compile_kwargs = compile_args(recipe["compile"], recipe["compile_backend"])
        # .get: configs written before the opt-in key existed lack it (and so did not opt in).
        check_compile_supported(compile_kwargs, device, bool(recipe.get("inductor_cpu", False)))
        # A parallel trial runs its members sequentially (the spec refuses fused): `auto` means sequential there.
        self.workers = workers = setup.workers
        self.execution = resolve_execution(recipe["execution"] if workers is None else "sequential", device,
                                           design["members"])  # fmt: skip
        # A checkpoint's mode wins over what `auto` would pick now: the optimizer state's layout (per-member or
        # stacked parameters) depends on it.
        if setup.checkpoint is not None:
            self.execution = setup.checkpoint.get("execution", "sequential")
        self.channels_last = bool(recipe["channels_last"]) and device.type == "cuda" and self.execution == "sequential"
        self.fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        # Members-parallel: this worker's share of the members (each seeded by its index in the design).
        self.own = workers.own_members(design["members"]) if workers is not None else None
        self.models = build_members(design, setup.seed, device, self.channels_last, self.own)
        runs = self.models  # the modules that run the training forward
        if workers is not None and workers.mode == "data":
            self.models, runs = wrap_data_parallel(self.models, workers, bool(recipe.get("sync_bn", False)))
        # Fused: the members' tensors become views of stacked ones, which the optimizer steps (harness.fused).
        fused = FusedMembers(self.models) if self.execution == "fused" else None
        self.optimizer = make_optimizer(self.models, recipe, fused.params if fused else None)
        self.forward = member_forward(runs, fused, self.fmt, compile_kwargs)
        self.lambda_cot = 0.0
        self.member_schedule = member_schedule(self.execution, float(recipe["lambda_cot"]))
        if self.member_schedule == "per_member":
            self.runners = member_runners(runs, compile_kwargs)
            self.graphed = uses_cuda_graphs(compile_kwargs) and device.type == "cuda"

    @classmethod
    def data_views(cls, design: dict, recipe: dict) -> int:
        return int(design["members"]) if recipe["member_views"] else 1

    def views_per_batch(self) -> tuple[int, bool]:
        # Every worker of a members-parallel trial draws all members' views and keeps its own (`local_batch`).
        return int(self.setup.design["members"]), bool(self.setup.recipe["member_views"])

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

    def local_batch(self, inputs, targets) -> tuple[list[torch.Tensor], torch.Tensor, float]:
        """Return (this worker's member inputs, its targets, its loss weight) of a mixed batch: all of it on one device;
        its share of the global batch in data-parallel (`harness.parallel.shard_batch`); its members' views in
        members-parallel."""
        w = self.workers
        if w is None:
            return inputs, targets, 1.0
        if w.mode == "data":
            return shard_batch(w, inputs, targets)
        return [inputs[i] for i in self.own], targets, 1.0

    def train_batch(self, inputs, y, scale) -> torch.Tensor:
        inputs, targets = self.mixed_batch(inputs, y)
        inputs, targets, weight = self.local_batch(inputs, targets)
        smoothing = self.setup.recipe["label_smoothing"]
        with self.setup.amp:
            logits = self.forward(inputs)
        if self.workers is not None and self.workers.mode == "members":
            # This worker's CEs plus the JS term over every member's logits (the others' as constants): the gradient
            # of its members' weights is the joint objective's. The record holds 1/world of the JS term per worker.
            ce = sum(cross_entropy(z, targets, smoothing) for z in logits)
            if self.lambda_cot == 0:
                scale(ce).backward()
                return ce.detach()
            js = js_divergence(self.workers.gather_logits(logits))
            scale(ce + self.lambda_cot * js).backward()
            return (ce + self.lambda_cot * js / self.workers.world).detach()
        loss, _ = cotraining_loss(logits, targets, self.lambda_cot, smoothing)
        scale(loss * weight).backward()
        return (loss * weight).detach()

    def train_step(self, inputs, y, scale, step) -> torch.Tensor:
        if self.member_schedule == "joint":
            return super().train_step(inputs, y, scale, step)
        inputs, targets = self.mixed_batch(inputs, y)
        inputs, targets, weight = self.local_batch(inputs, targets)
        total = torch.zeros((), device=self.setup.device)
        for run, x in zip(self.runners, inputs, strict=True):
            if self.graphed:
                torch.compiler.cudagraph_mark_step_begin()
            with self.setup.amp:
                logits = run(x.contiguous(memory_format=self.fmt))
            loss = cross_entropy(logits, targets, self.setup.recipe["label_smoothing"]) * weight
            scale(loss).backward()  # frees this member's activations before the next member runs
            step()
            total += loss.detach()
        return total

    def evaluate(self) -> tuple[float, list[float], float]:
        s, w = self.setup, self.workers
        bs = s.recipe["eval_batch_size"]
        if w is None:
            return evaluate(self.models, s.data, s.recipe["combine"], bs, s.device, s.amp, self.fmt, self.forward)
        if w.mode == "data":  # every worker holds every member: rank 0 evaluates (its records are the trial's)
            if not w.lead:
                return math.nan, [math.nan] * len(self.models), math.nan
            return evaluate(self.models, s.data, s.recipe["combine"], bs, s.device, s.amp, self.fmt)
        own = member_forward(self.models, None, self.fmt)

        def every_member(inputs):  # this worker's members on the test batch, then all members' logits
            return w.gather_logits(own(inputs))

        return evaluate(self.models, s.data, s.recipe["combine"], bs, s.device, s.amp, self.fmt, every_member)

    def measure_on_workers(self) -> dict:
        w, s = self.workers, self.setup
        if w is None or w.mode != "members":
            return {}
        measure_cfg, data = s.config["measure"], s.data
        return concurrent_inference(w, self.models, (data.in_chans, data.image_size, data.image_size),
                                    int(measure_cfg["latency_warmup"]), int(measure_cfg["latency_runs"]),
                                    int(measure_cfg["throughput_batch"]), s.recipe["combine"], s.amp)  # fmt: skip

    def networks_to_measure(self) -> list:
        w = self.workers
        if w is None or w.mode == "data":
            return self.models
        # Members-parallel: rank 0 measures the whole ensemble (params, FLOPs, latency), so it gathers the members.
        states = [s for part in w.gather_objects([to_cpu(m.state_dict()) for m in self.models]) for s in part]
        if not w.lead:
            return self.models
        every = build_members(self.setup.design, self.setup.seed, self.setup.device, self.channels_last)
        for model, state in zip(every, states, strict=True):
            model.load_state_dict(state)
        return every


def member_schedule(execution: str, lambda_cot: float) -> str:
    """Return how the members of a fixed design train within a batch: "per_member" (one at a time: forward, backward,
    step) for an independent ensemble in sequential execution, else "joint" (co-training or fused)."""
    return "per_member" if execution == "sequential" and lambda_cot == 0 else "joint"


register_kind("fixed", FixedKind)
