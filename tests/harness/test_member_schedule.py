"""Independent ensembles train member by member within a batch (forward, backward, step of one member, then the
next): the same weights as the joint step, and only one member's activations alive at a time."""

from __future__ import annotations

import sys

import pytest
import torch

from harness import loop
from harness.kinds import fixed
from harness.trial import run_trial
from tests.harness.conftest import design_point, make_config


def train_one_epoch_of(config: dict, schedule: str) -> list[dict]:
    """Train the config's fixed design for one epoch with the member `schedule` forced; return the members'
    state_dicts."""
    device = torch.device("cpu")
    kind_class = fixed.FixedKind
    setup = loop.prologue(config, None, device, kind_class.data_views(config["design"], config["recipe"]))
    kind = kind_class(setup)
    kind.member_schedule = schedule
    if schedule == "per_member":
        kind.runners, kind.graphed = kind.models, False
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    lr_at = loop.lr_schedule(config["recipe"], 1, 100)
    kind.start_epoch(0)
    loop.train_one_epoch(kind, setup, scaler, lr_at, 0)
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in kind.models]


def test_an_independent_sequential_ensemble_runs_per_member_and_others_joint():
    assert fixed.member_schedule("sequential", 0.0) == "per_member"
    assert fixed.member_schedule("sequential", 0.5) == "joint"
    assert fixed.member_schedule("fused", 0.0) == "joint"


def test_per_member_steps_give_the_joint_steps_weights_in_float64(float64_members):
    # Momentum, Nesterov and weight decay on: every part of the SGD update must be per parameter.
    config = make_config(design_point("deq", members=3), epochs=1, mixup_alpha=0.2)
    per_member = train_one_epoch_of(config, "per_member")
    joint = train_one_epoch_of(config, "joint")
    assert per_member[0]["fc.weight"].dtype == torch.float64
    for got, want in zip(per_member, joint, strict=True):
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12, msg=name)
    # ... and training moved the weights (the comparison is not of two untouched inits).
    init = fixed.build_members(config["design"], config["seed"], torch.device("cpu"), False)[0].state_dict()
    assert not torch.allclose(per_member[0]["fc.weight"], init["fc.weight"])


def test_the_final_record_names_the_schedule_that_ran():
    per_member = run_trial(make_config(design_point("deq"), epochs=1), lambda r: None)["final"]
    joint = run_trial(make_config(design_point("deq"), epochs=1, lambda_cot=0.5), lambda r: None)["final"]
    assert per_member["member_schedule"] == "per_member"
    assert joint["member_schedule"] == "joint"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS above a baseline needs Linux /proc")
def test_a_per_member_deq_needs_less_training_memory_than_joint_at_the_same_budget(monkeypatch):
    # Batch 1024 of 16x16 digits: activations (tens of MiB per member) dominate the small networks' weights.
    design = design_point("deq", members=4, width=16)
    config = make_config(design, epochs=1, batch_size=1024)
    per_member = run_trial(config, lambda r: None)["final"]
    monkeypatch.setattr(fixed, "member_schedule", lambda execution, lambda_cot: "joint")
    joint = run_trial(config, lambda r: None)["final"]
    assert (per_member["member_schedule"], joint["member_schedule"]) == ("per_member", "joint")
    assert per_member["mem_baseline_mb"] > 100  # Python + torch + data: what the peak leaves out
    assert 0 < per_member["peak_mem_mb"] < 0.8 * joint["peak_mem_mb"]
