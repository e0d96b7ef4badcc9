"""ResNeXt for CIFAR (Xie et al. 2017): ResNeXt-29 C x Wd, bottleneck blocks with grouped 3x3 convolutions.

A 3x3 stem of 64 channels, then three stages of n = (depth - 2) / 9 bottleneck blocks with output widths 256, 512,
1024 at strides 1, 2, 2, then global average pool and a linear classifier. In stage s (0, 1, 2) a block's inner width
is D = C * W * 2^s (C = cardinality, the family's width knob; W = `base_width`, the bottleneck width per group in the
first stage): conv1x1 to D, grouped conv3x3 (C groups, stride), conv1x1 to the stage width, each followed by BN,
ReLU after the first two and after the sum. Where the shape changes, the shortcut is a 1x1 projection with BN.
ResNeXt-29 8x64d (C=8, W=64) has 34.4M parameters, 16x64d 68.1M (CIFAR-10).

Division rule (Divide-and-Co-train): the cardinality becomes `max(floor(C / S), 1)` and the channels per group are
unchanged, so 8x64d divides into 4x64d (S=2) and 2x64d (S=4).

Granularity: only the integer cardinality and valid depths; the spec refuses `width_granularity = "channel"` and
`depth_granularity = "block"` for ResNeXt.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from spaces.families import register_family
from spaces.families.base import Family, init_he_normal

STEM_WIDTH = 64
STAGE_WIDTHS = (256, 512, 1024)


class ResNeXtBlock(nn.Module):
    """Bottleneck block with a grouped 3x3 convolution of `cardinality` groups of `group_width` channels."""

    def __init__(self, in_ch: int, out_ch: int, cardinality: int, group_width: int, stride: int):
        super().__init__()
        inner = cardinality * group_width
        self.conv1 = nn.Conv2d(in_ch, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class CifarResNeXt(nn.Module):
    """ResNeXt-depth (cardinality x base_width d) for CIFAR-sized inputs."""

    def __init__(
        self, depth: int = 29, cardinality: int = 8, base_width: int = 64, num_classes: int = 10, in_chans: int = 3
    ):
        super().__init__()
        n = (depth - 2) // 9
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, STEM_WIDTH, 3, 1, 1, bias=False), nn.BatchNorm2d(STEM_WIDTH), nn.ReLU(inplace=True)
        )
        blocks, in_ch = [], STEM_WIDTH
        for stage, out_ch in enumerate(STAGE_WIDTHS):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(ResNeXtBlock(in_ch, out_ch, cardinality, base_width * 2**stage, stride))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_ch, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def divide_cardinality(width: int, splits: int) -> int:
    """Return the member cardinality (an int >= 1) when a ResNeXt is divided into `splits` networks."""
    return max(width // splits, 1)


def build_resnext29(
    depth: int, width: int, num_classes: int = 10, in_chans: int = 3, base_width: int = 64
) -> nn.Module:
    """Return a CIFAR ResNeXt-depth with cardinality `width` and `base_width` channels per group."""
    return CifarResNeXt(depth, width, base_width, num_classes, in_chans)


register_family(
    Family(
        name="resnext29",
        builder=build_resnext29,
        width_knob="cardinality",
        default_depth=29,
        default_width=8,
        divide_width=divide_cardinality,
        depth_rule="9n+2",
        depth_step=9,
        depth_offset=2,
        min_width=1,
        num_classes=10,
        options={"base_width": 64},
        regularization=(),
        # ResNeXt (grouped-conv bottleneck blocks), CIFAR; 29 = 3 blocks per stage
    )
)
