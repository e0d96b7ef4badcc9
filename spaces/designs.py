"""Design points under a parameter budget: single networks and deq / weq / dct ensembles (DESIGN sections 2-3), and
`mutual` (one slimmable MutualNet network at the single network's budget; its sub-networks share its weights) and
`coop` (cooperative depth-adaptive training: two teammates and a leader of the single network's shape).

Budgets are exact parameter counts of instantiated models (see `spaces.counting`). `fit="floor"` takes the largest
member that keeps k members within the budget (the papers' rule); `fit="nearest"` takes the member E whose k copies
come closest to the budget B relative to the ensemble, the smallest |1 - B / (k |E|)| with ties to the smaller member
(what the public More-or-Less code did), so it may exceed the budget.

Granularity: one step of an integer width knob, or of a valid depth, is coarse for small members (4 x WRN-28-1 is
75% under a WRN-28-4's budget, while 4 x WRN-28-2 is 0.4% over). `width_granularity = "channel"` sizes a deq member's
width as a real multiplier of its family's knob (on a grid of 0.01; each stage rounds it to whole channels, see the
family's file), and `depth_granularity = "block"` lets a weq member's stages hold different numbers of blocks. Both
size ensemble members only: a single network keeps the family's knob and valid depths, as the papers train it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from spaces.classes import ENSEMBLE_CLASSES
from spaces.counting import count_params, forward_macs
from spaces.families import get_family

FIT_RULES = ("floor", "nearest")
WIDTH_GRANULARITIES = ("knob", "channel")
DEPTH_GRANULARITIES = ("valid", "block")
# "channel" widths are multiples of 1/REAL_WIDTH_STEPS of the knob: fine enough that every whole-channel count of a
# stage up to 100x the knob is reachable (a stage's channels are the knob times at most 64 here).
REAL_WIDTH_STEPS = 100
# Our choice (the 5% the fairness goal asks of most designs): under both granularities, a weq member that whole blocks
# leave more than this far under its budget takes one more first-stage block at a width trimmed to fit instead.
WEQ_TRIM_BELOW_PCT = 5.0


class BudgetError(ValueError):
    """No valid member of a design class fits the budget."""


@dataclass(frozen=True)
class Shape:
    """The data set facts that change a model's parameter count and cost."""

    num_classes: int
    in_chans: int
    image_size: int


@dataclass(frozen=True)
class DesignPoint:
    """One design: `members` copies of family(depth, width) sized against `budget` parameters.

    `width` is the family's integer knob, or a real width under `width_granularity = "channel"`; a weq member with
    stages of different block counts has them in `family_args["stage_blocks"]` and their real depth in `depth`.

    `params_member` and `params_total` are exact counts; `budget_deviation` is (total - budget) / budget in %;
    `macs` is forward multiply-accumulates per sample, summed over members. `budget_depth`/`budget_width` name the
    single network whose size set the budget (the fitted single network when the budget is explicit).
    """

    design_class: str
    family: str
    depth: int
    width: float
    members: int
    params_member: int
    params_total: int
    budget: int
    budget_deviation: float
    macs: int
    budget_depth: int
    budget_width: int
    fit: str
    num_classes: int
    in_chans: int
    image_size: int
    family_args: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Return the design as a plain JSON-able dict."""
        return asdict(self)


def _params(family: str, depth: int, width: int, shape: Shape, options: dict) -> int:
    return count_params(family, depth, width, shape.num_classes, shape.in_chans, options)


def _pick(candidates: list[tuple[int, int]], target: float, fit: str) -> tuple[int, int] | None:
    """From (knob, params) candidates ascending in params, pick by the fit rule; None if nothing fits floor."""
    below = [c for c in candidates if c[1] <= target]
    if fit == "floor":
        return below[-1] if below else None
    above = [c for c in candidates if c[1] > target]
    near = ([below[-1]] if below else []) + ([above[0]] if above else [])
    # More-or-Less: the smallest |1 - target / params| (target = B / k per member); a tie goes to the smaller member.
    return min(near, key=lambda c: (abs(1 - target / c[1]), c[1])) if near else None


def _floor_index(params_at, guess: int, lo: int, hi: int | None, budget: float) -> int:
    """Return the largest knob in [lo, hi] (hi None: unbounded) with params_at(knob) <= budget, or lo - 1.

    params_at must grow monotonically. The search gallops out from `guess` and then bisects, so a good guess
    costs two or three exact counts instead of a full bisection.
    """
    guess = max(lo, guess if hi is None else min(guess, hi))
    if params_at(guess) <= budget:
        ok, step = guess, 1
        bad = guess + step
        while (hi is None or bad <= hi) and params_at(bad) <= budget:
            ok, step = bad, step * 2
            bad = guess + step
        if hi is not None and bad > hi:
            bad = hi + 1  # sentinel: past the last knob
    else:
        bad, step = guess, 1
        ok = guess - step
        while ok >= lo and params_at(ok) > budget:
            bad, step = ok, step * 2
            ok = guess - step
        ok = max(ok, lo - 1)  # lo - 1 is the sentinel for "nothing fits"
    while bad - ok > 1:
        mid = (ok + bad) // 2
        if params_at(mid) <= budget:
            ok = mid
        else:
            bad = mid
    return ok


def fit_width(
    family: str, depth: int, member_budget: float, shape: Shape, options: dict, fit: str, guess: int | None = None
) -> tuple[int, int]:
    """Return (width, params) of the member at `depth` that fits `member_budget` parameters by the fit rule.

    Params grow monotonically with width; `guess` (a width) only speeds the search up.
    """
    fam = get_family(family)

    def params_at(width: int) -> int:
        return _params(family, depth, width, shape, options)

    if guess is None:
        # Conv parameters grow with width squared: scale the family's default width to the budget.
        ref = fam.default_width
        guess = round(ref * math.sqrt(member_budget / params_at(ref)))
    floor = _floor_index(params_at, guess, fam.min_width, None, member_budget)
    widths = [floor, floor + 1] if floor >= fam.min_width else [fam.min_width]
    picked = _pick([(w, params_at(w)) for w in widths], member_budget, fit)
    if picked is None:
        raise BudgetError(
            f"no {family} member of depth {depth} fits {member_budget:,.0f} parameters "
            f"(smallest width {fam.min_width} has {params_at(fam.min_width):,})"
        )
    return picked


def real_width(steps: int) -> float | int:
    """Return the width `steps` / REAL_WIDTH_STEPS, as an int when it is whole (so a whole real width is the same
    design, and trial id, as the knob's)."""
    whole, rest = divmod(steps, REAL_WIDTH_STEPS)
    return whole if rest == 0 else steps / REAL_WIDTH_STEPS


def fit_real_width(
    family: str, depth: int, member_budget: float, shape: Shape, options: dict, fit: str, guess: float | None = None
) -> tuple[float | int, int]:
    """Return (width, params) of the member at `depth` whose real width (a multiple of 1/REAL_WIDTH_STEPS of the
    family's knob, at least its `min_width`) fits `member_budget` parameters by the fit rule.

    Params do not decrease as the width grows (each stage rounds it to whole channels), so the floor is found by the
    same gallop-and-bisect search as integer widths, on the grid of steps; "nearest" weighs it against the next
    width with more parameters. `guess` (a width) only speeds the search up."""
    fam = get_family(family)

    def params_at(steps: int) -> int:
        return _params(family, depth, real_width(steps), shape, options)

    lo = fam.min_width * REAL_WIDTH_STEPS
    if guess is None:
        ref = fam.default_width
        guess = ref * math.sqrt(member_budget / _params(family, depth, ref, shape, options))
    floor = _floor_index(params_at, round(guess * REAL_WIDTH_STEPS), lo, None, member_budget)
    if floor < lo:
        raise BudgetError(
            f"no {family} member of depth {depth} fits {member_budget:,.0f} parameters "
            f"(smallest width {fam.min_width} has {params_at(lo):,})"
        )
    candidates = [(floor, params_at(floor))]
    if fit == "nearest":  # the next width that adds a channel somewhere
        above = _floor_index(params_at, floor + 1, floor, None, params_at(floor)) + 1
        candidates.append((above, params_at(above)))
    steps, params = _pick(candidates, member_budget, fit)
    return real_width(steps), params


def fit_stage_blocks(
    family: str, width: float, max_depth: int, member_budget: float, shape: Shape, options: dict, fit: str
) -> tuple[tuple[int, ...], int, int]:
    """Return (blocks per stage, depth, params) of the member at `width` whose stages fit `member_budget` parameters
    by the fit rule, each stage holding its own number of blocks.

    It starts from the deepest valid depth that fits (every stage the same number of blocks) and, from the last stage
    (the most parameters per block) to the first, adds blocks to a stage while the member still fits, so the floor
    misses the budget by less than one first-stage block. "nearest" weighs that against one more first-stage
    block."""
    fam = get_family(family)
    valid_depth, _ = fit_depth(family, width, max_depth, member_budget, shape, options, "floor")
    blocks = list(fam.stage_blocks_of(valid_depth))

    def params_of(candidate: list[int]) -> int:
        return _params(family, fam.depth_of_blocks(tuple(candidate)), width, shape,
                       {**options, "stage_blocks": tuple(candidate)})  # fmt: skip

    for stage in reversed(range(len(blocks))):
        while params_of(more := [*blocks[:stage], blocks[stage] + 1, *blocks[stage + 1 :]]) <= member_budget:
            blocks = more
    candidates = [(tuple(blocks), params_of(blocks))]
    if fit == "nearest":
        one_more = (blocks[0] + 1, *blocks[1:])
        candidates.append((one_more, params_of(list(one_more))))
    picked, params = _pick(candidates, member_budget, fit)
    return picked, fam.depth_of_blocks(picked), params


def _trimmed_weq_member(family: str, width: float, blocks: tuple[int, ...], params: int, member_budget: float,
                       shape: Shape, options: dict, fit: str) -> tuple[tuple[int, ...], int, float]:  # fmt: skip
    """Return (blocks, depth, width) of the weq member with one more first-stage block than `blocks` and the real width
    (below `width`) that fits `member_budget` by the fit rule, when it comes closer to the budget than `blocks` at
    `width` (which has `params` parameters); else `blocks` unchanged. A small member gains a layer that whole blocks
    cannot hold (a DenseNet of 3 to 6 layers, where one layer is 15-30% of the member) for a few % of its width."""
    fam = get_family(family)
    kept = (blocks, fam.depth_of_blocks(blocks), width)
    more = (blocks[0] + 1, *blocks[1:])
    depth = fam.depth_of_blocks(more)
    try:
        trimmed, trimmed_params = fit_real_width(family, depth, member_budget, shape,
                                                 {**options, "stage_blocks": more}, fit, guess=width)  # fmt: skip
    except BudgetError:
        return kept
    closer = abs(trimmed_params - member_budget) < abs(params - member_budget)
    return (more, depth, trimmed) if trimmed < width and closer else kept


def fit_depth(
    family: str, width: int, max_depth: int, member_budget: float, shape: Shape, options: dict, fit: str
) -> tuple[int, int]:
    """Return (depth, params) of the member at `width` that fits `member_budget` parameters by the fit rule.

    Params grow monotonically with depth; the search starts where a linear scaling from `max_depth` points.
    """
    depths = get_family(family).valid_depths(max_depth)
    if not depths:
        raise BudgetError(f"{family} has no valid depth <= {max_depth}")

    def params_at(i: int) -> int:
        return _params(family, depths[i], width, shape, options)

    ratio = member_budget / params_at(len(depths) - 1)
    guess = min(range(len(depths)), key=lambda i: abs(depths[i] - depths[-1] * ratio))
    floor = _floor_index(params_at, guess, 0, len(depths) - 1, member_budget)
    indices = [i for i in (floor, floor + 1) if 0 <= i < len(depths)]
    picked = _pick([(depths[i], params_at(i)) for i in indices], member_budget, fit)
    if picked is None:
        raise BudgetError(
            f"no {family} member of width {width} fits {member_budget:,.0f} parameters "
            f"(depth {depths[0]} has {params_at(0):,})"
        )
    return picked


def _design(
    design_class: str,
    family: str,
    depth: int,
    width: float,
    members: int,
    budget: int,
    budget_depth: int,
    budget_width: int,
    fit: str,
    shape: Shape,
    options: dict,
) -> DesignPoint:
    params_member = _params(family, depth, width, shape, options)
    total = members * params_member
    macs = members * forward_macs(family, depth, width, shape.num_classes, shape.in_chans, shape.image_size, options)
    return DesignPoint(
        design_class=design_class,
        family=family,
        depth=depth,
        width=width,
        members=members,
        params_member=params_member,
        params_total=total,
        budget=budget,
        budget_deviation=round(100.0 * (total - budget) / budget, 3),
        macs=macs,
        budget_depth=budget_depth,
        budget_width=budget_width,
        fit=fit,
        num_classes=shape.num_classes,
        in_chans=shape.in_chans,
        image_size=shape.image_size,
        family_args=dict(options),
    )


def single_at(family: str, depth: int, width: int, shape: Shape, options: dict, fit: str) -> DesignPoint:
    """Return the single network S(width, depth); its own size is the budget."""
    options = {**get_family(family).options, **options}
    budget = _params(family, depth, width, shape, options)
    return _design("single", family, depth, width, 1, budget, depth, width, fit, shape, options)


def single_for_budget(family: str, depth: int, budget: int, shape: Shape, options: dict, fit: str) -> DesignPoint:
    """Return the single network of `depth` whose width fits an explicit `budget` by the fit rule."""
    options = {**get_family(family).options, **options}
    width, _ = fit_width(family, depth, budget, shape, options, fit)
    return _design("single", family, depth, width, 1, budget, depth, width, fit, shape, options)


def same_network_for(single: DesignPoint, design_class: str) -> DesignPoint:
    """Return the `design_class` design that trains `single`'s network itself (members 1, same budget), e.g. MutualNet:
    one slimmable network of the same depth and width whose sub-networks of smaller width and input resolution share
    its weights (harness/kinds/mutual.py)."""
    return replace(single, design_class=design_class)


def coop_for(single: DesignPoint, design_class: str = "coop") -> DesignPoint:
    """Return the cooperative depth-adaptive design at `single`'s point: three networks of its family, depth and width
    (two teammates and a leader, harness/kinds/coop.py), so members 3 and params_total / macs are three times the
    single's (what training costs; a deployed sub-network runs one teammate's selected blocks, see the subnets
    table)."""
    total = 3 * single.params_member
    deviation = round(100.0 * (total - single.budget) / single.budget, 3)
    return replace(single, design_class=design_class, members=3, params_total=total, budget_deviation=deviation,
                   macs=3 * single.macs)  # fmt: skip


def ensemble_for(
    single: DesignPoint,
    design_class: str,
    members: int,
    divide_regularization: bool = True,
    rule: str | None = None,
    width_granularity: str = "knob",
    depth_granularity: str = "valid",
) -> DesignPoint:
    """Return the `design_class` ensemble of `members` networks under the budget that `single` defines.

    deq keeps the depth and fits the width (the family's knob, or with `width_granularity="channel"` a real width);
    weq keeps the width and fits the depth (a valid depth, or with `depth_granularity="block"` per-stage block counts,
    recorded as the family option `stage_blocks`, with the depth they make), both by the fit rule `rule` (default
    `single.fit`; the design's `fit` label stays `single.fit`, the sweep's rule); dct divides the width by the
    family's division rule (and, if asked, the regularization probabilities by sqrt(members)).
    Raises BudgetError naming the class and budget when no valid member fits.
    """
    family, shape, fit = single.family, Shape(single.num_classes, single.in_chans, single.image_size), single.fit
    rule = rule or fit
    options = dict(single.family_args)
    per_member = single.budget / members
    depth, width = single.depth, single.width
    try:
        if design_class == "deq" and width_granularity == "channel":
            guess = width * math.sqrt(per_member / single.params_member)
            width, _ = fit_real_width(family, depth, per_member, shape, options, rule, guess=guess)
        elif design_class == "deq":
            guess = round(width * math.sqrt(per_member / single.params_member))
            width, _ = fit_width(family, depth, per_member, shape, options, rule, guess=guess)
        elif design_class == "weq" and depth_granularity == "block":
            blocks, depth, params = fit_stage_blocks(family, width, depth, per_member, shape, options, rule)
            if width_granularity == "channel" and params < per_member * (1 - WEQ_TRIM_BELOW_PCT / 100):
                blocks, depth, width = _trimmed_weq_member(family, width, blocks, params, per_member, shape, options,
                                                           rule)  # fmt: skip
            if blocks != get_family(family).stage_blocks_of(depth):
                options["stage_blocks"] = blocks  # uniform blocks are the valid depth's design, and its trial id
        elif design_class == "weq":
            depth, _ = fit_depth(family, width, depth, per_member, shape, options, rule)
        elif design_class == "dct":
            fam = get_family(family)
            options.update(fam.divided_options(width, members))
            width = fam.divide_width(width, members)
            if divide_regularization:
                options = fam.divide_regularization(options, members)
        else:
            raise ValueError(f"unknown ensemble class {design_class!r}; allowed: {', '.join(ENSEMBLE_CLASSES)}")
    except BudgetError as err:
        raise BudgetError(f"{design_class} with {members} members cannot fit budget {single.budget:,}: {err}") from None
    return _design(
        design_class,
        family,
        depth,
        width,
        members,
        single.budget,
        single.budget_depth,
        single.budget_width,
        fit,
        shape,
        options,
    )
