"""Shake-Shake regularized ResNets (Gastaldi 2017) for CIFAR-sized inputs: Shake-Shake-depth 2 x Nd.

A 3x3 stem of 16 channels with BN, then three stages of n = (depth - 2) / 6 blocks of widths N, 2N, 4N (N = base
channels, the family's width knob; 96 for 2x96d) at strides 1, 2, 2, then ReLU, global average pool and a linear
classifier. A block has two residual branches ReLU-conv3x3(stride)-BN-ReLU-conv3x3-BN mixed by Shake-Shake; where
the shape changes, the shortcut is ReLU then two strided 1x1-convolution paths (the second shifted by one pixel)
concatenated and batch-normalized. Shake-Shake-26 2x96d has 26.2M parameters (CIFAR-10).

Shake-Shake ("Shake-Shake-Image"): per image, the forward pass mixes the branches as a * b1 + (1 - a) * b2 with
a ~ U[0, 1], the backward pass splits the gradient with an independent b ~ U[0, 1] (b * g and (1 - b) * g); in
evaluation the mix is the expected value 0.5 * (b1 + b2).

Division rule (Divide-and-Co-train): N becomes N / sqrt(S) floored to a multiple of 16, which reproduces the
reference table 96 -> 64 (S=2) -> 48 (S=4) (and 32 for S=8, 16 for S=16). Below 16 channels the floor is to an even
count instead (at least 2), so small digits-sized networks still divide.

Granularity: only the integer base width and valid depths; the spec refuses `width_granularity = "channel"` and
`depth_granularity = "block"` for Shake-Shake.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from spaces.families import register_family
from spaces.families.base import Family, init_he_normal

STEM_WIDTH = 16


class ShakeShakeFunction(torch.autograd.Function):
    """Mix two tensors with weights (a, 1 - a) forward and split the gradient with (b, 1 - b) backward."""

    # forward/setup_context apart, and only torch ops inside, so that torch.func.vmap can batch it (fused members).
    generate_vmap_rule = True

    @staticmethod
    def forward(x1, x2, alpha, beta):
        return alpha * x1 + (1 - alpha) * x2

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[3])

    @staticmethod
    def backward(ctx, grad_output):
        (beta,) = ctx.saved_tensors
        return beta * grad_output, (1 - beta) * grad_output, None, None


def shake_shake(x1: torch.Tensor, x2: torch.Tensor, training: bool) -> torch.Tensor:
    """Return the Shake-Shake mix of two branch outputs (random per image in training, their mean otherwise)."""
    if not training:
        return 0.5 * (x1 + x2)
    shape = (x1.shape[0],) + (1,) * (x1.dim() - 1)
    alpha = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    beta = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    return ShakeShakeFunction.apply(x1, x2, alpha, beta)


def _branch(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(inplace=False),  # not in place: the block input also feeds the shortcut
        nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
        nn.BatchNorm2d(out_ch),
    )


class SkipConnection(nn.Module):
    """Gastaldi's shortcut: ReLU, two strided 1x1-conv paths (one shifted by a pixel), concatenated, BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_ch, out_ch // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_ch, out_ch - out_ch // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        y1 = self.conv1(F.avg_pool2d(x, 1, self.stride))
        # The second path sees the input shifted by one pixel, so the two paths sample different positions.
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y2 = self.conv2(F.avg_pool2d(shifted, 1, self.stride))
        return self.bn(torch.cat((y1, y2), 1))


class ShakeBlock(nn.Module):
    """Two-branch residual block mixed by Shake-Shake."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.branch1 = _branch(in_ch, out_ch, stride)
        self.branch2 = _branch(in_ch, out_ch, stride)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = SkipConnection(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake_shake(self.branch1(x), self.branch2(x), self.training)


class ShakeShakeResNet(nn.Module):
    """Shake-Shake-depth 2 x (base_channels)d for CIFAR-sized inputs."""

    def __init__(self, depth: int = 26, base_channels: int = 96, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_chans, STEM_WIDTH, 3, 1, 1, bias=False), nn.BatchNorm2d(STEM_WIDTH))
        blocks, in_ch = [], STEM_WIDTH
        for stage in range(3):
            out_ch = base_channels * 2**stage
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(ShakeBlock(in_ch, out_ch, stride))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_ch, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def divide_base_channels(width: int, splits: int) -> int:
    """Return the member base channel count when a Shake-Shake net is divided into `splits` networks."""
    target = width / math.sqrt(splits)
    if target >= 16:
        return 16 * math.floor(target / 16)
    return max(2, 2 * math.floor(target / 2))


def build_shake_shake(depth: int, width: int, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """Return a Shake-Shake-depth 2 x (width)d ResNet for CIFAR-sized inputs."""
    return ShakeShakeResNet(depth, width, num_classes, in_chans)


register_family(
    Family(
        name="shake_shake",
        builder=build_shake_shake,
        width_knob="base_channels",
        default_depth=26,
        default_width=96,
        divide_width=divide_base_channels,
        depth_rule="6n+2",
        depth_step=6,
        depth_offset=2,
        min_width=2,
        num_classes=10,
        options={},
        regularization=(),
        # Shake-Shake 2 x Nd (two residual branches, Shake-Shake-Image), CIFAR
    )
)
