"""Width and depth granularity: real member widths rounded per stage, weq stages of different block counts, and the
fairness goal over the More-or-Less presets (issue 14, section 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from torch import nn

from spaces.counting import built_count, count_params
from spaces.designs import BudgetError, Shape, ensemble_for, fit_real_width, real_width, single_at
from spaces.families import create_model
from spaces.spec import SpecError, load_spec

CIFAR10 = Shape(num_classes=10, in_chans=3, image_size=32)
BOTH = ["width_granularity=channel", "depth_granularity=block"]


def conv_out_channels(model: nn.Module, kernel: int = 3) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (kernel, kernel)]


def test_a_real_resnet_base_width_rounds_each_stage_to_whole_channels_on_its_own():
    model = create_model("resnet", 8, 5.66, num_classes=10)
    # stem round(5.66) = 6; stages round(5.66), round(11.32), round(22.64)
    assert conv_out_channels(model) == [6, 6, 6, 11, 11, 23, 23]


def test_a_real_widen_factor_rounds_each_wrn_stage_and_keeps_the_16_channel_stem():
    model = create_model("wrn", 10, 1.98, num_classes=10)
    assert conv_out_channels(model) == [16, 32, 32, 63, 63, 127, 127]


def test_a_real_densenet_growth_rate_spreads_its_rounding_over_the_layers_of_a_block():
    model = create_model("densenet_bc", 28, 9.5, num_classes=10, stem_channels=24, compression=1.0)
    growths = conv_out_channels(model)[1:5]  # the first dense block's four 3x3 convolutions
    assert growths == [10, 9, 10, 9]  # round(9.5), round(19) - 10, round(28.5) - 19, round(38) - 29


@pytest.mark.parametrize("family", ["resnet", "wrn", "densenet_bc"])
def test_a_whole_real_width_builds_exactly_the_knobs_network(family):
    depth = {"resnet": 20, "wrn": 16, "densenet_bc": 40}[family]
    assert count_params(family, depth, 4.0, 10) == count_params(family, depth, 4, 10)


def test_a_family_with_only_an_integer_knob_refuses_a_real_width():
    with pytest.raises(ValueError, match="integer alpha"):
        create_model("pyramidnet", 110, 47.5, num_classes=10)


def test_stage_blocks_build_stages_of_different_block_counts_at_the_depth_they_make():
    model = create_model("resnet", 2 * (3 + 2 + 1) + 2, 8, num_classes=10, stage_blocks=[3, 2, 1])
    assert conv_out_channels(model) == [8] + [8] * 6 + [16] * 4 + [32] * 2


def test_stage_blocks_that_do_not_make_the_given_depth_are_refused():
    with pytest.raises(ValueError, match=r"stage_blocks \[3, 2, 1\] make depth 14, not 20"):
        create_model("resnet", 20, 8, num_classes=10, stage_blocks=[3, 2, 1])


def test_channel_width_fills_the_issues_wrn_example_that_the_knob_left_75_percent_under():
    single = single_at("wrn", 28, 4, CIFAR10, {}, "floor")
    knob = ensemble_for(single, "deq", 4)
    channel = ensemble_for(single, "deq", 4, width_granularity="channel")
    assert knob.width == 1 and knob.budget_deviation < -70  # 4 x WRN-28-1
    assert 1.9 < channel.width < 2 and -1 < channel.budget_deviation <= 0  # 4 x WRN-28-1.98, just under


def test_channel_width_by_floor_is_the_widest_on_the_grid_that_fits():
    budget = 60_000
    width, params = fit_real_width("resnet", 20, budget, CIFAR10, {}, "floor")
    assert params <= budget < count_params("resnet", 20, round(width + 0.01, 2), 10)


def test_channel_width_by_nearest_takes_the_closer_of_the_floor_and_the_next_count():
    budget = 60_000
    _, floor_params = fit_real_width("resnet", 20, budget, CIFAR10, {}, "floor")
    _, params = fit_real_width("resnet", 20, budget, CIFAR10, {}, "nearest")
    assert params == floor_params or params > budget
    assert abs(1 - budget / params) <= abs(1 - budget / floor_params)


def test_a_whole_real_width_is_the_integer_so_the_design_and_its_trial_id_stay_the_knobs():
    assert real_width(1600) == 16 and isinstance(real_width(1600), int)
    assert real_width(1566) == 15.66


def test_block_depth_adds_blocks_last_stage_first_and_misses_by_less_than_one_first_stage_block():
    single = single_at("resnet", 62, 16, CIFAR10, {"shortcut": "A"}, "floor")
    valid = ensemble_for(single, "weq", 4)
    design = ensemble_for(single, "weq", 4, depth_granularity="block")
    assert valid.depth == 14 and valid.budget_deviation < -27  # 4 x ResNet-14: (2, 2, 2) blocks; (3, 3, 3) is over
    # From (2, 2, 2): a third-stage block does not fit, three second-stage blocks and two first-stage blocks do.
    assert design.family_args["stage_blocks"] == (4, 5, 2) and design.depth == 2 * 11 + 2
    with_one_more = {"shortcut": "A", "stage_blocks": (5, 5, 2)}
    one_more = count_params("resnet", design.depth + 2, 16, 10, options=with_one_more)
    assert design.params_total <= design.budget < 4 * one_more


def test_block_depth_records_no_stage_blocks_when_the_stages_come_out_equal():
    # A member budget of exactly one resnet-14: whole stages of 2 blocks fill it, and one more block would not fit.
    single = replace(single_at("resnet", 20, 16, CIFAR10, {}, "floor"), budget=2 * count_params("resnet", 14, 16, 10))
    design = ensemble_for(single, "weq", 2, depth_granularity="block")
    assert design.depth == 14 and "stage_blocks" not in design.family_args and design.budget_deviation == 0


def test_both_granularities_trim_a_small_densenet_weq_members_width_to_hold_one_more_layer():
    options = {"stem_channels": 24, "compression": 1.0}
    single = single_at("densenet_bc", 40, 36, CIFAR10, options, "floor")
    blocks_only = ensemble_for(single, "weq", 8, depth_granularity="block")
    both = ensemble_for(single, "weq", 8, width_granularity="channel", depth_granularity="block")
    assert blocks_only.depth == 10 and blocks_only.budget_deviation < -25  # 3 layers: one layer is ~30% of it
    assert both.depth == 12 and both.family_args["stage_blocks"] == (2, 1, 1)
    assert 34 < both.width < 36 and -5 < both.budget_deviation <= 0


def test_a_member_below_the_smallest_width_is_still_a_budget_error():
    single = single_at("wrn", 10, 1, CIFAR10, {}, "floor")
    with pytest.raises(BudgetError, match="deq with 8 members cannot fit"):
        ensemble_for(single, "deq", 8, width_granularity="channel")


def test_channel_width_for_a_family_without_real_widths_is_refused_in_one_line():
    with pytest.raises(SpecError) as err:
        load_spec("dct_cifar100", ["classes=['single','deq']", "width_granularity=channel"])
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("width_granularity = 'channel': families.4 (resnext29) builds no real widths; ")
    able = "densenet_bc, resnet, resnet_bottleneck, se_resnet, se_resnet_bottleneck, wrn"
    assert line.endswith(f"families that do: {able}")


def test_an_unknown_granularity_is_refused_naming_the_allowed_values():
    with pytest.raises(SpecError, match=r"depth_granularity = 'layer'.*'valid', 'block'"):
        load_spec("digits", ["depth_granularity=layer"])


@pytest.fixture(scope="module")
def more_or_less_designs():
    """Every deq and weq design of the three more_or_less_* presets, with both granularities and the floor rule."""
    designs = []
    for preset in ("more_or_less_resnet", "more_or_less_wrn", "more_or_less_densenet"):
        spec = load_spec(preset, ["fit=floor", *BOTH])
        designs += [(preset, d) for d in spec.designs if d.design_class in ("deq", "weq")]
    return designs


def test_fairness_goal_no_more_or_less_ensemble_is_over_its_budget(more_or_less_designs):
    assert len(more_or_less_designs) == 252  # ResNet 48 + 36, WRN 27 + 21, DenseNet 60 + 60 (unfit ones skipped)
    assert max(d.budget_deviation for _, d in more_or_less_designs) <= 0


def test_fairness_goal_every_more_or_less_ensemble_is_within_10_percent(more_or_less_designs):
    far = [(p, d.design_class, d.members, d.budget_depth, d.budget_width, d.budget_deviation)
           for p, d in more_or_less_designs if d.budget_deviation < -10]  # fmt: skip
    assert far == []


def test_fairness_goal_at_least_95_percent_of_more_or_less_ensembles_are_within_5_percent(more_or_less_designs):
    within = sum(d.budget_deviation >= -5 for _, d in more_or_less_designs)
    assert within / len(more_or_less_designs) >= 0.95


@pytest.mark.parametrize("family, depth, width, options", [
    ("densenet_bc", 40, 12, {}), ("densenet_bc", 100, 12, {}), ("densenet_bc", 40, 9.5, {}),
    ("densenet_bc", 64, 13.37, {"stem_channels": 24, "compression": 1.0}),
    ("densenet_bc", 88, 36, {"stem_channels": 24, "compression": 1.0}),
    ("densenet_bc", 34, 20.25, {"stage_blocks": (3, 7, 5)}),
    ("densenet_bc", 14, 7.77, {"compression": 0.7, "stage_blocks": (2, 1, 2)}),
    ("resnet", 110, 16, {}), ("resnet", 38, 11.31, {"shortcut": "A"}), ("resnet", 24, 16, {"stage_blocks": (4, 5, 2)}),
    ("resnet_bottleneck", 164, 16, {}), ("resnet_bottleneck", 29, 7.3, {"shortcut": "A", "stage_blocks": (4, 3, 2)}),
    ("wrn", 28, 10, {}), ("wrn", 16, 1.98, {"drop_rate": 0.3}), ("wrn", 24, 3.5, {"stage_blocks": (4, 4, 2)}),
    ("se_resnet", 20, 5.66, {}), ("se_resnet_bottleneck", 17, 9.9, {"stage_blocks": (2, 1, 2)}),
])  # fmt: skip
def test_a_familys_parameter_count_without_building_equals_the_built_models(family, depth, width, options):
    for num_classes, in_chans in ((10, 3), (100, 1)):
        assert count_params(family, depth, width, num_classes, in_chans, options) == built_count(
            family, depth, width, num_classes, in_chans, options)
