"""Design points under a parameter budget: single networks and deq / weq / dct ensembles (DESIGN sections 2-3), and
`mutual` (one slimmable MutualNet network at the single network's budget; its sub-networks share its weights) and
`coop` (cooperative depth-adaptive training: two teammates and a leader of the single network's shape).

Budgets are exact parameter counts of instantiated models (see `spaces.counting`). `fit="floor"` takes the largest
member that keeps k members within the budget (the papers' rule); `fit="nearest"` takes the member E whose k copies
come closest to the budget B relative to the ensemble, the smallest |1 - B / (k |E|)| with ties to the smaller member
(what the public More-or-Less code did), so it may exceed the budget.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from spaces.classes import ENSEMBLE_CLASSES
from spaces.counting import count_params, forward_macs
from spaces.families import get_family

FIT_RULES = ("floor", "nearest")


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

    `params_member` and `params_total` are exact counts; `budget_deviation` is (total - budget) / budget in %;
    `macs` is forward multiply-accumulates per sample, summed over members. `budget_depth`/`budget_width` name the
    single network whose size set the budget (the fitted single network when the budget is explicit).
    """

    design_class: str
    family: str
    depth: int
    width: int
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
    width: int,
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
    single: DesignPoint, design_class: str, members: int, divide_regularization: bool = True, rule: str | None = None
) -> DesignPoint:
    """Return the `design_class` ensemble of `members` networks under the budget that `single` defines.

    deq keeps the depth and fits the width; weq keeps the width and fits the depth, both by the fit rule `rule`
    (default `single.fit`; the design's `fit` label stays `single.fit`, the sweep's rule); dct divides the width by
    the family's division rule (and, if asked, the regularization probabilities by sqrt(members)).
    Raises BudgetError naming the class and budget when no valid member fits.
    """
    family, shape, fit = single.family, Shape(single.num_classes, single.in_chans, single.image_size), single.fit
    rule = rule or fit
    options = dict(single.family_args)
    per_member = single.budget / members
    depth, width = single.depth, single.width
    try:
        if design_class == "deq":
            guess = round(width * math.sqrt(per_member / single.params_member))
            width, _ = fit_width(family, depth, per_member, shape, options, rule, guess=guess)
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
