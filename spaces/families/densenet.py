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

Granularity (spec keys `width_granularity`, `depth_granularity`):
- "channel": the growth rate k is a real number; within each dense block the first j layers add round(j * k)
  channels in all (halves up), so layer j grows by round(j * k) - round((j - 1) * k), its bottleneck is 4 times that,
  and the default stem has round(2k) channels (k = 9.5: layers grow by 10, 9, 10, 9, ...).
- "block": the three dense blocks may hold different numbers of layers (n1, n2, n3), builder option `stage_blocks`;
  the depth is 2 (n1 + n2 + n3) + 4, counted as for 6n+4.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from spaces.families import register_family
from spaces.families.base import Family, channels, init_he_normal, round_half_up

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


def dense_plan(
    depth: int,
    growth: float,
    stem_channels: int | None = None,
    compression: float = COMPRESSION,
    stage_blocks: tuple[int, ...] | None = None,
) -> tuple[int, list[tuple[str, int, int]], int]:
    """Return (stem channels, the feature layers in order, channels into the classifier) of a DenseNet-BC: each layer
    is ("dense", input channels, growth) or ("transition", input channels, output channels). The builder and the
    parameter count both follow it."""
    stage_blocks = tuple(stage_blocks or ((depth - 4) // 6,) * 3)
    stem = width = stem_channels or channels(2 * growth)
    plan = []
    for block, n in enumerate(stage_blocks):
        for j in range(n):
            # A real growth rate spreads its rounding over the block's layers (an integer one gives each layer k).
            layer_growth = round_half_up((j + 1) * growth) - round_half_up(j * growth)
            plan.append(("dense", width, layer_growth))
            width += layer_growth
        if block < len(stage_blocks) - 1:
            out_ch = int(math.floor(width * compression))
            plan.append(("transition", width, out_ch))
            width = out_ch
    return stem, plan, width


class DenseNetBC(nn.Module):
    """DenseNet-BC-depth with growth rate `growth`: stem, three dense blocks with two transitions, classifier."""

    def __init__(
        self,
        depth: int = 100,
        growth: float = 12,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        stem_channels: int | None = None,
        compression: float = COMPRESSION,
        stage_blocks: tuple[int, ...] | None = None,
    ):
        super().__init__()
        stem, plan, width = dense_plan(depth, growth, stem_channels, compression, stage_blocks)
        self.stem = nn.Conv2d(in_chans, stem, 3, 1, 1, bias=False)
        layer = {"dense": DenseLayer, "transition": Transition}
        self.features = nn.Sequential(*(layer[kind](c_in, c_out, drop_rate) for kind, c_in, c_out in plan))
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.features(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def divide_growth_rate(width: float, splits: int) -> int:
    """Return the member growth rate (an int >= 1) when a DenseNet-BC is divided into `splits` networks."""
    return max(int(width / math.sqrt(splits) * 2) // 2, 1)


def build_densenet_bc(
    depth: int,
    width: float,
    num_classes: int = 10,
    in_chans: int = 3,
    drop_rate: float = 0.0,
    stem_channels: int | None = None,
    compression: float = COMPRESSION,
    stage_blocks: tuple[int, ...] | None = None,
) -> nn.Module:
    """Return a DenseNet-BC-depth with growth rate `width` for CIFAR-sized inputs (stem of `stem_channels`, default
    2 x growth; transitions keep `compression` of their channels, 1.0 = DenseNet-B; `stage_blocks` layers per dense
    block when given, else (depth - 4) / 6 each)."""
    return DenseNetBC(depth, width, num_classes, in_chans, drop_rate, stem_channels, compression, stage_blocks)


def count_densenet_bc(
    depth: int, width: float, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0, **plan_options
) -> int:
    """Return the parameter count of `build_densenet_bc` with the same arguments, without building it (a design search
    counts thousands of members; a test checks it against built models). `plan_options` are `dense_plan`'s
    (stem_channels, compression, stage_blocks); dropout has no parameters."""
    stem, plan, final = dense_plan(depth, width, **plan_options)
    total = in_chans * stem * 9
    for kind, c_in, c_out in plan:
        if kind == "dense":  # BN, 1x1 to 4k, BN, 3x3 to k
            hidden = BOTTLENECK_FACTOR * c_out
            total += 2 * c_in + c_in * hidden + 2 * hidden + hidden * c_out * 9
        else:  # BN, 1x1
            total += 2 * c_in + c_in * c_out
    return total + 2 * final + final * num_classes + num_classes


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
        real_width=True,
        param_count=count_densenet_bc,
        stage_blocks_of=lambda depth: ((depth - 4) // 6,) * 3,
        depth_of_blocks=lambda blocks: 2 * sum(blocks) + 4,
        # DenseNet-BC (bottleneck, compression 0.5), CIFAR
    )
)
