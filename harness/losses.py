"""The co-training objective and the ensemble combiners.

Objective (DESIGN section 4): `sum_i CE(p_i, y) + lambda_cot(epoch) * JS(p_1..p_k)` with
`JS = H(mean_i p_i) - mean_i H(p_i)` (entropies in nats; JS is 0 for k = 1 and whenever all members agree).
Targets are int labels, or probabilities when mixup/cutmix mixes them (smoothed one-hot, then mixed).
The JS term is computed in float32 even under autocast: it is a small difference of two entropies. Losses are computed
in float32 or in the logits' own precision when it is higher (float64 in the tests that compare two ways of training).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spaces.spec import RECIPE_KEYS

COMBINERS = RECIPE_KEYS["combine"].allowed  # the spec's allowed values of recipe.combine


def _wide(z: torch.Tensor) -> torch.Tensor:
    """Return `z` in float32, or as it is when it is float64."""
    return z if z.dtype == torch.float64 else z.float()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Return the batch-mean cross-entropy (nats) of logits (N, C) against int labels (N,) -- smoothed by
    `label_smoothing` -- or against target probabilities (N, C) (already smoothed and mixed)."""
    if targets.dtype == torch.long:
        return F.cross_entropy(_wide(logits), targets, label_smoothing=label_smoothing)
    return -(targets * F.log_softmax(_wide(logits), dim=1)).sum(1).mean()


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Return the per-row entropy (nats) of probabilities p (N, C); 0 * log 0 counts as 0."""
    return -(torch.special.xlogy(p, p)).sum(1)


def js_divergence(logits: list[torch.Tensor]) -> torch.Tensor:
    """Return the batch-mean generalized Jensen-Shannon divergence (nats) of the members' softmax outputs:
    H(mean_i p_i) - mean_i H(p_i). A scalar tensor, 0 for a single member."""
    if len(logits) < 2:
        return logits[0].new_zeros((), dtype=torch.float32)
    probs = torch.stack([F.softmax(_wide(z), dim=1) for z in logits])  # (k, N, C)
    return (entropy(probs.mean(0)) - entropy(probs.flatten(0, 1)).view(len(logits), -1).mean(0)).mean()


def cotraining_loss(
    logits: list[torch.Tensor], targets: torch.Tensor, lambda_cot: float, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (total, js): total = sum over members of CE + lambda_cot * JS, both scalar tensors in nats.

    `targets` are int labels or target probabilities (see `cross_entropy`).

    With lambda_cot == 0 the JS term is not computed, so members' gradients are exactly independent.
    """
    ce = sum(cross_entropy(z, targets, label_smoothing) for z in logits)
    if lambda_cot == 0 or len(logits) < 2:
        return ce, ce.new_zeros(())
    js = js_divergence(logits)
    return ce + lambda_cot * js, js


def leader_loss(
    leader_logits: torch.Tensor,
    teammate_logits: list[torch.Tensor],
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Return the cooperative leader objective (nats, a scalar tensor), Eq. 18 of the cooperative-learning paper:
    CE(leader, y) + sum_i KL(softmax(leader.detach()) || softmax(teammate_i)).

    The leader "only learns the knowledge from the true labels": its output enters the KL terms detached, as the
    target, so its gradient is that of CE alone; the full-depth teammates (`teammate_logits`) are the students that
    the KL terms pull toward the leader. KL is batch-mean, computed in float32.
    """
    target = F.softmax(leader_logits.detach().float(), dim=1)
    loss = cross_entropy(leader_logits, targets, label_smoothing)
    for logits in teammate_logits:
        loss = loss + F.kl_div(F.log_softmax(logits.float(), dim=1), target, reduction="batchmean")
    return loss


def cot_weight(epoch: int, lambda_cot: float, warmup_epochs: int, floor: float) -> float:
    """Return lambda_cot for 0-based `epoch`: a linear warm-up stepped per epoch, epoch / warmup_epochs * lambda_cot,
    never below `floor` during the warm-up (only when lambda_cot > 0), then lambda_cot.

    Stepped per epoch (not per iteration) so that the value an EPOCH record reports is the one every step used.
    """
    if lambda_cot <= 0:
        return 0.0
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return float(lambda_cot)
    return max(float(floor), lambda_cot * epoch / warmup_epochs)


def ensemble_log_probs(logits: list[torch.Tensor], how: str = "logits") -> torch.Tensor:
    """Return the ensemble's log-probabilities (N, C), float32, from member logits by the combiner `how`.

    logits: softmax of the mean logits (the default; DCT's rule). softmax: mean of member probabilities.
    geometric: normalized geometric mean of member probabilities (softmax of mean log-probabilities).
    max: per-class maximum of member probabilities, renormalized. The argmax is the ensemble's prediction and the
    NLL of these log-probabilities is the test loss.
    """
    z = torch.stack([x.float() for x in logits])  # (k, N, C)
    if how == "logits":
        return F.log_softmax(z.mean(0), dim=1)
    if how == "geometric":
        return F.log_softmax(F.log_softmax(z, dim=2).mean(0), dim=1)
    if how == "softmax":
        return torch.log(F.softmax(z, dim=2).mean(0).clamp_min(1e-30))
    if how == "max":
        p = F.softmax(z, dim=2).amax(0)
        return torch.log((p / p.sum(1, keepdim=True)).clamp_min(1e-30))
    raise ValueError(f"unknown combiner {how!r}; allowed: {', '.join(COMBINERS)}")
