"""The vocabulary of design classes: each class named once, with what every layer needs to know about it.

A leaf module (no torch, no other project import): `spaces` enumerates designs with it, `harness` picks the trial kind
and the sub-network kind with it, `analysis` orders, groups and colours classes with it. Adding a design class is one
`DesignClass` line here plus one trial-kind file in `harness/kinds/` (see `harness.loop`).

`POINT_KEYS` names the columns that identify a design point in the results store (besides the seed); the analysis
groups seeds by it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DesignClass:
    """One design class.

    `ensemble`: several networks trained and combined as one ensemble (EST compares these with `single`).
    `builder`: the `spaces.designs` function that makes the class's design point from the single network's.
    `trial_kind`: the `harness.kinds` registry name of the trial kind that trains it.
    `subnet_kind`: what varies among the sub-networks it evaluates after training (the subnets table's
    `subnet_kind`), None for a class without sub-networks.
    `color`: its colour in every figure (hex RGB).
    `sized_by_rule`: its own division rule sets its size (dct divides the single network's width), so it may lie far
    from the budget by design: it is compared at its real parameter count and never marked as off its budget.
    """

    name: str
    ensemble: bool
    builder: str
    trial_kind: str
    subnet_kind: str | None
    color: str
    sized_by_rule: bool = False


CLASSES: dict[str, DesignClass] = {
    c.name: c
    for c in (
        DesignClass("single", False, "single_at", "fixed", None, "#1f77b4"),
        DesignClass("deq", True, "ensemble_for", "fixed", None, "#ff7f0e"),
        DesignClass("weq", True, "ensemble_for", "fixed", None, "#2ca02c"),
        DesignClass("dct", True, "ensemble_for", "fixed", None, "#d62728", sized_by_rule=True),
        DesignClass("mutual", False, "same_network_for", "mutual", "width_resolution", "#9467bd"),
        DesignClass("coop", False, "coop_for", "coop", "depth", "#8c564b"),
    )
}

DESIGN_CLASSES = tuple(CLASSES)
# One trained network per member, no sub-networks: the classes EST and the DCT table compare.
FIXED_CLASSES = tuple(c.name for c in CLASSES.values() if c.subnet_kind is None)
ENSEMBLE_CLASSES = tuple(c.name for c in CLASSES.values() if c.ensemble)
# One trained system serving many budgets through its sub-networks (the store's subnets table).
ADAPTIVE_CLASSES = tuple(c.name for c in CLASSES.values() if c.subnet_kind is not None)
SUBNET_KINDS = {c.name: c.subnet_kind for c in CLASSES.values() if c.subnet_kind is not None}
CLASS_COLORS = {c.name: c.color for c in CLASSES.values()}
# Classes whose size their division rule sets: compared at their real parameter count, never marked off budget.
RULE_SIZED_CLASSES = tuple(c.name for c in CLASSES.values() if c.sized_by_rule)

# The columns that name a design point in the store's tables (`point_id` hashes everything but the seed).
POINT_KEYS = ("sweep", "point_id", "dataset", "design_class", "family", "depth", "width", "members", "budget", "fit",
              "epochs", "budget_depth", "budget_width")  # fmt: skip
