"""Depth-adaptive sub-networks of a CIFAR ResNet: a learned global block mask (cooperative training, class `coop`).

A sub-network with scaling factor s runs the stem, the head and k = max(1, round(s * n)) of the n *skippable*
residual blocks: the k with the largest mask logits (hard top-k at inference; Gumbel top-k with a straight-through
estimator in training, `gumbel_topk_mask`). The other blocks are skipped.

Skipping rule: a block is skippable when its shortcut is the identity (input and output shapes equal). A skipped
block passes its input through unchanged, which is exactly what its identity shortcut would carry. Blocks whose
shortcut is a projection (the first block of a stage that changes stride or channels, and the first bottleneck block)
always run: skipping them would change the tensor's shape. So k counts skippable blocks only.

Forward with a mask m (one value per skippable block): block i computes x + m_i * (f_i(x) - x). In training m is the
straight-through mask (hard 0/1 forward, soft gradient), so every block runs and the mask logits get a gradient. At
inference (`hard=True`) a block with m_i = 0 is not computed at all, so what is timed and counted is the executed
sub-network. `truncated_copy` builds the equivalent plain network with only the selected blocks (weights copied).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from spaces.families.cifar_resnet import CifarResNet

# Families built as `CifarResNet` (blocks in `model.layers`, identity or projection shortcuts).
DEPTH_MASKABLE_FAMILIES = (
    "resnet", "resnet_bottleneck", "se_resnet", "se_resnet_bottleneck", "resnet_bottleneck_4stage",
)  # fmt: skip


def skippable_blocks(model: nn.Module) -> list[int]:
    """Return the indices (in `model.layers`) of the blocks with an identity shortcut, in order."""
    if not isinstance(model, CifarResNet):
        raise TypeError(f"depth masks need a CIFAR ResNet (families {', '.join(DEPTH_MASKABLE_FAMILIES)})")
    return [i for i, block in enumerate(model.layers) if isinstance(block.shortcut, nn.Identity)]


def keep_count(scale: float, n_skippable: int) -> int:
    """Return k = max(1, round(scale * n_skippable)), the skippable blocks a sub-network of `scale` runs (0 if none)."""
    if n_skippable == 0:
        return 0
    return min(n_skippable, max(1, round(scale * n_skippable)))


def hard_topk_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Return the 0/1 float mask of the k largest logits (ties to the earlier block)."""
    order = torch.sort(logits.detach(), descending=True, stable=True).indices
    mask = torch.zeros_like(logits.detach())
    mask[order[:k]] = 1.0
    return mask


def gumbel_topk_mask(logits: torch.Tensor, k: int, tau: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Return a straight-through Gumbel top-k mask: its value is the 0/1 top-k of logits + Gumbel noise, its
    gradient that of the soft relaxation k * softmax((logits + noise) / tau) (clipped to 1)."""
    u = torch.rand(logits.shape, generator=gen, device=logits.device).clamp_(1e-10, 1.0 - 1e-10)
    perturbed = logits - torch.log(-torch.log(u))
    soft = (k * torch.softmax(perturbed / tau, dim=0)).clamp(max=1.0)
    hard = hard_topk_mask(perturbed, k)
    return hard + soft - soft.detach()


def masked_forward(model: CifarResNet, x: torch.Tensor, mask: torch.Tensor | None, hard: bool = False) -> torch.Tensor:
    """Return the logits of `model` on `x` with the skippable blocks weighted by `mask` (None: the full network).

    `hard=True` (inference) skips the blocks whose mask is 0 without computing them; otherwise every block runs and
    contributes x + m * (f(x) - x), so a straight-through mask carries gradient to its logits.
    """
    h = model.stem(x)
    slot = {b: j for j, b in enumerate(skippable_blocks(model))} if mask is not None else {}
    for i, block in enumerate(model.layers):
        j = slot.get(i)
        if j is None:
            h = block(h)
        elif hard:
            if float(mask[j]) > 0.5:
                h = block(h)
        else:
            m = mask[j].to(h.dtype)
            h = h + m * (block(h) - h)
    return model.fc(model.dropout(torch.flatten(h.mean((2, 3), keepdim=True), 1)))


class DepthMaskedNet(nn.Module):
    """A CIFAR ResNet with one learnable logit per skippable block; `forward` runs the sub-network of `scale`."""

    def __init__(self, model: CifarResNet):
        super().__init__()
        self.net = model
        self.blocks = skippable_blocks(model)
        # Zero logits: every order is equally likely under Gumbel noise at the start.
        self.mask_logits = nn.Parameter(torch.zeros(len(self.blocks)))
        self.scale = 1.0

    def inference_mask(self, scale: float) -> torch.Tensor:
        """Return the hard 0/1 mask (one entry per skippable block) of the sub-network of `scale`."""
        return hard_topk_mask(self.mask_logits, keep_count(scale, len(self.blocks)))

    def executed_blocks(self, scale: float) -> list[int]:
        """Return the indices in `net.layers` of the blocks the sub-network of `scale` runs at inference."""
        mask = self.inference_mask(scale)
        keep = {b for b, m in zip(self.blocks, mask.tolist(), strict=True) if m > 0.5}
        return [i for i in range(len(self.net.layers)) if i not in self.blocks or i in keep]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits of the sub-network at `self.scale` (hard mask; full network at scale 1.0)."""
        if self.scale >= 1.0:
            return self.net(x)
        return masked_forward(self.net, x, self.inference_mask(self.scale), hard=True)


def truncated_copy(masked: DepthMaskedNet, scale: float) -> CifarResNet:
    """Return a plain CIFAR ResNet holding only the blocks the sub-network of `scale` executes (weights copied)."""
    model = copy.deepcopy(masked.net)
    model.layers = nn.Sequential(*[model.layers[i] for i in masked.executed_blocks(scale)])
    return model


def executed_params(masked: DepthMaskedNet, scale: float) -> int:
    """Return the parameters the sub-network of `scale` uses: stem, head and executed blocks (mask logits excluded)."""
    return sum(p.numel() for p in truncated_copy(masked, scale).parameters())
