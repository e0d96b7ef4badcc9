"""Slimmable networks (Yu et al. 2019; MutualNet, Yang et al. 2020): one set of weights, many widths.

A sub-network of width multiplier `w` runs the first `slim_channels(C, w)` channels of every layer of C channels:
`w * C` rounded to the nearest multiple of 8, at least 8 and at most C. The input stem reads every input channel
(a convolution always reads the channels it is given) and the classifier keeps all its outputs (classes). Because
the rule depends only on a layer's full channel count, the layers that a residual sum joins (same C) always keep
the same number of channels.

`make_slimmable(model)` swaps a family's `nn.Conv2d` / `nn.BatchNorm2d` / `nn.Linear` for the slimmable versions
below in place; they hold the very same parameters and buffers, so the state_dict does not change. `set_width` picks
the active width of every layer. BatchNorm is shared by all widths: its batch statistics are those of the running
width, and its running statistics are recalibrated per (width, resolution) after training (MutualNet's post-hoc BN
statistics; `reset_bn_stats` + forward passes in train mode with `momentum=None` give the exact mean over batches).

This lives in `spaces/` because slicing a family's model decides *what* runs; how the shared weights are trained
(the sandwich rule) is the harness's business (`harness/kinds/mutual.py`). Supported families: `SLIMMABLE_FAMILIES`
(their layers are plain convolutions, BN and one linear classifier; grouped convolutions would need other slicing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SLIMMABLE_FAMILIES = ("wrn", "resnet", "resnet_bottleneck")


def slim_channels(channels: int, width_mult: float) -> int:
    """Return the channels (a count) that width multiplier `width_mult` keeps of a layer of `channels` channels:
    width_mult * channels rounded half up to a multiple of 8, at least 8, at most `channels`."""
    return min(channels, max(8, 8 * int(width_mult * channels / 8 + 0.5)))


class _Slim:
    """Mixin: the active width multiplier and the size of the last executed slice (for executed-parameter counts)."""

    width_mult: float = 1.0
    active_params: int = 0


class SlimConv2d(nn.Conv2d, _Slim):
    """Conv2d that reads the channels it is given and writes the first slim_channels(out_channels, w) channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_ch = slim_channels(self.out_channels, self.width_mult)
        weight = self.weight[:out_ch, : x.shape[1]]
        bias = self.bias[:out_ch] if self.bias is not None else None
        self.active_params = weight.numel() + (bias.numel() if bias is not None else 0)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class SlimLinear(nn.Linear, _Slim):
    """Linear classifier that reads the first features it is given and keeps all its outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight[:, : x.shape[1]]
        self.active_params = weight.numel() + (self.bias.numel() if self.bias is not None else 0)
        return F.linear(x, weight, self.bias)


class SlimBatchNorm2d(nn.BatchNorm2d, _Slim):
    """BatchNorm2d over the first channels it is given; its running statistics are the first entries of the shared
    buffers (slices are views, so training updates them in place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            # momentum None: cumulative moving average, i.e. the exact mean over the batches seen since a reset.
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        self.active_params = 2 * c if self.affine else 0
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None and self.track_running_stats else None,
            self.running_var[:c] if self.running_var is not None and self.track_running_stats else None,
            self.weight[:c] if self.affine else None,
            self.bias[:c] if self.affine else None,
            use_batch_stats,
            factor,
            self.eps,
        )


_SWAPS = {nn.Conv2d: SlimConv2d, nn.BatchNorm2d: SlimBatchNorm2d, nn.Linear: SlimLinear}


def make_slimmable(model: nn.Module) -> nn.Module:
    """Return `model` with its Conv2d / BatchNorm2d / Linear layers turned slimmable in place (same parameters and
    buffers, same state_dict keys); the active width starts at 1.0. Raises ValueError for grouped convolutions."""
    for name, module in model.named_modules():
        kind = _SWAPS.get(type(module))
        if kind is None:
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(f"layer {name}: grouped convolutions are not slimmable here")
        module.__class__ = kind  # same object, same tensors: only forward changes
        module.width_mult = 1.0
    return model


def set_width(model: nn.Module, width_mult: float) -> None:
    """Make every slimmable layer of `model` run at `width_mult` (a fraction in (0, 1]). Returns nothing."""
    if not 0 < width_mult <= 1:
        raise ValueError(f"width_mult {width_mult} must be in (0, 1]")
    for module in model.modules():
        if isinstance(module, _Slim):
            module.width_mult = float(width_mult)


def active_channels(model: nn.Module, width_mult: float) -> tuple[int, ...]:
    """Return the channel counts each convolution of `model` writes at `width_mult`, in module order: the identity
    of a sub-network (two multipliers with equal tuples run the same network)."""
    return tuple(slim_channels(m.out_channels, width_mult) for m in model.modules() if isinstance(m, SlimConv2d))


@torch.no_grad()
def executed_params(model: nn.Module, width_mult: float, sample: torch.Tensor) -> int:
    """Return the parameters (a count) that one forward of `sample` at `width_mult` executes; leaves the model at
    `width_mult` and in the train/eval mode it had."""
    set_width(model, width_mult)
    for module in model.modules():
        if isinstance(module, _Slim):
            module.active_params = 0
    was_training = model.training
    model.eval()
    model(sample)
    model.train(was_training)
    return sum(m.active_params for m in model.modules() if isinstance(m, _Slim))


def reset_bn_stats(model: nn.Module) -> None:
    """Zero the running statistics of every BN of `model` and switch them to a cumulative average (momentum None),
    so that the next forward passes in train mode set them to the exact mean over those batches. Returns nothing."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None


def bn_momentum(model: nn.Module, momentum: float | None) -> list[float | None]:
    """Set every BN's momentum to `momentum`; return the previous values (in module order) for `restore_bn_momentum`.
    Momentum 0 freezes the running statistics while batch statistics still normalize."""
    old = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            old.append(module.momentum)
            module.momentum = momentum
    return old


def restore_bn_momentum(model: nn.Module, values: list[float | None]) -> None:
    """Give every BN back the momentum `bn_momentum` returned. Returns nothing."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for module, value in zip(bns, values, strict=True):
        module.momentum = value
