"""ImageNet ResNet-style families on torchvision's `Bottleneck` block, with the stage widths as a knob.

Layout as torchvision's ResNet: a 7x7 stride-2 stem of `base` channels, a 3x3 max-pool, four stages of [3, 4, 6, 3]
(depth 50), [3, 4, 23, 3] (101) or [3, 8, 36, 3] (152) bottleneck blocks with planes base x [1, 2, 4, 8] at strides
1, 2, 2, 2, projection (1x1 conv + BN) shortcuts where the shape changes, global average pool and a linear
classifier; 224x224 inputs and 1000 classes. With base 64 the counts equal torchvision's `resnet50`,
`wide_resnet50_2` and `resnext101_64x4d` exactly (ResNet-50: 25,557,032). When `in_chans != 3` the stem takes
`in_chans` input channels.

Division rules (Divide-and-Co-train, its reference `model/resnet.py`; every stage is divided, not only the
bottleneck width):
- `resnet_imagenet`: width = the base width (`inplanes`, 64 for ResNet-50/101/152). The reference table sets it to
  64 -> 44 (S=2) -> 32 (S=4) -> 24 (S=8); other base widths scale by the same ratios (rounded to even).
- `wrn_imagenet`: width = the widen factor k of WRN-50-k (bottleneck width 64k per group; k = 1 is ResNet-50). The
  CIFAR WRN rule k* = max(floor(k / sqrt(S) + 0.4), 1), base 64 kept: WRN-50-2 at S=2 is two ResNet-50s (paper
  Table 3: 51.4M in total; 51.1M here, the reference's deep 3x3 stem adds 0.13M per member), WRN-50-3 at S=2 is two
  WRN-50-2s.
- `resnext_imagenet`: width = the cardinality (groups), option `width_per_group` (channels per group, default 4;
  ResNeXt-101 64x4d = groups 64, width_per_group 4). Rule: `max(groups // S, 1)`, channels per group and base width
  kept: 64x4d -> 32x4d (S=2) -> 16x4d (S=4).

Granularity: these families build only their integer knob and valid depths (50, 101, 152); the spec refuses
`width_granularity = "channel"` and `depth_granularity = "block"` for them.
"""

from __future__ import annotations

import math

from torch import nn

from spaces.families import register_family
from spaces.families.base import Family, init_he_normal, round_to_even

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BASE_WIDTH = 64
# The reference's divided base widths of ResNet-50/101 (inplanes_dict['imagenet'] in its model/resnet.py).
DIVIDED_BASE_WIDTH = {1: 64, 2: 44, 4: 32, 8: 24}


class ImageNetResNet(nn.Module):
    """torchvision's bottleneck ResNet with stage planes `base` x [1, 2, 4, 8] instead of the fixed 64 x [...]."""

    def __init__(
        self, depth: int, base: int, groups: int, width_per_group: int, num_classes: int = 1000, in_chans: int = 3
    ):
        # Imported here: torchvision costs every trial process over a second to import, and only these families need it.
        from torchvision.models.resnet import Bottleneck, conv1x1

        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = base
        for stage, blocks in enumerate(STAGE_BLOCKS[depth]):
            planes, stride = base * 2**stage, 1 if stage == 0 else 2
            out_ch = planes * Bottleneck.expansion
            layers = []
            for i in range(blocks):
                downsample = None
                if i == 0 and (stride != 1 or in_ch != out_ch):
                    downsample = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
                layers.append(
                    Bottleneck(in_ch, planes, stride if i == 0 else 1, downsample, groups, width_per_group)
                )
                in_ch = out_ch
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_ch, num_classes)
        init_he_normal(self, zero_linear_bias=False)  # torchvision's ResNet init: the classifier keeps its default

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def build_resnet_imagenet(depth: int, width: int, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return ResNet-depth with base width `width` (stem and first-stage planes; 64 = torchvision's ResNet)."""
    return ImageNetResNet(depth, width, 1, BASE_WIDTH, num_classes, in_chans)


def build_wrn_imagenet(depth: int, width: int, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return WRN-depth-`width` (bottleneck width 64 x width; 1 = ResNet-depth, 2 = torchvision wide_resnet50_2)."""
    return ImageNetResNet(depth, BASE_WIDTH, 1, BASE_WIDTH * width, num_classes, in_chans)


def build_resnext_imagenet(
    depth: int, width: int, num_classes: int = 1000, in_chans: int = 3, width_per_group: int = 4
) -> nn.Module:
    """Return ResNeXt-depth (width)x(width_per_group)d: `width` groups of `width_per_group` channels."""
    return ImageNetResNet(depth, BASE_WIDTH, width, width_per_group, num_classes, in_chans)


def divide_base_width(width: int, splits: int) -> int:
    """Return the member base width (an even int >= 2) when an ImageNet ResNet is divided into `splits` networks:
    the reference table for 64 (44 at S=2, 32 at S=4, 24 at S=8), its ratios for other widths, sqrt(S) elsewhere."""
    if splits in DIVIDED_BASE_WIDTH:
        return round_to_even(width * DIVIDED_BASE_WIDTH[splits] / BASE_WIDTH)
    return round_to_even(width / math.sqrt(splits))


def divide_widen_factor(width: int, splits: int) -> int:
    """Return the member widen factor (an int >= 1) of a divided WRN-50-k: max(floor(k / sqrt(S) + 0.4), 1)."""
    return max(math.floor(width / math.sqrt(splits) + 0.4), 1)


def divide_groups(width: int, splits: int) -> int:
    """Return the member cardinality (an int >= 1) when an ImageNet ResNeXt is divided into `splits` networks."""
    return max(width // splits, 1)


register_family(
    Family(
        name="resnet_imagenet",
        builder=build_resnet_imagenet,
        width_knob="base_width",
        default_depth=50,
        default_width=64,
        divide_width=divide_base_width,
        depths=tuple(STAGE_BLOCKS),
        min_width=2,
        num_classes=1000,
        options={},
        regularization=(),
        # ImageNet ResNet (torchvision Bottleneck; width = base width, 64 = ResNet-50/101/152)
    )
)

register_family(
    Family(
        name="wrn_imagenet",
        builder=build_wrn_imagenet,
        width_knob="widen_factor",
        default_depth=50,
        default_width=2,
        divide_width=divide_widen_factor,
        depths=tuple(STAGE_BLOCKS),
        min_width=1,
        num_classes=1000,
        options={},
        regularization=(),
        # ImageNet Wide ResNet WRN-depth-k (torchvision Bottleneck of width 64k; width = k)
    )
)

register_family(
    Family(
        name="resnext_imagenet",
        builder=build_resnext_imagenet,
        width_knob="groups",
        default_depth=101,
        default_width=64,
        divide_width=divide_groups,
        depths=tuple(STAGE_BLOCKS),
        min_width=1,
        num_classes=1000,
        options={"width_per_group": 4},
        regularization=(),
        # ImageNet ResNeXt (torchvision Bottleneck; width = groups, option width_per_group)
    )
)
