"""Wide ResNet (Zagoruyko & Komodakis 2016) for CIFAR-sized inputs: WRN-d-k.

A 3x3 stem of 16 channels, then three stages of n = (d - 4) / 6 pre-activation wide basic blocks of widths 16k, 32k,
64k at strides 1, 2, 2, then BN-ReLU, global average pool and a linear classifier. A block is
BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3; where the shape changes, a 1x1 projection shortcut takes the block's
pre-activated input. Dropout (`drop_rate`) sits between the two convolutions, as in the paper. The widen factor k is
the family's width knob. WRN-28-10 has 36.48M parameters on CIFAR-10 (36.54M on CIFAR-100).

Division rule (Divide-and-Co-train): the widen factor becomes `max(floor(k / sqrt(S) + 0.4), 1)`, so WRN-28-10
divides into WRN-28-7 (S=2) and WRN-28-5 (S=4); the stage widths stay 16k*, 32k*, 64k*.

Granularity (spec keys `width_granularity`, `depth_granularity`):
- "channel": the widen factor k is a real number; stage s has round(16 * 2**s * k) channels (halves up) and the stem
  keeps 16 (k = 1.98: 32, 63 and 127 channels).
- "block": the three stages may hold different numbers of blocks (n1, n2, n3), builder option `stage_blocks`; the
  depth is 2 (n1 + n2 + n3) + 4, counted as for 6n+4.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from spaces.families import register_family
from spaces.families.base import Family, channels, init_he_normal


class WideBasicBlock(nn.Module):
    """Pre-activation wide basic block with dropout between its two 3x3 convolutions."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, drop_rate: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        # The projection shortcut sees the pre-activated input (the reference WRN code does this).
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = F.relu(self.bn2(self.conv1(pre)))
        out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + residual


STEM = 16  # stem channels, whatever the widen factor


def wrn_plan(depth: int, widen_factor: float,
             stage_blocks: tuple[int, ...] | None = None) -> list[tuple[int, int, int]]:  # fmt: skip
    """Return the wide basic blocks in order as (input channels, output channels, stride): three stages of
    (depth - 4) / 6 blocks unless `stage_blocks` gives each stage's count. The builder and the parameter count both
    follow it."""
    stage_blocks = tuple(stage_blocks or ((depth - 4) // 6,) * 3)
    widths = [channels(base * widen_factor) for base in (16, 32, 64)]
    plan, in_ch = [], STEM
    for stage, (width, n) in enumerate(zip(widths, stage_blocks, strict=True)):
        for i in range(n):
            plan.append((in_ch, width, 2 if stage > 0 and i == 0 else 1))
            in_ch = width
    return plan


def count_wrn(depth: int, width: float, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0,
              stage_blocks: tuple[int, ...] | None = None) -> int:  # fmt: skip
    """Return the parameter count of `build_wrn` with the same arguments, without building it (a design search counts
    thousands of members; a test checks it against built models)."""
    total = in_chans * STEM * 9
    plan = wrn_plan(depth, width, stage_blocks)
    for c_in, c_out, stride in plan:  # BN, 3x3, BN, 3x3, and a 1x1 projection where the shape changes
        total += 2 * c_in + c_in * c_out * 9 + 2 * c_out + c_out * c_out * 9
        if stride != 1 or c_in != c_out:
            total += c_in * c_out
    final = plan[-1][1]
    return total + 2 * final + final * num_classes + num_classes


class WideResNet(nn.Module):
    """WRN-depth-widen_factor: stem, three stages of wide basic blocks, BN-ReLU, pool, linear classifier."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: float = 10,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        stage_blocks: tuple[int, ...] | None = None,
    ):
        super().__init__()
        plan = wrn_plan(depth, widen_factor, stage_blocks)
        self.stem = nn.Conv2d(in_chans, STEM, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(*(WideBasicBlock(c_in, c_out, stride, drop_rate) for c_in, c_out, stride in plan))
        in_ch = plan[-1][1]
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def divide_widen_factor(width: float, splits: int) -> int:
    """Return the member widen factor (an int >= 1) when a WRN is divided into `splits` networks."""
    return max(math.floor(width / math.sqrt(splits) + 0.4), 1)


def build_wrn(
    depth: int,
    width: float,
    num_classes: int = 10,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    stage_blocks: tuple[int, ...] | None = None,
) -> nn.Module:
    """Return a WRN-depth-width (width = widen factor k) for CIFAR-sized inputs, with `stage_blocks` blocks per stage
    when given (else (depth - 4) / 6 each)."""
    return WideResNet(depth, width, num_classes, in_chans, drop_rate=drop_rate, stage_blocks=stage_blocks)


register_family(
    Family(
        name="wrn",
        builder=build_wrn,
        width_knob="widen_factor",
        default_depth=28,
        default_width=10,
        divide_width=divide_widen_factor,
        depth_rule="6n+4",
        depth_step=6,
        depth_offset=4,
        min_width=1,
        num_classes=10,
        options={"drop_rate": 0.0},
        regularization=("drop_rate",),
        real_width=True,
        param_count=count_wrn,
        stage_blocks_of=lambda depth: ((depth - 4) // 6,) * 3,
        depth_of_blocks=lambda blocks: 2 * sum(blocks) + 4,
        # Wide ResNet (pre-activation wide basic blocks), CIFAR
    )
)
