"""What a model family declares: its builder, valid depths, width knob, native input, and division rule."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class Family:
    """A CIFAR- or ImageNet-style CNN family that the design space can size.

    `builder(depth, width, num_classes=, in_chans=, **options)` returns an `nn.Module`. `width` is the family's own
    knob (`width_knob` names it: base width, widen factor, growth rate, ...), an integer as the papers use it; a
    family with `real_width` also builds real-valued widths, rounding each stage's (or dense layer's) channels to
    whole numbers (the spec's `width_granularity = "channel"`). Valid depths are `depth_step * n + depth_offset` for
    n >= 1, unless `depths` lists them explicitly; a family with `stage_blocks_of` and `depth_of_blocks` also builds
    stages of different block counts, given as the builder option `stage_blocks` (`depth_granularity = "block"`),
    and its depth is then `depth_of_blocks(stage_blocks)`, valid or not.
    `divide_width(width, S)` is the family's divide-and-co-train rule (DESIGN section 3); `regularization` names
    the builder options (dropout, ShakeDrop, stochastic-depth probabilities) that are divided by sqrt(S).
    """

    name: str
    builder: Callable[..., nn.Module]
    width_knob: str
    default_depth: int
    default_width: int
    divide_width: Callable[[int, int], int]
    depth_rule: str = ""
    depth_step: int = 0
    depth_offset: int = 0
    depths: tuple[int, ...] = ()
    min_width: int = 1
    num_classes: int = 10
    options: dict = field(default_factory=dict)
    regularization: tuple[str, ...] = ()
    # Builder options whose values are restricted: option -> check(value) returning None or what is allowed.
    option_rules: dict = field(default_factory=dict)
    # Builder options the division sets besides the width knob (e.g. PyramidNet's unrounded alpha): (width, S) -> dict.
    division_options: Callable[[int, int], dict] | None = None
    # Builds real-valued widths (see the family's docstring for how it rounds them to channels).
    real_width: bool = False
    # The builder's parameter count from its arguments without building the model (None: count a model built on the
    # meta device); a test checks that the two agree.
    param_count: Callable[..., int] | None = None
    # A valid depth -> its block count per stage, and block counts per stage -> the network's depth (layers counted
    # as for valid depths); both set when the builder takes `stage_blocks`.
    stage_blocks_of: Callable[[int], tuple[int, ...]] | None = None
    depth_of_blocks: Callable[[tuple[int, ...]], int] | None = None

    def is_valid_depth(self, depth: int) -> bool:
        """Return True when `depth` is one this family can build."""
        if self.depths:
            return depth in self.depths
        n, rem = divmod(depth - self.depth_offset, self.depth_step)
        return rem == 0 and n >= 1

    def valid_depths(self, up_to: int) -> list[int]:
        """Return the valid depths <= `up_to`, ascending."""
        if self.depths:
            return sorted(d for d in self.depths if d <= up_to)
        return list(range(self.depth_step + self.depth_offset, up_to + 1, self.depth_step))

    @property
    def block_depths(self) -> bool:
        """True when the family builds stages of different block counts (builder option `stage_blocks`)."""
        return self.stage_blocks_of is not None and self.depth_of_blocks is not None

    def depth_rule_text(self) -> str:
        """Return the valid-depth rule as text, e.g. '6n+2' or 'one of 50, 101, 152'."""
        if self.depths:
            return "one of " + ", ".join(map(str, sorted(self.depths)))
        return self.depth_rule or f"{self.depth_step}n+{self.depth_offset}"

    def build(self, depth: int, width: float, num_classes: int | None = None, in_chans: int = 3, **options):
        """Return an initialised model (on the current default device) of this family."""
        merged = {**self.options, **options}
        return self.builder(depth, width, num_classes=num_classes or self.num_classes, in_chans=in_chans, **merged)

    def divided_options(self, width: int, splits: int) -> dict:
        """Return the builder options a member of the `splits`-way division of width `width` takes besides its width
        (empty for most families)."""
        return self.division_options(width, splits) if self.division_options else {}

    def divide_regularization(self, options: dict, splits: int) -> dict:
        """Return `options` with every regularization probability divided by sqrt(splits)."""
        merged = {**self.options, **options}
        for key in self.regularization:
            if key in merged and merged[key]:
                merged[key] = merged[key] / math.sqrt(splits)
        return merged


def round_half_up(x: float) -> int:
    """Return x rounded to the nearest integer, halves up (Python's round() takes halves to even)."""
    return math.floor(x + 0.5)


def channels(x: float) -> int:
    """Return the whole channel count (>= 1) of a real-valued width `x`: an integer width is returned as it is."""
    return max(1, round_half_up(x))


def round_to_even(x: float) -> int:
    """Return the even integer nearest to x (at least 2); channel counts stay even after division."""
    return max(2, 2 * round(x / 2))


def init_he_normal(model: nn.Module, zero_linear_bias: bool = True) -> None:
    """Initialise `model` in place as the CIFAR reference codes do: He-normal (fan_out) convolutions, unit-weight
    zero-bias BatchNorm and, optionally, zero classifier bias. Returns nothing."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and zero_linear_bias:
            nn.init.zeros_(m.bias)
