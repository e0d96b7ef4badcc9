"""Design points under a parameter budget: single networks and deq / weq / dct ensembles (DESIGN sections 2-3).

Budgets are exact parameter counts of instantiated models (see `spaces.counting`). `fit="floor"` takes the largest
member that keeps k members within the budget (the papers' rule); `fit="nearest"` takes the member whose total is
closest to the budget (what the public More-or-Less code did), so it may exceed the budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from spaces.counting import count_params, forward_macs
from spaces.families import get_family

DESIGN_CLASSES = ("single", "deq", "weq", "dct")
ENSEMBLE_CLASSES = ("deq", "weq", "dct")
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
    # A tie goes to the member under the budget.
    return min(near, key=lambda c: (abs(c[1] - target), c[1] > target)) if near else None


def fit_width(family: str, depth: int, member_budget: float, shape: Shape, options: dict, fit: str) -> tuple[int, int]:
    """Return (width, params) of the member at `depth` that fits `member_budget` parameters by the fit rule.

    Params grow monotonically with width, so a doubling search then a bisection finds the floor width.
    """
    fam = get_family(family)
    lo = fam.min_width
    if _params(family, depth, lo, shape, options) > member_budget:
        floor = None
    else:
        hi = lo
        while _params(family, depth, hi * 2, shape, options) <= member_budget:
            hi *= 2
        lo, hi = hi, hi * 2  # params(lo) <= budget < params(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _params(family, depth, mid, shape, options) <= member_budget:
                lo = mid
            else:
                hi = mid
        floor = lo
    start = fam.min_width if floor is None else floor
    candidates = [(w, _params(family, depth, w, shape, options)) for w in (start, start + 1)]
    if floor is None:
        candidates = candidates[:1]
    picked = _pick(candidates, member_budget, fit)
    if picked is None:
        raise BudgetError(
            f"no {family} member of depth {depth} fits {member_budget:,.0f} parameters "
            f"(smallest width {fam.min_width} has {candidates[0][1]:,})"
        )
    return picked


def fit_depth(
    family: str, width: int, max_depth: int, member_budget: float, shape: Shape, options: dict, fit: str
) -> tuple[int, int]:
    """Return (depth, params) of the member at `width` that fits `member_budget` parameters by the fit rule.

    Params grow monotonically with depth, so a bisection over the valid depths finds the floor depth.
    """
    depths = get_family(family).valid_depths(max_depth)
    if not depths:
        raise BudgetError(f"{family} has no valid depth <= {max_depth}")
    lo, hi = -1, len(depths)  # params(depths[lo]) <= budget < params(depths[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _params(family, depths[mid], width, shape, options) <= member_budget:
            lo = mid
        else:
            hi = mid
    candidates = [
        (depths[i], _params(family, depths[i], width, shape, options)) for i in (lo, hi) if 0 <= i < len(depths)
    ]
    picked = _pick(candidates, member_budget, fit)
    if picked is None:
        raise BudgetError(
            f"no {family} member of width {width} fits {member_budget:,.0f} parameters "
            f"(depth {candidates[0][0]} has {candidates[0][1]:,})"
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


def ensemble_for(
    single: DesignPoint, design_class: str, members: int, divide_regularization: bool = True
) -> DesignPoint:
    """Return the `design_class` ensemble of `members` networks under the budget that `single` defines.

    deq keeps the depth and fits the width; weq keeps the width and fits the depth; dct divides the width by the
    family's division rule (and, if asked, the regularization probabilities by sqrt(members)).
    Raises BudgetError naming the class and budget when no valid member fits.
    """
    family, shape, fit = single.family, Shape(single.num_classes, single.in_chans, single.image_size), single.fit
    options = dict(single.family_args)
    per_member = single.budget / members
    depth, width = single.depth, single.width
    try:
        if design_class == "deq":
            width, _ = fit_width(family, depth, per_member, shape, options, fit)
        elif design_class == "weq":
            depth, _ = fit_depth(family, width, depth, per_member, shape, options, fit)
        elif design_class == "dct":
            fam = get_family(family)
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
