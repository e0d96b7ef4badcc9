"""ImageNet ResNet-style families built with torchvision's own constructor (`torchvision.models.resnet.ResNet`).

Both use torchvision's `Bottleneck` blocks, stages of [3, 4, 6, 3] (depth 50), [3, 4, 23, 3] (101) or [3, 8, 36, 3]
(152) blocks, a 7x7 stride-2 stem and 224x224 inputs with 1000 classes, so their parameter counts equal torchvision's
`resnet50`, `wide_resnet50_2` and `resnext101_64x4d` exactly. When `in_chans != 3` the stem convolution is replaced
by one with `in_chans` input channels (He-normal initialised like torchvision's).

- `resnet_imagenet`: width = `width_per_group`, the bottleneck width of the first stage (64 = ResNet, 128 =
  WRN-50-2, 192 = WRN-50-3). Division rule: `width_per_group / sqrt(S)` rounded to the nearest even integer
  (`round_to_even`): 64 -> 46 (S=2) -> 32 (S=4); 128 -> 90 (S=2) -> 64 (S=4).
- `resnext_imagenet`: width = `groups` (cardinality), option `width_per_group` (channels per group, default 4;
  ResNeXt-101 64x4d = groups 64, width_per_group 4). Division rule: `max(groups // S, 1)`, channels per group
  unchanged: 64x4d -> 32x4d (S=2) -> 16x4d (S=4).
"""

from __future__ import annotations

import math

from torch import nn

from spaces.families import register_family
from spaces.families.base import Family, round_to_even

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _resnet(depth: int, num_classes: int, in_chans: int, groups: int, width_per_group: int) -> nn.Module:
    # Imported here: torchvision costs every trial process over a second to import, and only these families need it.
    from torchvision.models.resnet import Bottleneck, ResNet

    model = ResNet(
        Bottleneck, list(STAGE_BLOCKS[depth]), num_classes=num_classes, groups=groups, width_per_group=width_per_group
    )
    if in_chans != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def build_resnet_imagenet(depth: int, width: int, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return torchvision's bottleneck ResNet-depth with `width_per_group = width` (64 = ResNet, 128 = WRN-x-2)."""
    return _resnet(depth, num_classes, in_chans, groups=1, width_per_group=width)


def build_resnext_imagenet(
    depth: int, width: int, num_classes: int = 1000, in_chans: int = 3, width_per_group: int = 4
) -> nn.Module:
    """Return torchvision's ResNeXt-depth (width)x(width_per_group)d: `width` groups of `width_per_group`."""
    return _resnet(depth, num_classes, in_chans, groups=width, width_per_group=width_per_group)


def divide_width_per_group(width: int, splits: int) -> int:
    """Return the member width_per_group (an even int >= 2) when an ImageNet ResNet is divided into `splits`."""
    return round_to_even(width / math.sqrt(splits))


def divide_groups(width: int, splits: int) -> int:
    """Return the member cardinality (an int >= 1) when an ImageNet ResNeXt is divided into `splits` networks."""
    return max(width // splits, 1)


register_family(
    Family(
        name="resnet_imagenet",
        builder=build_resnet_imagenet,
        width_knob="width_per_group",
        default_depth=50,
        default_width=64,
        divide_width=divide_width_per_group,
        depths=tuple(STAGE_BLOCKS),
        min_width=2,
        num_classes=1000,
        options={},
        regularization=(),
        # ImageNet ResNet / Wide ResNet (torchvision Bottleneck; width = width_per_group)
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
