"""CIFAR ResNet (He et al. 2016) with basic (depth 6n+2) or bottleneck (9n+2) blocks, and SE-ResNet.

Three stages of widths [w, 2w, 4w] (w = base width, 16 in the paper) at strides 1, 2, 2. Where the shape changes the
shortcut is, by the option `shortcut` (He et al. 2016, section 4.2), "B" (default): a 1x1 projection + BN, or "A":
parameter-free, the strided identity with the missing channels zero-padded (what the More-or-Less code used; its
appendix totals 2.24M, 3.28M and 5.03M for ResNet (depth 38, width 32), (26, 48) and (38, 48) are option-A counts).
Bottleneck blocks expand by 4. SE-ResNet adds squeeze-and-excitation with reduction 4 on each residual branch, as the
Divide-and-Co-train reference does on CIFAR (its Table 2: SE-ResNet-110 1.69M, SE-ResNet-164 2.51M on CIFAR-100);
the reduction is not divided.

`resnet_bottleneck_4stage`: the bottleneck ResNet-50/101/152 stage layout of ImageNet ([3, 4, 6, 3], [3, 4, 23, 3],
[3, 8, 36, 3] blocks, planes [w, 2w, 4w, 8w] at strides 1, 2, 2, 2, w = 64) with the CIFAR 3x3 stem (no max-pool):
the ResNet-152 backbone of the cooperative-learning paper on CIFAR (its section 5.1).

Division rule (Divide-and-Co-train): the base width is divided by sqrt(S) and rounded to an even channel count,
which reproduces the reference table 16 -> 12 (S=2) -> 8 (S=4) -> 6 (S=8) -> 4 (S=16).

Granularity (three-stage families; spec keys `width_granularity`, `depth_granularity`):
- "channel": the base width w is a real number; the stem has round(w) channels and stage s round(w * 2**s) planes
  (halves up), so a deq member's three stages each round on their own (w = 5.66: 6, 11 and 23 planes).
- "block": the three stages may hold different numbers of blocks (n1, n2, n3), builder option `stage_blocks`; the
  depth is 2 (n1 + n2 + n3) + 2 with basic and 3 (n1 + n2 + n3) + 2 with bottleneck blocks (stem and classifier
  counted as for 6n+2 / 9n+2). A block of stage s costs about 4**s times one of the first stage.
`resnet_bottleneck_4stage` builds only its integer base width and depths 50, 101, 152 (both options refused).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from spaces.families import register_family
from spaces.families.base import Family, channels, init_he_normal, round_to_even

SE_REDUCTION = 4  # Divide-and-Co-train reference (model/senet.py) on CIFAR
SHORTCUTS = ("A", "B")


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck MLP, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: the input subsampled by `stride`, its channels zero-padded (half before, half after) up to
    `out_ch`. It has no parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


def _shortcut(in_ch: int, out_ch: int, stride: int, kind: str = "B") -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_ch, out_ch, stride)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, se: bool, shortcut: str = "B"):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch) if se else nn.Identity()
        self.shortcut = _shortcut(in_ch, out_ch, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, se: bool, shortcut: str = "B"):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch) if se else nn.Identity()
        self.shortcut = _shortcut(in_ch, out_ch, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return torch.relu(out + self.shortcut(x))


def resnet_plan(block: type[BasicBlock | Bottleneck], depth: int, base_width: float,
                stage_blocks: tuple[int, ...] | None = None) -> tuple[int, list[tuple[int, int, int]]]:  # fmt: skip
    """Return (stem channels, the blocks in order as (input channels, planes, stride)) of a CIFAR ResNet: three stages
    of n blocks (depth 6n+2 / 9n+2) unless `stage_blocks` gives each stage's count. The builder and the parameter
    count both follow it."""
    per_block = 2 if block is BasicBlock else 3
    stage_blocks = tuple(stage_blocks or (((depth - 2) // (3 * per_block),) * 3))
    stem = in_ch = channels(base_width)
    plan = []
    for stage, n in enumerate(stage_blocks):
        planes = channels(base_width * 2**stage)
        for i in range(n):
            plan.append((in_ch, planes, 2 if stage > 0 and i == 0 else 1))
            in_ch = planes * block.expansion
    return stem, plan


def count_cifar_resnet(block: type[BasicBlock | Bottleneck], depth: int, base_width: float, num_classes: int = 10,
                       in_chans: int = 3, se: bool = False, shortcut: str = "B",
                       stage_blocks: tuple[int, ...] | None = None) -> int:  # fmt: skip
    """Return the parameter count of `CifarResNet` with the same arguments, without building it (a design search
    counts thousands of members; a test checks it against built models)."""
    stem, plan = resnet_plan(block, depth, base_width, stage_blocks)
    total = in_chans * stem * 9 + 2 * stem
    for in_ch, planes, stride in plan:
        out = planes * block.expansion
        if block is BasicBlock:  # 3x3, BN, 3x3, BN
            total += in_ch * planes * 9 + 2 * planes + planes * out * 9 + 2 * out
        else:  # 1x1, BN, 3x3, BN, 1x1, BN
            total += in_ch * planes + 2 * planes + planes * planes * 9 + 2 * planes + planes * out + 2 * out
        if se:  # two 1x1 convolutions with bias through max(1, out // reduction) channels
            hidden = max(1, out // SE_REDUCTION)
            total += out * hidden + hidden + hidden * out + out
        if (stride != 1 or in_ch != out) and shortcut == "B":  # 1x1 projection + BN; option A has no parameters
            total += in_ch * out + 2 * out
    out = plan[-1][1] * block.expansion
    return total + out * num_classes + num_classes


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3x3 stem, three stages, global average pool, linear classifier."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depth: int,
        base_width: float = 16,
        num_classes: int = 10,
        in_chans: int = 3,
        se: bool = False,
        drop_rate: float = 0.0,
        shortcut: str = "B",
        stage_blocks: tuple[int, ...] | None = None,
    ):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut {shortcut!r}: allowed {', '.join(SHORTCUTS)}")
        stem, plan = resnet_plan(block, depth, base_width, stage_blocks)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        layers = [block(in_ch, planes, stride, se, shortcut) for in_ch, planes, stride in plan]
        in_ch = plan[-1][1] * block.expansion
        self.layers = nn.Sequential(*layers)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_he_normal(self, zero_linear_bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(self.dropout(torch.flatten(x.mean((2, 3), keepdim=True), 1)))


def divide_base_width(width: float, splits: int) -> int:
    """Return the member base width when a CIFAR ResNet is divided into `splits` networks."""
    return round_to_even(width / math.sqrt(splits))


def _shortcut_rule(value) -> str | None:
    return None if value in SHORTCUTS else 'must be "A" (parameter-free, zero-padded) or "B" (1x1 projection)'


def _builder(block, se):
    def build(depth, width, num_classes=10, in_chans=3, drop_rate=0.0, shortcut="B", stage_blocks=None):
        return CifarResNet(block, depth, width, num_classes, in_chans, se=se, drop_rate=drop_rate, shortcut=shortcut,
                           stage_blocks=stage_blocks)  # fmt: skip

    return build


def _counter(block, se):
    def count(depth, width, num_classes=10, in_chans=3, drop_rate=0.0, shortcut="B", stage_blocks=None):
        return count_cifar_resnet(block, depth, width, num_classes, in_chans, se=se, shortcut=shortcut,
                                  stage_blocks=stage_blocks)  # fmt: skip

    return count


def _three_stage_blocks(per_block: int):
    """Return (depth -> blocks per stage, blocks per stage -> depth) of a three-stage CIFAR ResNet whose blocks hold
    `per_block` convolutions."""
    return (lambda depth: ((depth - 2) // (3 * per_block),) * 3), (lambda blocks: per_block * sum(blocks) + 2)


FOUR_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def build_resnet_bottleneck_4stage(depth, width, num_classes=10, in_chans=3, drop_rate=0.0, shortcut="B"):
    """Return the four-stage bottleneck ResNet-depth (50, 101, 152) with base width `width` and a CIFAR stem."""
    return CifarResNet(
        Bottleneck, depth, width, num_classes, in_chans, drop_rate=drop_rate, shortcut=shortcut,
        stage_blocks=FOUR_STAGE_BLOCKS[depth],
    )  # fmt: skip


register_family(
    Family(
        name="resnet_bottleneck_4stage",
        builder=build_resnet_bottleneck_4stage,
        width_knob="base_width",
        default_depth=152,
        default_width=64,
        divide_width=divide_base_width,
        depths=tuple(FOUR_STAGE_BLOCKS),
        min_width=2,
        num_classes=10,
        options={"drop_rate": 0.0},
        regularization=("drop_rate",),
        option_rules={"shortcut": _shortcut_rule},
        # CIFAR-stem bottleneck ResNet-50/101/152 with ImageNet's four stages (coop's ResNet-152)
    )
)

for _name, _block, _se, _step, _depth in (
    ("resnet", BasicBlock, False, 6, 110),
    ("resnet_bottleneck", Bottleneck, False, 9, 164),
    ("se_resnet", BasicBlock, True, 6, 110),
    ("se_resnet_bottleneck", Bottleneck, True, 9, 164),
):
    _blocks_of, _depth_of = _three_stage_blocks(_step // 3)
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
            # shortcut ("B" unless set) is not listed here, so designs that leave it keep their trial ids.
            options={"drop_rate": 0.0},
            regularization=("drop_rate",),
            option_rules={"shortcut": _shortcut_rule},
            real_width=True,
            param_count=_counter(_block, _se),
            stage_blocks_of=_blocks_of,
            depth_of_blocks=_depth_of,
            # CIFAR ResNet or SE-ResNet, basic or bottleneck blocks
        )
    )
