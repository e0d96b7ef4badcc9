"""Trials of members sized by the granularity options: a real-width deq and a weq whose stages hold different block
counts train from their JSON config and measure the parameters their design counted."""

from __future__ import annotations

import json

import pytest

from harness.trial import run_trial
from spaces.designs import ensemble_for, single_at
from tests.harness.conftest import DIGITS, make_config


def trained_from_json(design) -> dict:
    """Run a 1-epoch trial of `design` from its config after a JSON round trip (as Ray and the store see it)."""
    config = json.loads(json.dumps(make_config(design, epochs=1)))
    return run_trial(config, lambda record: None)


@pytest.mark.parametrize("granularity", ["channel", "block"])
def test_a_member_sized_by_a_granularity_trains_and_has_the_parameters_its_design_counted(granularity):
    single = single_at("resnet", 14, 8, DIGITS, {}, "floor")
    if granularity == "channel":
        design = ensemble_for(single, "deq", 2, width_granularity="channel")
        assert design.width != int(design.width)
    else:
        design = ensemble_for(single, "weq", 2, depth_granularity="block")
        assert "stage_blocks" in design.family_args
    result = trained_from_json(design)
    assert result["final"]["status"] == "ok"
    assert result["final"]["params_total"] == design.params_total
