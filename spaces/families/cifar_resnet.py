"""CIFAR ResNet (He et al. 2016) with basic (depth 6n+2) or bottleneck (9n+2) blocks, and SE-ResNet.

Three stages of widths [w, 2w, 4w] (w = base width, 16 in the paper) at strides 1, 2, 2; projection (1x1 conv + BN)
shortcuts where the shape changes. Bottleneck blocks expand by 4. SE-ResNet adds squeeze-and-excitation
(reduction 16) on each residual branch.

Division rule (Divide-and-Co-train): the base width is divided by sqrt(S) and rounded to an even channel count,
which reproduces the reference table 16 -> 12 (S=2) -> 8 (S=4) -> 6 (S=8) -> 4 (S=16).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spaces.families import register_family
from spaces.families.base import Family, init_he_normal, round_to_even


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck MLP, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, se: bool):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch) if se else nn.Identity()
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, se: bool):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch) if se else nn.Identity()
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3x3 stem, three stages, global average pool, linear classifier."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depth: int,
        base_width: int = 16,
        num_classes: int = 10,
        in_chans: int = 3,
        se: bool = False,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        per_block = 2 if block is BasicBlock else 3
        n = (depth - 2) // (3 * per_block)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, base_width, 3, 1, 1, bias=False), nn.BatchNorm2d(base_width), nn.ReLU(inplace=True)
        )
        layers, in_ch = [], base_width
        for stage, planes in enumerate((base_width, 2 * base_width, 4 * base_width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(block(in_ch, planes, stride, se))
                in_ch = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self, zero_linear_bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(self.dropout(torch.flatten(x.mean((2, 3), keepdim=True), 1)))


def divide_base_width(width: int, splits: int) -> int:
    """Return the member base width when a CIFAR ResNet is divided into `splits` networks."""
    return round_to_even(width / math.sqrt(splits))


def _builder(block, se):
    def build(depth, width, num_classes=10, in_chans=3, drop_rate=0.0):
        return CifarResNet(block, depth, width, num_classes, in_chans, se=se, drop_rate=drop_rate)

    return build


for _name, _block, _se, _step, _depth in (
    ("resnet", BasicBlock, False, 6, 110),
    ("resnet_bottleneck", Bottleneck, False, 9, 164),
    ("se_resnet", BasicBlock, True, 6, 110),
    ("se_resnet_bottleneck", Bottleneck, True, 9, 164),
):
    register_family(
        Family(
            name=_name,
            builder=_builder(_block, _se),
            width_knob="base_width",
            default_depth=_depth,
            default_width=16,
            divide_width=divide_base_width,
            depth_rule=f"{_step}n+2",
            depth_step=_step,
            depth_offset=2,
            min_width=2,
            num_classes=10,
            options={"drop_rate": 0.0},
            regularization=("drop_rate",),
            # CIFAR ResNet or SE-ResNet, basic or bottleneck blocks
        )
    )
