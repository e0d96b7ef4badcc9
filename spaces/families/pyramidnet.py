"""PyramidNet (Han et al. 2017) with bottleneck blocks and ShakeDrop (Yamada et al. 2019), for CIFAR-sized inputs.

A 3x3 stem of 16 channels (BN after it), then 3n bottleneck blocks (n = (depth - 2) / 9) whose inner width grows by
alpha / 3n per block (alpha = additive widening rate, the family's width knob; block i = 1..3n has inner width
round(16 + alpha * i / 3n) and output width 4x that), with strides 2 at the first block of stages two and three;
then BN-ReLU, global average pool and a linear classifier. A block is BN-conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-
conv1x1-BN, multiplied by ShakeDrop; the shortcut is identity, 2x2 average pooling where the block strides, and
zero-padding of the missing channels. PyramidNet-272 (alpha=200) has 26.21M parameters on CIFAR-10; the paper's
26.0M counts convolution and linear weights only (26.00M here without the BN affine parameters).

ShakeDrop: block l of L draws, per image, b ~ Bernoulli(1 - p_l) with p_l = shakedrop_p * l / L (linear increase to
the final probability `shakedrop_p`, 0.5 in the paper), alpha ~ U[-1, 1] and beta ~ U[0, 1]; the branch is scaled
by b + (1 - b) * alpha forward and its gradient by b + (1 - b) * beta backward; in evaluation by its expected value
1 - p_l. Setting shakedrop_p = 0 turns ShakeDrop off.

Division rule (Divide-and-Co-train): the additive rate becomes alpha / sqrt(S), unrounded, as in the reference code
(`addrate = alpha / (3n sqrt(S))`): the member's width knob shows `round(alpha / sqrt(S))` and its builder option
`exact_alpha` carries the unrounded rate the model is built with. PyramidNet-272 (alpha 200) at S=2 is then 28.87M
parameters in total on CIFAR-100 (DCT Table 2); rounding alpha to 141 gave 28.72M. The base channel count (16) is not
divided. ShakeDrop's `shakedrop_p` is regularization, divided by sqrt(S).

Granularity: only the integer alpha and valid depths; the spec refuses `width_granularity = "channel"` and
`depth_granularity = "block"` for PyramidNet (its widths already grow block by block).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from spaces.families import register_family
from spaces.families.base import Family, init_he_normal

BASE_CHANNELS = 16
EXPANSION = 4


class ShakeDropFunction(torch.autograd.Function):
    """Scale x by `forward_scale` and its gradient by `backward_scale` (both broadcastable to x)."""

    # forward/setup_context apart, and only torch ops inside, so that torch.func.vmap can batch it (fused members).
    generate_vmap_rule = True

    @staticmethod
    def forward(x, forward_scale, backward_scale):
        return x * forward_scale

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[2])

    @staticmethod
    def backward(ctx, grad_output):
        (backward_scale,) = ctx.saved_tensors
        return grad_output * backward_scale, None, None


class ShakeDrop(nn.Module):
    """ShakeDrop with drop probability `p_drop` (per image); returns x scaled as described in the module doc."""

    def __init__(self, p_drop: float):
        super().__init__()
        self.p_drop = p_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p_drop <= 0:
            return x
        if not self.training:
            return x * (1.0 - self.p_drop)
        # Plain tensor ops (no bernoulli_/item) so the layer also runs on the meta device.
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        gate = (torch.rand(shape, device=x.device, dtype=x.dtype) >= self.p_drop).to(x.dtype)
        alpha = torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1
        beta = torch.rand(shape, device=x.device, dtype=x.dtype)
        return ShakeDropFunction.apply(x, gate + (1 - gate) * alpha, gate + (1 - gate) * beta)

    def extra_repr(self) -> str:
        return f"p_drop={self.p_drop:.4f}"


class PyramidBottleneck(nn.Module):
    """Pyramidal bottleneck block with ShakeDrop on the residual branch and a zero-padded shortcut."""

    def __init__(self, in_ch: int, planes: int, stride: int, p_drop: float):
        super().__init__()
        out_ch = planes * EXPANSION
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(out_ch)
        self.shake_drop = ShakeDrop(p_drop)
        self.stride = stride
        self.pad_channels = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        out = self.shake_drop(self.bn4(out))
        shortcut = x
        if self.stride != 1:
            shortcut = F.avg_pool2d(shortcut, 2, ceil_mode=True)
        if self.pad_channels > 0:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
        return out + shortcut


class PyramidNet(nn.Module):
    """Bottleneck PyramidNet-depth with additive widening rate `alpha` and ShakeDrop up to `shakedrop_p`."""

    def __init__(
        self, depth: int = 272, alpha: float = 200, num_classes: int = 10, in_chans: int = 3, shakedrop_p: float = 0.5
    ):
        super().__init__()
        n = (depth - 2) // 9
        total = 3 * n
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, BASE_CHANNELS, 3, 1, 1, bias=False), nn.BatchNorm2d(BASE_CHANNELS)
        )
        blocks, in_ch, width = [], BASE_CHANNELS, float(BASE_CHANNELS)
        for i in range(total):
            width += alpha / total
            planes = int(round(width))
            stride = 2 if i in (n, 2 * n) else 1
            blocks.append(PyramidBottleneck(in_ch, planes, stride, shakedrop_p * (i + 1) / total))
            in_ch = planes * EXPANSION
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def divide_alpha(width: int, splits: int) -> int:
    """Return the member's width knob (an int >= 1, alpha / sqrt(S) rounded) when a PyramidNet is divided into
    `splits` networks; the model is built with the unrounded rate (`divided_alpha`)."""
    return max(round(width / math.sqrt(splits)), 1)


def divided_alpha(width: int, splits: int) -> dict:
    """Return the builder options of a divided member: `exact_alpha` = alpha / sqrt(S), unrounded (a float)."""
    return {"exact_alpha": width / math.sqrt(splits)}


def _positive_number(value) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    return None if ok else "must be a number > 0 (the unrounded additive widening rate)"


def build_pyramidnet(
    depth: int,
    width: int,
    num_classes: int = 10,
    in_chans: int = 3,
    shakedrop_p: float = 0.5,
    exact_alpha: float | None = None,
) -> nn.Module:
    """Return a bottleneck PyramidNet-depth with widening rate `width` (or `exact_alpha` when given, unrounded) and
    ShakeDrop final probability `shakedrop_p`."""
    return PyramidNet(depth, width if exact_alpha is None else exact_alpha, num_classes, in_chans, shakedrop_p)


register_family(
    Family(
        name="pyramidnet",
        builder=build_pyramidnet,
        width_knob="alpha",
        default_depth=272,
        default_width=200,
        divide_width=divide_alpha,
        depth_rule="9n+2",
        depth_step=9,
        depth_offset=2,
        min_width=1,
        num_classes=10,
        options={"shakedrop_p": 0.5},
        regularization=("shakedrop_p",),
        option_rules={"exact_alpha": _positive_number},
        division_options=divided_alpha,
        # PyramidNet (bottleneck) + ShakeDrop, CIFAR
    )
)
