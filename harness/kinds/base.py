"""The trial-kind interface: what differs between design classes inside the one trial loop (`harness.loop`).

The loop sets a trial up (`Setup`), builds the kind (`kind_class(setup)`: networks and optimizer) and then calls it
per epoch (`start_epoch`), per batch (`train_batch`) and per evaluation (`evaluate`), and once at the end
(`final_fields`). Everything else -- threads, device, precision, data, views, generator, learning-rate schedule,
optimizer step, checkpoints, timing, the FINAL measurement -- is the loop's, written once.

`KINDS` maps a trial-kind name (the `trial_kind` of a class in `spaces.classes`) to its class; each kind's file
registers itself with `register_kind`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from harness.data import TrialData
from harness.views import ViewMaker
from spaces.classes import CLASSES


@dataclass
class Setup:
    """What the loop's prologue prepared for one trial.

    `amp` is the autocast context (a no-op context in fp32), `gen` the trial's generator on `device` (views,
    shuffling, every random draw of a kind), `checkpoint` the saved state being resumed from (None for a fresh start).
    `workers`: this worker's group in a parallel trial (`harness.parallel.Workers`; None on one device).
    """

    config: dict
    seed: int
    device: torch.device
    precision: str
    amp_dtype: torch.dtype | None
    amp: object
    data: TrialData
    views: ViewMaker
    gen: torch.Generator
    checkpoint: dict | None
    workers: object = None  # harness.parallel.Workers in a parallel trial (one Ray Train worker), else None

    @property
    def design(self) -> dict:
        """The trial config's design section."""
        return self.config["design"]

    @property
    def recipe(self) -> dict:
        """The trial config's recipe section."""
        return self.config["recipe"]


class TrialKind:
    """How one design class builds, trains and evaluates its networks. Subclasses set, in `__init__(setup)`:

    `models`: the modules whose state the checkpoint saves and restores (in a fixed order); `measured`: the networks
    the FINAL record measures (params, FLOPs, latency; defaults to `models`); `optimizer`: one optimizer over
    everything trained. `execution`, `channels_last` and `member_schedule` ("joint": one step per batch;
    "per_member": one step per network and batch, see `train_step`) are recorded in the FINAL record as they ran.
    """

    execution: str = "sequential"
    channels_last: bool = False
    member_schedule: str = "joint"

    def __init__(self, setup: Setup):
        self.setup = setup
        self.models: list[nn.Module] = []
        self.measured: list[nn.Module] | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    @classmethod
    def data_views(cls, design: dict, recipe: dict) -> int:
        """Return how many views per sample folder data must produce (one per member that gets its own view)."""
        return 1

    def views_per_batch(self) -> tuple[int, bool]:
        """Return (inputs per batch, whether each is its own augmentation) for `harness.loop.train_batches`."""
        return 1, False

    def start_epoch(self, epoch: int) -> float:
        """Prepare 0-based `epoch` (train mode, per-epoch draws from the generator); return its lambda_cot (the
        EPOCH record's co-training weight; 0 for kinds without one)."""
        for model in self.models:
            model.train()
        return 0.0

    def train_batch(self, inputs: list[torch.Tensor], y: torch.Tensor, scale: Callable) -> torch.Tensor:
        """Run the forward and backward passes of one batch (gradients of `scale(loss)`; gradients are None on entry
        and `train_step` steps the optimizer after); return the batch's mean per-sample objective in nats, detached."""
        raise NotImplementedError

    def train_step(
        self, inputs: list[torch.Tensor], y: torch.Tensor, scale: Callable, step: Callable[[], None]
    ) -> torch.Tensor:
        """Train on one batch: by default `train_batch` (forward and backward of everything) and then one `step()`
        (the loop's `optimizer_step`); a kind that steps its networks one at a time overrides this and calls `step()`
        after each. Return the batch's mean per-sample objective in nats, detached."""
        loss = self.train_batch(inputs, y, scale)
        step()
        return loss

    def evaluate(self) -> tuple[float, list[float], float]:
        """Return (test accuracy, per-network accuracies, test loss in nats per sample) for the EPOCH record."""
        raise NotImplementedError

    def measure_on_workers(self) -> dict:
        """Return FINAL-record fields that every worker of a parallel trial measures together, before rank 0 measures
        alone (none by default)."""
        return {}

    def networks_to_measure(self) -> list[nn.Module]:
        """Return the networks the FINAL record measures (`measured`, else `models`). Every worker of a parallel trial
        calls it (a members-parallel kind gathers the members here)."""
        return self.measured or self.models

    def final_fields(self, status: str) -> dict:
        """Return extra FINAL-record fields (e.g. `subnets`, the rows of the store's subnets table) for a trial that
        ended with `status`."""
        return {}


KINDS: dict[str, type[TrialKind]] = {}


def register_kind(name: str, kind: type[TrialKind]) -> type[TrialKind]:
    """Add trial kind `name` to the registry and return it; a duplicate name is a programming error."""
    if name in KINDS:
        raise ValueError(f"trial kind {name!r} is registered twice")
    KINDS[name] = kind
    return kind


def kind_for(design_class: str) -> type[TrialKind]:
    """Return the trial-kind class that trains `design_class` (its `trial_kind` in `spaces.classes`)."""
    if design_class not in CLASSES:
        raise ValueError(f"unknown design class {design_class!r}; known: {', '.join(CLASSES)}")
    name = CLASSES[design_class].trial_kind
    if name not in KINDS:
        raise ValueError(f"design class {design_class!r} names trial kind {name!r}, which is not registered")
    return KINDS[name]
