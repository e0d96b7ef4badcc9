"""Trials that span devices (DESIGN section 8): one trial on N Ray Train workers, data-parallel or members-parallel.

A trial whose `resources.workers` is N >= 2 (N = `resources.gpus` on GPUs) runs `harness.loop.run_trial` in each of N
Ray Train workers (`train_worker`), one device each; `Workers` is what a worker knows of its group (mode, rank, world
size, device) and the collectives the loop and the fixed trial kind use:

- `parallel = "data"`: every worker holds every member, wrapped in DistributedDataParallel. The recipe's
  `batch_size` is the GLOBAL batch: every worker draws the same shuffled order, views and mixing from the trial's
  generator (the same seed) and trains on its contiguous share of the batch (`shard`); its loss is weighted by its
  share, so DDP's gradient average is the gradient of the global batch's mean loss. With `recipe.sync_bn` the
  BatchNorm statistics are those of the global batch (`convert_sync_bn`: torch's SyncBatchNorm on CUDA,
  `GlobalBatchNorm` over gloo on a CPU, where torch's refuses CPU tensors), and a step equals the one-device step.
- `parallel = "members"`: each worker holds an equal, contiguous share of the members (`own_members`), with its own
  optimizer; no gradient is all-reduced. Every worker draws all members' views (the same generator) and keeps its own,
  so each member sees the view it would see on one device. Co-training members exchange only their logits
  (`gather_logits`: the others' detached, the local ones with their gradient), so each member's gradient is the joint
  step's: the JS term depends on another member's logits only as a constant for this member's weights.

Rank 0 writes the checkpoint (the whole trial's state, gathered: `gather_objects`) and, in the sweep, the rows; every
rank reports each epoch and the FINAL record (Ray Train needs the same number of reports from every rank).
The epoch time is the slowest worker's (`slowest`), peak memory the largest of any worker. Launching the workers
(Ray Train) is `harness.parallel_trial`'s.
"""

from __future__ import annotations

import fcntl
import statistics
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness import measure
from harness.losses import ensemble_log_probs


@dataclass
class Workers:
    """The worker group of one parallel trial, as seen by one worker: `mode` ("data" or "members"), this worker's
    `rank` in 0..`world`-1, its `device`, and `group`, a process group of its own for the collectives the training
    math makes (BatchNorm statistics, logits), apart from the one DDP's gradient buckets use."""

    mode: str
    rank: int
    world: int
    device: torch.device
    group: object = None

    @classmethod
    def join(cls, mode: str, device: torch.device) -> Workers:
        """Return this process's Workers in the default process group (Ray Train initialised it), with a second group
        over the same ranks for the math's collectives. Every rank must call it."""
        world = dist.get_world_size()
        return cls(mode, dist.get_rank(), world, device, dist.new_group(list(range(world))))

    @property
    def lead(self) -> bool:
        """True on rank 0, the worker that writes checkpoints and rows and whose records are the trial's."""
        return self.rank == 0

    def own_members(self, members: int) -> list[int]:
        """Return the member indices this worker trains (all of them in data-parallel)."""
        if self.mode != "members":
            return list(range(members))
        share = members // self.world
        return list(range(self.rank * share, (self.rank + 1) * share))

    def shard(self, n: int) -> slice:
        """Return this worker's contiguous share of a global batch of `n` samples (the first n % world workers take
        one more, as `torch.tensor_split`)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def all_reduce(self, value: float, op=dist.ReduceOp.SUM) -> float:
        """Return `value` reduced over the workers (sum by default)."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t, op=op, group=self.group)
        return float(t)

    def slowest(self, seconds: float) -> float:
        """Return the largest of the workers' `seconds` (the epoch's wall time is the slowest worker's)."""
        return self.all_reduce(seconds, dist.ReduceOp.MAX)

    def epoch_loss(self, local: float) -> float:
        """Return the trial's mean training loss of an epoch from this worker's: in data-parallel each worker's loss
        is its share of the batch weighted up by the world size (see `shard_batch`), in members-parallel each holds
        its members' CE plus 1/world of the co-training term; so the sum over workers is the objective (divided by
        the world size in data-parallel)."""
        total = self.all_reduce(local)
        return total / self.world if self.mode == "data" else total

    def gather_objects(self, obj) -> list:
        """Return every worker's `obj` (picklable), in rank order, on every worker."""
        out = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def gather_logits(self, own: list[torch.Tensor]) -> list[torch.Tensor]:
        """Return all members' logits in member order: the other workers' detached, this worker's own (with their
        gradient) in place; `own` are this worker's members' logits (same shape on every worker)."""
        local = torch.stack([z.detach() for z in own]).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local, group=self.group)
        every = [z for part in parts for z in part.unbind(0)]
        first = self.rank * len(own)
        every[first : first + len(own)] = own
        return every

    def _comm_device(self) -> torch.device:
        # NCCL reduces CUDA tensors; gloo CPU ones.
        return self.device if dist.get_backend(self.group) == "nccl" else torch.device("cpu")


class JointTrainingShare(measure.TrainingShare):
    """The node's measurement lock (`harness.measure.TrainingShare`) taken by every worker of a parallel trial
    together: `with share:` around one batch returns once every worker holds its share, none having waited on the
    lock. Each worker tries without waiting; the workers agree (an all-reduce, MIN over "got it"); when any could not
    (a measurement is pending or running on the node), all let go and try again a little later.

    Waiting on the lock as a one-device trial does would deadlock: a worker inside the batch holds its share while it
    waits in the batch's collectives (DDP's gradient all-reduce, the BatchNorm statistics, the logits exchange) for a
    worker that waits on the lock behind a measurement, and the measurement waits for that share to go."""

    RETRY_S, RETRY_MAX_S = 0.01, 0.2  # our choice: the first retry soon, then back off while a measurement runs

    def __init__(self, workers: Workers, path: str = measure.LOCK_FILE):
        super().__init__(path)
        self.workers = workers

    def __enter__(self):
        wait = self.RETRY_S
        while True:
            got = self._try_share()
            if self.workers.all_reduce(float(got), dist.ReduceOp.MIN) == 1.0:
                return self
            if got:
                fcntl.flock(self.running, fcntl.LOCK_UN)
            time.sleep(wait)
            wait = min(2 * wait, self.RETRY_MAX_S)

    def _try_share(self) -> bool:
        try:
            fcntl.flock(self.intent, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free: no measurement pending
        except BlockingIOError:
            return False
        fcntl.flock(self.intent, fcntl.LOCK_UN)
        try:
            fcntl.flock(self.running, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def shard_batch(workers: Workers, inputs: list[torch.Tensor], targets: torch.Tensor):
    """Return (this worker's share of each member input, of the targets, its loss weight): the weight local_n * world
    / n makes DDP's average of the workers' gradients the gradient of the global batch's mean loss, also when the
    batch does not split evenly."""
    n = len(targets)
    part = workers.shard(n)
    local = targets[part]
    return [x[part] for x in inputs], local, len(local) * workers.world / n


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over a process group; the gradient of the sum is the sum of the gradients (all-reduced too)."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over a process group, computed with two
    differentiable all-reduces (per-channel sums, then sums of squared deviations from the global mean), so it runs on
    gloo and CPU tensors, where torch's SyncBatchNorm refuses. In eval mode it is plain BatchNorm; its state dict is
    BatchNorm's. Running statistics as torch's: the unbiased variance, momentum or a cumulative average."""

    def __init__(self, *args, group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group = group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_full((1,), x.numel() / x.size(1))
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]), self.group)
        n = sums[-1]
        mean = sums[:-1] / n
        centered = x - mean.view(shape)
        var = _AllReduceSum.apply((centered * centered).sum(dims), self.group) / n
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var.detach() * (n / (n - 1)) if float(n) > 1 else var.detach()
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return y


def convert_sync_bn(model: nn.Module, workers: Workers) -> nn.Module:
    """Return `model` with every BatchNorm layer synchronised over the workers: torch's SyncBatchNorm on CUDA, else
    `GlobalBatchNorm` (same parameters and buffers, so checkpoints load either way)."""
    if workers.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model, workers.group)
    return _to_global_bn(model, workers.group)


def _to_global_bn(module: nn.Module, group) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        like = next(module.parameters(), None)
        like = like if like is not None else module.running_mean
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, group=group, device=like.device,
                              dtype=like.dtype)  # fmt: skip
        out.load_state_dict(module.state_dict())
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, _to_global_bn(child, group))
    return module


def wrap_data_parallel(models: list[nn.Module], workers: Workers, sync_bn: bool) -> tuple[list[nn.Module], list]:
    """Return (the members, BatchNorm synchronised when `sync_bn`; each wrapped in DistributedDataParallel): the first
    own the weights (optimizer, checkpoint, measurement), the second run the training forward."""
    if sync_bn:
        models = [convert_sync_bn(m, workers) for m in models]
    ids = [workers.device.index] if workers.device.type == "cuda" else None
    # broadcast_buffers: BatchNorm running statistics follow rank 0's without sync_bn (DDP's default behaviour).
    wrapped = [nn.parallel.DistributedDataParallel(m, device_ids=ids) for m in models]
    return models, wrapped


@torch.no_grad()
def concurrent_inference(workers: Workers, models: list[nn.Module], shape: tuple[int, int, int], warmup: int,
                         runs: int, throughput_batch: int, combine: str, amp) -> dict:  # fmt: skip
    """Return the members-parallel ensemble's inference timings with every worker running its members at once
    (DCT's "concurrent running", its Figure 3): from an input of `shape` (C, H, W) present on every worker to the
    combined prediction (`combine`) on every worker, the logits exchanged between them. Every worker calls it; the
    workers start each run together (a barrier) and rank 0's clock is read. Returns latency_concurrent_ms_p50 and
    _p90 (batch 1, `runs` timed runs after `warmup`) and throughput_concurrent_sps (samples/s at
    `throughput_batch`, from the median of a few runs)."""
    for model in models:
        model.eval()

    def timed(batch: int, n_warmup: int, n_runs: int) -> list[float]:
        x = torch.randn(batch, *shape, device=workers.device)
        times = []
        for i in range(n_warmup + n_runs):
            dist.barrier(group=workers.group)
            measure.sync(workers.device)
            start = time.perf_counter()
            with amp:
                own = [model(x) for model in models]
            ensemble_log_probs(workers.gather_logits(own), combine).argmax(1)
            measure.sync(workers.device)
            if i >= n_warmup:
                times.append((time.perf_counter() - start) * 1000.0)
        return times

    batch1 = timed(1, warmup, runs)
    big = timed(throughput_batch, min(warmup, 2), max(3, min(runs, 10)))  # as the sequential throughput
    return concurrent_figures(batch1, big, throughput_batch)


def concurrent_figures(batch1_ms: list[float], big_ms: list[float], throughput_batch: int) -> dict:
    """Return the concurrent-inference columns from the timed runs (ms each): latency_concurrent_ms_p50 (the median
    of `batch1_ms`), latency_concurrent_ms_p90 (`harness.measure.quantile`, the p90 of the sequential and fused
    columns) and throughput_concurrent_sps (samples/s: `throughput_batch` over the median of `big_ms`)."""
    return {
        "latency_concurrent_ms_p50": statistics.median(batch1_ms),
        "latency_concurrent_ms_p90": measure.quantile(sorted(batch1_ms), 0.9),
        "throughput_concurrent_sps": throughput_batch / (statistics.median(big_ms) / 1000.0),
    }


def to_cpu(obj):
    """Return a state dict (nested dicts, lists and tuples of tensors) with every tensor on the CPU (to gather it
    between workers)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
