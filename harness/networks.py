"""The networks of a trial: built from the design with per-member seeds, one SGD over them, and their evaluation.

Shared by every trial kind (`harness.kinds`): each builds its networks with `build_members`, optimizes them with
`make_optimizer` and measures test accuracy with `evaluate`.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from harness.data import TrialData, test_batches
from harness.fused import member_forward
from harness.losses import ensemble_log_probs
from spaces.families import create_model


def derived_seed(seed: int, *tags: object) -> int:
    """Return a 63-bit seed derived from the trial seed and tags (stable across processes and platforms)."""
    text = ":".join(str(t) for t in (seed, *tags))
    return int(hashlib.sha1(text.encode()).hexdigest()[:15], 16)


def build_members(design: dict, seed: int, device: torch.device, channels_last: bool,
                  indices: list[int] | None = None) -> list[nn.Module]:  # fmt: skip
    """Return the design's `members` models on `device` (only members `indices` when given: a members-parallel
    worker's share), each initialised from its own derived seed (the member's index in the design)."""
    models = []
    for i in range(int(design["members"])) if indices is None else indices:
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


@torch.no_grad()
def evaluate(
    members, data: TrialData, combine: str, batch_size: int, device, amp, fmt, forward=None
) -> tuple[float, list[float], float]:
    """Return (ensemble accuracy, per-member accuracies, ensemble test loss in nats per sample) on the test split;
    the members run through `forward` (`harness.fused.member_forward`) when given, else one after another in memory
    format `fmt`."""
    forward = forward or member_forward(members, None, fmt)
    for model in members:
        model.eval()
    correct = torch.zeros((), device=device)
    member_correct = 0  # one count per member logits `forward` returns (all members, also in members-parallel)
    nll, n = torch.zeros((), device=device), 0
    for x, y in test_batches(data, batch_size, device):
        with amp:
            logits = forward([x] * len(members))
        log_probs = ensemble_log_probs(logits, combine)
        nll += F.nll_loss(log_probs, y, reduction="sum")
        correct += (log_probs.argmax(1) == y).sum()
        member_correct = member_correct + torch.stack([(z.argmax(1) == y).sum() for z in logits]).float()
        n += len(y)
    return float(correct) / n, [float(c) / n for c in member_correct.tolist()], float(nll) / n
