"""Model families: one file per family, a registry, and one factory (`create_model`), in the style of timm."""

from __future__ import annotations

from torch import nn

from spaces.families.base import Family

_REGISTRY: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family to the registry and return it; a duplicate name is a programming error."""
    if family.name in _REGISTRY:
        raise ValueError(f"family {family.name!r} is registered twice")
    _REGISTRY[family.name] = family
    return family


def get_family(name: str) -> Family:
    """Return the registered family called `name`; raises KeyError naming the known families."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(list_families())}") from None


def list_families() -> list[str]:
    """Return the names of all registered families, sorted."""
    return sorted(_REGISTRY)


def create_model(
    name: str, depth: int, width: float, num_classes: int | None = None, in_chans: int = 3, **options
) -> nn.Module:
    """Return a new model of family `name` at (depth, width), built on the current default device.

    With the option `stage_blocks` (block counts per stage), `depth` must be the depth those blocks make."""
    family = get_family(name)
    if options.get("stage_blocks") is not None:
        if not family.block_depths:
            raise ValueError(f"family {name!r} builds only its valid depths ({family.depth_rule_text()}), "
                             "not stage_blocks")  # fmt: skip
        blocks = tuple(options["stage_blocks"])
        if family.depth_of_blocks(blocks) != depth:
            raise ValueError(f"stage_blocks {list(blocks)} make depth {family.depth_of_blocks(blocks)}, not {depth}")
    elif not family.is_valid_depth(depth):
        raise ValueError(f"depth {depth} is not valid for family {name!r} (valid: {family.depth_rule_text()})")
    if width != int(width) and not family.real_width:
        raise ValueError(f"family {name!r} takes an integer {family.width_knob}, not {width}")
    return family.build(depth, width, num_classes=num_classes, in_chans=in_chans, **options)


# Importing the family modules registers them.
from spaces.families import (  # noqa: E402
    cifar_resnet,  # noqa: F401
    densenet,  # noqa: F401
    imagenet,  # noqa: F401
    pyramidnet,  # noqa: F401
    resnext,  # noqa: F401
    shake_shake,  # noqa: F401
    wrn,  # noqa: F401
)
