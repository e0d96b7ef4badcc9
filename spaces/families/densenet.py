"""DenseNet-BC (Huang et al. 2017) for CIFAR-sized inputs: bottleneck layers and compression 0.5.

A 3x3 stem of 2k channels (k = growth rate, the family's width knob), then three dense blocks of n = (depth - 4) / 6
bottleneck layers each (BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k, output concatenated to the input), separated
by transitions (BN-ReLU-conv1x1 to floor(C / 2), 2x2 average pool), then BN-ReLU, global average pool and a linear
classifier. Dropout (`drop_rate`) follows each convolution inside the dense layers and transitions, as in the
reference Torch code. DenseNet-BC-100 (k=12) has 0.77M parameters, DenseNet-BC-190 (k=40) 25.6M (CIFAR-10;
25.8M on CIFAR-100).

Options for the model the More-or-Less code trained (its DenseNet): `stem_channels` fixes the stem width (24 there;
default 2k) and `compression` sets the transitions' kept share (1.0 there: transitions keep every channel, i.e.
DenseNet-B; default 0.5, DenseNet-BC). Both keep the (depth - 4) // 6 bottleneck layers per block and 4k bottlenecks.

Division rule (Divide-and-Co-train): the growth rate becomes `int(k / sqrt(S) * 2) // 2` (exactly the reference
code's integer expression, floored at 1), and the stem width 2 * k*; so k = 40 divides into 28 (S=2) and 20 (S=4).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from spaces.families import register_family
from spaces.families.base import Family, init_he_normal

BOTTLENECK_FACTOR = 4  # the 1x1 convolution widens to 4k channels (the paper's "B")
COMPRESSION = 0.5  # transitions keep half the channels (the paper's "C")


class DenseLayer(nn.Module):
    """Bottleneck dense layer: returns the input concatenated with `growth` new feature maps."""

    def __init__(self, in_ch: int, growth: int, drop_rate: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, BOTTLENECK_FACTOR * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(BOTTLENECK_FACTOR * growth)
        self.conv2 = nn.Conv2d(BOTTLENECK_FACTOR * growth, growth, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(F.relu(self.bn2(out)))
        out = F.dropout(out, p=self.drop_rate, training=self.training)
        return torch.cat((x, out), 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 (compression) then 2x2 average pooling."""

    def __init__(self, in_ch: int, out_ch: int, drop_rate: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.dropout(self.conv(F.relu(self.bn(x))), p=self.drop_rate, training=self.training)
        return F.avg_pool2d(out, 2)


class DenseNetBC(nn.Module):
    """DenseNet-BC-depth with growth rate `growth`: stem, three dense blocks with two transitions, classifier."""

    def __init__(
        self,
        depth: int = 100,
        growth: int = 12,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        stem_channels: int | None = None,
        compression: float = COMPRESSION,
    ):
        super().__init__()
        n = (depth - 4) // 6
        channels = stem_channels or 2 * growth
        self.stem = nn.Conv2d(in_chans, channels, 3, 1, 1, bias=False)
        stages = []
        for block in range(3):
            for _ in range(n):
                stages.append(DenseLayer(channels, growth, drop_rate))
                channels += growth
            if block < 2:
                out_ch = int(math.floor(channels * compression))
                stages.append(Transition(channels, out_ch, drop_rate))
                channels = out_ch
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.features(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def divide_growth_rate(width: int, splits: int) -> int:
    """Return the member growth rate (an int >= 1) when a DenseNet-BC is divided into `splits` networks."""
    return max(int(width / math.sqrt(splits) * 2) // 2, 1)


def build_densenet_bc(
    depth: int,
    width: int,
    num_classes: int = 10,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    stem_channels: int | None = None,
    compression: float = COMPRESSION,
) -> nn.Module:
    """Return a DenseNet-BC-depth with growth rate `width` for CIFAR-sized inputs (stem of `stem_channels`, default
    2 x growth; transitions keep `compression` of their channels, 1.0 = DenseNet-B)."""
    return DenseNetBC(depth, width, num_classes, in_chans, drop_rate, stem_channels, compression)


def _stem_rule(value) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "must be an integer >= 1 (stem channels; leave it out for 2 x growth rate)"


def _compression_rule(value) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1
    return None if ok else "must be a number in (0, 1] (share of channels a transition keeps; 1.0 = DenseNet-B)"


register_family(
    Family(
        name="densenet_bc",
        builder=build_densenet_bc,
        width_knob="growth_rate",
        default_depth=190,
        default_width=40,
        divide_width=divide_growth_rate,
        depth_rule="6n+4",
        depth_step=6,
        depth_offset=4,
        min_width=1,
        num_classes=10,
        options={"drop_rate": 0.0},
        regularization=("drop_rate",),
        # stem_channels and compression are not listed in options, so designs that leave them keep their trial ids.
        option_rules={"stem_channels": _stem_rule, "compression": _compression_rule},
        # DenseNet-BC (bottleneck, compression 0.5), CIFAR
    )
)
