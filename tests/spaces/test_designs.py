"""Budget fitting and design classes: floor never exceeds, nearest is nearest, classes keep what they should."""

import pytest
import torch

from spaces.counting import count_params, forward_macs
from spaces.designs import (
    BudgetError,
    Shape,
    _pick,
    ensemble_for,
    fit_depth,
    fit_width,
    single_at,
    single_for_budget,
)
from spaces.families import create_model, get_family

CIFAR10 = Shape(num_classes=10, in_chans=3, image_size=32)


def test_meta_count_equals_count_of_an_instantiated_model():
    model = create_model("resnet", 20, 16, num_classes=10)
    assert count_params("resnet", 20, 16, 10, 3) == sum(p.numel() for p in model.parameters())


def test_resnet_110_has_the_published_size_on_cifar10():
    # He et al. report 1.7M for ResNet-110; projection shortcuts add a few thousand.
    assert count_params("resnet", 110, 16, 10, 3) == pytest.approx(1.73e6, rel=0.02)


def test_forward_macs_of_a_linear_only_path_match_hand_count():
    # ResNet MACs must at least cover the classifier: 64 * 10 multiply-adds for width 16.
    macs = forward_macs("resnet", 8, 16, 10, 3, 32)
    conv_stem = 32 * 32 * 16 * 3 * 9
    assert macs > conv_stem + 64 * 10


@pytest.mark.parametrize("budget", [20_000, 55_555, 123_456, 400_000])
def test_floor_width_never_exceeds_the_member_budget_and_next_width_would(budget):
    width, params = fit_width("resnet", 20, budget, CIFAR10, {}, "floor")
    assert params <= budget
    assert count_params("resnet", 20, width + 1, 10, 3) > budget


@pytest.mark.parametrize("budget", [20_000, 55_555, 123_456, 400_000])
def test_nearest_width_is_the_closest_of_all_widths(budget):
    width, params = fit_width("resnet", 20, budget, CIFAR10, {}, "nearest")
    all_widths = {w: count_params("resnet", 20, w, 10, 3) for w in range(2, 40)}
    best = min(all_widths.values(), key=lambda p: abs(1 - budget / p))
    assert params == best


@pytest.mark.parametrize("budget", [100_000, 300_000, 700_000])
def test_floor_depth_never_exceeds_the_member_budget_and_next_depth_would(budget):
    depth, params = fit_depth("resnet", 16, 200, budget, CIFAR10, {}, "floor")
    assert params <= budget
    assert count_params("resnet", depth + 6, 16, 10, 3) > budget


@pytest.mark.parametrize("budget", [100_000, 300_000, 700_000])
def test_nearest_depth_is_the_closest_valid_depth(budget):
    depth, params = fit_depth("resnet", 16, 200, budget, CIFAR10, {}, "nearest")
    counts = [count_params("resnet", d, 16, 10, 3) for d in get_family("resnet").valid_depths(200)]
    assert params == min(counts, key=lambda c: abs(1 - budget / c))


def test_nearest_measures_the_miss_relative_to_the_member_as_the_more_or_less_code_did():
    # |1 - 85/60| = 0.42 > |1 - 85/120| = 0.29: the larger member, although 60 is closer in absolute terms.
    assert _pick([(1, 60), (2, 120)], 85, "nearest") == (2, 120)


def test_nearest_breaks_a_tie_toward_the_smaller_member():
    assert _pick([(1, 60), (2, 120)], 80, "nearest") == (1, 60)  # |1 - 80/60| = |1 - 80/120| = 1/3


def test_depth_equivalent_ensemble_keeps_depth_and_loses_width():
    single = single_at("resnet", 56, 16, CIFAR10, {}, "floor")
    deq = ensemble_for(single, "deq", 4)
    assert (deq.depth, deq.members) == (56, 4)
    assert deq.width < 16
    assert deq.params_total <= single.budget


def test_width_equivalent_ensemble_keeps_width_and_loses_depth():
    single = single_at("resnet", 56, 16, CIFAR10, {}, "floor")
    weq = ensemble_for(single, "weq", 4)
    assert (weq.width, weq.members) == (16, 4)
    assert weq.depth < 56 and get_family("resnet").is_valid_depth(weq.depth)
    assert weq.params_total <= single.budget


def test_floor_ensembles_never_exceed_their_budget_over_a_grid():
    for depth in (20, 32, 44):
        for width in (8, 16, 24):
            single = single_at("resnet", depth, width, CIFAR10, {}, "floor")
            for cls in ("deq", "weq"):
                for k in (2, 3, 4):
                    try:
                        design = ensemble_for(single, cls, k)
                    except BudgetError:
                        continue
                    assert design.params_total <= design.budget
                    assert design.budget_deviation <= 0


def test_budget_deviation_is_the_real_total_against_the_budget_in_percent():
    single = single_at("resnet", 56, 16, CIFAR10, {}, "floor")
    deq = ensemble_for(single, "deq", 4)
    expected = 100 * (4 * count_params("resnet", 56, deq.width, 10, 3) - single.budget) / single.budget
    assert deq.budget_deviation == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("splits, width", [(2, 12), (4, 8), (8, 6), (16, 4)])
def test_dct_divides_resnet_base_width_16_by_the_reference_table(splits, width):
    single = single_at("resnet_bottleneck", 164, 16, Shape(100, 3, 32), {}, "floor")
    assert ensemble_for(single, "dct", splits).width == width


def test_dct_divides_dropout_by_sqrt_of_splits():
    single = single_at("resnet", 20, 16, CIFAR10, {"drop_rate": 0.4}, "floor")
    dct = ensemble_for(single, "dct", 4)
    assert dct.family_args["drop_rate"] == pytest.approx(0.2)


def test_dct_keeps_regularization_when_division_is_off():
    single = single_at("resnet", 20, 16, CIFAR10, {"drop_rate": 0.4}, "floor")
    assert ensemble_for(single, "dct", 4, divide_regularization=False).family_args["drop_rate"] == 0.4


def test_ensemble_macs_are_members_times_member_macs():
    single = single_at("resnet", 20, 16, CIFAR10, {}, "floor")
    deq = ensemble_for(single, "deq", 2)
    assert deq.macs == 2 * forward_macs("resnet", 20, deq.width, 10, 3, 32, {"drop_rate": 0.0})


def test_explicit_budget_fits_the_single_network_width_under_it():
    single = single_for_budget("resnet", 20, 100_000, CIFAR10, {}, "floor")
    assert single.params_total <= 100_000 < count_params("resnet", 20, single.width + 1, 10, 3)
    assert single.budget == 100_000


def test_a_budget_no_member_fits_is_an_error_naming_class_and_budget():
    single = single_at("resnet", 8, 4, CIFAR10, {}, "floor")
    with pytest.raises(BudgetError, match=r"weq with 4 members cannot fit budget 5,214: "):
        ensemble_for(single, "weq", 4)


def test_models_train_on_cpu_after_counting_on_meta():
    count_params("resnet", 8, 4, 10, 1)
    model = create_model("resnet", 8, 4, num_classes=10, in_chans=1)
    out = model(torch.randn(2, 1, 16, 16))
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "family, depth, width",
    [
        ("resnet", 8, 4),
        ("resnet_bottleneck", 11, 4),
        ("se_resnet", 8, 4),
        ("wrn", 10, 1),
        ("densenet_bc", 10, 4),
        ("resnext29", 11, 2),
        ("pyramidnet", 11, 8),
        ("shake_shake", 8, 16),
    ],
)
def test_design_macs_equal_torch_flop_counter_halved(family, depth, width):
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(family, depth, width, num_classes=10, in_chans=3).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert forward_macs(family, depth, width, 10, 3, 32) == counter.get_total_flops() // 2
