"""Model families: exact counts (meta = instantiated = published), division rules, valid depths, small forward passes.

Big models are only ever built on the meta device; CPU instances are tiny configurations.
"""

import math

import pytest
import torch
import torchvision
from torch import nn

from spaces.counting import count_params, forward_macs
from spaces.families import create_model, get_family, list_families
from spaces.families.pyramidnet import ShakeDrop, ShakeDropFunction
from spaces.families.shake_shake import shake_shake

# A small, valid configuration of every family: (family, depth, width, options).
SMALL_CIFAR = [
    ("resnet", 8, 4, {}),
    ("resnet_bottleneck", 11, 4, {}),
    ("se_resnet", 8, 16, {}),
    ("se_resnet_bottleneck", 11, 4, {}),
    ("wrn", 10, 1, {"drop_rate": 0.3}),
    ("densenet_bc", 10, 4, {"drop_rate": 0.2}),
    ("resnext29", 11, 2, {"base_width": 4}),
    ("pyramidnet", 11, 8, {"shakedrop_p": 0.5}),
    ("shake_shake", 8, 8, {}),
]
SMALL_IMAGENET = [
    ("resnet_imagenet", 50, 8, {}),
    ("wrn_imagenet", 50, 1, {}),
    ("resnext_imagenet", 50, 2, {"width_per_group": 4}),
]
IDS = [case[0] for case in SMALL_CIFAR + SMALL_IMAGENET]
# The families built in this package's newer modules; the CIFAR ResNets have their own forward-pass tests.
NEW_CIFAR = [
    case for case in SMALL_CIFAR if case[0] in {"wrn", "densenet_bc", "resnext29", "pyramidnet", "shake_shake"}
]
NEW_IDS = [case[0] for case in NEW_CIFAR]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(family: str, depth: int, width: int, num_classes: int = 10, **options) -> nn.Module:
    with torch.device("meta"):
        return create_model(family, depth, width, num_classes=num_classes, **options)


# --- registry ------------------------------------------------------------------------------------------------------


def test_every_family_named_in_the_contract_is_registered():
    expected = {
        "resnet", "resnet_bottleneck", "se_resnet", "se_resnet_bottleneck", "wrn", "densenet_bc", "resnext29",
        "pyramidnet", "shake_shake", "resnet_imagenet", "wrn_imagenet", "resnext_imagenet",
    }  # fmt: skip
    assert expected <= set(list_families())


@pytest.mark.parametrize("name", sorted(list_families()))
def test_default_configuration_of_every_family_is_valid_and_counts_on_meta(name):
    family = get_family(name)
    assert family.is_valid_depth(family.default_depth)
    n = count_params(name, family.default_depth, family.default_width, family.num_classes)
    assert n > 100_000


# --- exact counting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "depth", "width", "options"), SMALL_CIFAR + SMALL_IMAGENET, ids=IDS)
def test_meta_count_equals_count_of_a_cpu_instance(family, depth, width, options):
    model = create_model(family, depth, width, num_classes=7, in_chans=1, **options)
    assert count_params(family, depth, width, 7, in_chans=1, options=options) == _n_params(model)


@pytest.mark.parametrize(("family", "depth", "width", "options"), NEW_CIFAR, ids=NEW_IDS)
def test_forward_macs_are_counted_for_every_new_cifar_family(family, depth, width, options):
    small = forward_macs(family, depth, width, 10, 1, 16, options=options)
    large = forward_macs(family, depth, width, 10, 1, 32, options=options)
    # Convolutions dominate, so 4x the pixels is close to 4x the MACs.
    assert 0 < small < large <= 4 * small


@pytest.mark.parametrize(("family", "depth", "width", "options"), SMALL_IMAGENET, ids=[c[0] for c in SMALL_IMAGENET])
def test_forward_macs_are_counted_for_every_imagenet_family(family, depth, width, options):
    # At least the 7x7 stem: 64 x 1 x 49 MACs at each of 16 x 16 output positions of a 32 x 32 input.
    assert forward_macs(family, depth, width, 10, 1, 32, options=options) > 64 * 49 * 16 * 16


# --- published parameter counts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "depth", "width", "num_classes", "options", "published"),
    [
        ("wrn", 28, 10, 100, {}, 36.5e6),  # Zagoruyko & Komodakis, WRN-28-10
        ("wrn", 28, 10, 10, {}, 36.48e6),
        ("wrn", 16, 8, 10, {}, 11.0e6),
        ("wrn", 40, 10, 10, {}, 55.84e6),
        ("densenet_bc", 100, 12, 10, {}, 0.77e6),  # Huang et al., DenseNet-BC (k=12); 0.8M in their table
        ("densenet_bc", 190, 40, 10, {}, 25.6e6),
        ("resnext29", 29, 8, 10, {"base_width": 64}, 34.4e6),  # Xie et al., ResNeXt-29 8x64d
        ("resnext29", 29, 16, 10, {"base_width": 64}, 68.1e6),
        ("pyramidnet", 272, 200, 10, {}, 26.0e6),  # Han et al., bottleneck PyramidNet-272 alpha=200
        ("shake_shake", 26, 96, 10, {}, 26.2e6),  # Gastaldi, Shake-Shake-26 2x96d
        ("shake_shake", 26, 32, 10, {}, 2.9e6),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else "",
)
def test_count_matches_the_published_total(family, depth, width, num_classes, options, published):
    assert count_params(family, depth, width, num_classes, options=options) == pytest.approx(published, rel=0.01)


def test_pyramidnet_272_conv_and_linear_weights_match_the_paper_exactly():
    # The paper's 26.0M leaves out BN affine parameters; the rest agrees to the thousand.
    model = _meta("pyramidnet", 272, 200)
    weights = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                  for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))  # fmt: skip
    assert weights == pytest.approx(26.0e6, abs=5_000)


@pytest.mark.parametrize(
    ("family", "depth", "width", "options", "constructor"),
    [
        ("resnet_imagenet", 50, 64, {}, torchvision.models.resnet50),
        ("resnet_imagenet", 152, 64, {}, torchvision.models.resnet152),
        ("wrn_imagenet", 50, 2, {}, torchvision.models.wide_resnet50_2),
        ("wrn_imagenet", 101, 2, {}, torchvision.models.wide_resnet101_2),
        ("resnext_imagenet", 101, 64, {"width_per_group": 4}, torchvision.models.resnext101_64x4d),
        ("resnext_imagenet", 50, 32, {"width_per_group": 4}, torchvision.models.resnext50_32x4d),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_imagenet_count_equals_torchvision_constructor_exactly(family, depth, width, options, constructor):
    with torch.device("meta"):
        reference = _n_params(constructor())
    assert count_params(family, depth, width, 1000, options=options) == reference


def test_imagenet_family_with_one_input_channel_differs_only_in_the_stem():
    # conv1 is 64 x in_chans x 7 x 7: two fewer channels, 2 * 64 * 49 fewer weights.
    assert count_params("resnet_imagenet", 50, 64, 1000) - count_params("resnet_imagenet", 50, 64, 1000, 1) == 6272


# Divide and Co-training, Table 3 (ImageNet): every stage is divided, so the members' total stays near the original's.


def _divided_total(family: str, depth: int, width: int, splits: int, options: dict | None = None) -> int:
    member = get_family(family).divide_width(width, splits)
    return splits * count_params(family, depth, member, 1000, options=options)


def test_resnet_50_undivided_has_25_6m_parameters():
    assert _divided_total("resnet_imagenet", 50, 64, 1) == 25_557_032  # Table 3: 25.6M


@pytest.mark.parametrize("depth", [50, 101])
def test_imagenet_resnet_divided_by_2_and_4_stays_within_9_percent_of_the_original(depth):
    # Base width 64 -> 44 -> 32 divides every stage; dividing only the bottleneck width left ResNet-50 at S=2 37% over.
    whole = _divided_total("resnet_imagenet", depth, 64, 1)
    assert [abs(_divided_total("resnet_imagenet", depth, 64, s) / whole - 1) < 0.09 for s in (2, 4)] == [True, True]


def test_imagenet_resnet_divided_members_have_the_reference_stage_widths():
    model = _meta("resnet_imagenet", 50, get_family("resnet_imagenet").divide_width(64, 2), num_classes=1000)
    assert [model.conv1.out_channels] + [getattr(model, f"layer{i}")[0].conv1.out_channels for i in (1, 2, 3, 4)] == [
        44, 44, 88, 176, 352,
    ]  # fmt: skip


def test_wrn_50_2_divided_by_2_is_two_resnet_50s_of_about_51_4m():
    total = _divided_total("wrn_imagenet", 50, 2, 2)
    assert total == 2 * count_params("resnet_imagenet", 50, 64, 1000)
    # Table 3 quotes 51.4M; the reference's deep 3x3 stem adds 0.13M per member to torchvision's 7x7 stem.
    assert total == pytest.approx(51.4e6, rel=0.01)


def test_wrn_50_3_divided_by_2_is_two_wrn_50_2s():
    assert _divided_total("wrn_imagenet", 50, 3, 2) == 2 * count_params("wrn_imagenet", 50, 2, 1000)


def test_resnext_101_64x4d_divided_by_2_keeps_4_channels_per_group_in_32_groups():
    model = _meta("resnext_imagenet", 101, get_family("resnext_imagenet").divide_width(64, 2), 1000, width_per_group=4)
    grouped = model.layer1[0].conv2
    assert (grouped.groups, grouped.out_channels // grouped.groups) == (32, 4)


# --- division rules (Divide-and-Co-train) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "width", "divided"),
    [
        ("resnet", 16, {1: 16, 2: 12, 4: 8, 8: 6, 16: 4}),
        ("resnet_bottleneck", 16, {2: 12, 4: 8, 8: 6, 16: 4}),
        ("wrn", 10, {1: 10, 2: 7, 4: 5}),
        ("wrn", 1, {2: 1, 4: 1}),
        ("densenet_bc", 40, {1: 40, 2: 28, 4: 20}),
        ("densenet_bc", 12, {2: 8, 4: 6}),
        ("resnext29", 8, {1: 8, 2: 4, 4: 2, 16: 1}),
        ("pyramidnet", 200, {1: 200, 2: 141, 4: 100}),
        ("shake_shake", 96, {1: 96, 2: 64, 4: 48, 8: 32, 16: 16}),
        ("shake_shake", 16, {2: 10, 4: 8}),
        ("resnet_imagenet", 64, {1: 64, 2: 44, 4: 32, 8: 24}),  # DCT reference, model/resnet.py inplanes_dict
        ("wrn_imagenet", 2, {2: 1}),  # WRN-50-2 -> ResNet-50 (DCT Table 3)
        ("wrn_imagenet", 3, {2: 2}),  # WRN-50-3 -> WRN-50-2
        ("resnext_imagenet", 64, {2: 32, 4: 16}),
    ],
)
def test_division_rule_gives_the_reference_member_widths(family, width, divided):
    rule = get_family(family).divide_width
    assert {splits: rule(width, splits) for splits in divided} == divided


@pytest.mark.parametrize("growth", range(1, 65))
@pytest.mark.parametrize("splits", [2, 3, 4, 8])
def test_densenet_division_is_exactly_the_reference_integer_expression(growth, splits):
    assert get_family("densenet_bc").divide_width(growth, splits) == max(int(growth / math.sqrt(splits) * 2) // 2, 1)


@pytest.mark.parametrize("widen", range(1, 21))
@pytest.mark.parametrize("splits", [2, 4, 8])
def test_wrn_division_is_floor_of_k_over_root_s_plus_0_4(widen, splits):
    assert get_family("wrn").divide_width(widen, splits) == max(math.floor(widen / math.sqrt(splits) + 0.4), 1)


@pytest.mark.parametrize("name", sorted(list_families()))
def test_division_never_widens_and_respects_the_minimum_width(name):
    family = get_family(name)
    for width in range(family.min_width, 257):
        for splits in (2, 4, 8, 16):
            assert family.min_width <= family.divide_width(width, splits) <= width


def test_dct_divided_wrn_28_10_has_about_half_the_parameters_per_member():
    whole = count_params("wrn", 28, 10, 100)
    member = count_params("wrn", 28, get_family("wrn").divide_width(10, 2), 100)
    assert 0.45 < member / whole < 0.55


def test_divided_densenet_stem_has_twice_the_divided_growth_rate():
    growth = get_family("densenet_bc").divide_width(40, 2)
    assert _meta("densenet_bc", 190, growth).stem.out_channels == 2 * growth == 56


def test_divided_resnext_keeps_channels_per_group():
    model = _meta("resnext29", 29, get_family("resnext29").divide_width(8, 2), base_width=64)
    grouped = model.blocks[0].conv2
    assert (grouped.groups, grouped.out_channels // grouped.groups) == (4, 64)


@pytest.mark.parametrize(
    ("family", "option", "value", "splits", "expected"),
    [
        ("wrn", "drop_rate", 0.3, 2, 0.3 / math.sqrt(2)),
        ("densenet_bc", "drop_rate", 0.2, 4, 0.1),
        ("pyramidnet", "shakedrop_p", 0.5, 2, 0.5 / math.sqrt(2)),
    ],
)
def test_regularization_option_is_divided_by_root_s(family, option, value, splits, expected):
    divided = get_family(family).divide_regularization({option: value}, splits)
    assert divided[option] == pytest.approx(expected)


def test_pyramidnet_default_shakedrop_is_regularization_and_divided():
    assert get_family("pyramidnet").divide_regularization({}, 4)["shakedrop_p"] == pytest.approx(0.25)


def test_resnext_base_width_is_not_regularization():
    assert get_family("resnext29").divide_regularization({"base_width": 64}, 4)["base_width"] == 64


# --- valid depths --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "valid", "invalid"),
    [
        ("wrn", [10, 16, 28, 40], [4, 8, 26, 29]),
        ("densenet_bc", [10, 40, 100, 190, 250], [4, 99, 101, 121]),
        ("resnext29", [11, 20, 29], [2, 9, 28, 30]),
        ("pyramidnet", [11, 110, 164, 272], [2, 164 - 1, 270]),
        ("shake_shake", [8, 14, 26], [2, 6, 27]),
        ("resnet_imagenet", [50, 101, 152], [18, 34, 49, 200]),
        ("wrn_imagenet", [50, 101], [18, 34, 200]),
        ("resnext_imagenet", [50, 101, 152], [18, 29, 100]),
    ],
)
def test_valid_depth_rule_accepts_and_rejects(family, valid, invalid):
    rule = get_family(family)
    assert [rule.is_valid_depth(d) for d in valid] == [True] * len(valid)
    assert [rule.is_valid_depth(d) for d in invalid] == [False] * len(invalid)


def test_create_model_rejects_an_invalid_depth_naming_the_rule():
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wrn", 26, 1)


def test_valid_depths_lists_the_rule_in_order():
    assert get_family("resnext29").valid_depths(40) == [11, 20, 29, 38]
    assert get_family("resnet_imagenet").valid_depths(120) == [50, 101]


# --- training-mode forward and backward on CPU ---------------------------------------------------------------------


@pytest.mark.parametrize(("in_chans", "size"), [(1, 16), (1, 32), (3, 32)])
@pytest.mark.parametrize(("family", "depth", "width", "options"), NEW_CIFAR, ids=NEW_IDS)
def test_small_cifar_model_trains_one_step_with_finite_logits_and_gradients(
    family, depth, width, options, in_chans, size
):
    torch.manual_seed(0)
    model = create_model(family, depth, width, num_classes=5, in_chans=in_chans, **options).train()
    logits = model(torch.randn(2, in_chans, size, size))
    nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(("family", "depth", "width", "options"), SMALL_IMAGENET, ids=[c[0] for c in SMALL_IMAGENET])
def test_small_imagenet_model_with_one_input_channel_runs_forward_and_backward(family, depth, width, options):
    model = create_model(family, depth, width, num_classes=3, in_chans=1, **options).train()
    logits = model(torch.randn(2, 1, 32, 32))
    logits.sum().backward()
    assert logits.shape == (2, 3)
    assert model.conv1.weight.grad.shape[1:] == (1, 7, 7)


@pytest.mark.parametrize(("family", "depth", "width", "options"), NEW_CIFAR, ids=NEW_IDS)
def test_small_cifar_model_runs_forward_and_backward_on_meta(family, depth, width, options):
    model = _meta(family, depth, width, **options).train()
    x = torch.randn(2, 3, 32, 32, device="meta", requires_grad=True)
    model(x).sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(("family", "depth", "width", "options"), NEW_CIFAR, ids=NEW_IDS)
def test_eval_mode_is_deterministic(family, depth, width, options):
    torch.manual_seed(0)
    model = create_model(family, depth, width, num_classes=5, **options).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


# --- ShakeDrop and Shake-Shake -------------------------------------------------------------------------------------


def test_shakedrop_function_scales_forward_and_gradient_separately():
    x = torch.ones(2, 3, requires_grad=True)
    forward_scale, backward_scale = torch.tensor([[-0.5], [1.0]]), torch.tensor([[0.25], [1.0]])
    y = ShakeDropFunction.apply(x, forward_scale, backward_scale)
    y.sum().backward()
    assert torch.equal(y, torch.tensor([[-0.5] * 3, [1.0] * 3]))
    assert torch.equal(x.grad, torch.tensor([[0.25] * 3, [1.0] * 3]))


def test_shakedrop_always_dropping_uses_alpha_forward_and_beta_backward_per_image():
    torch.manual_seed(0)
    layer = ShakeDrop(1.0).train()
    x = torch.ones(4096, 2, 3, 3, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    alpha, beta = y[:, 0, 0, 0], x.grad[:, 0, 0, 0]
    assert torch.equal(y, alpha.view(-1, 1, 1, 1).expand_as(y))  # one coefficient per image
    assert alpha.min() >= -1 and alpha.max() <= 1 and alpha.mean().abs() < 0.05
    assert beta.min() >= 0 and beta.max() <= 1 and (beta.mean() - 0.5).abs() < 0.05
    assert abs(torch.corrcoef(torch.stack((alpha, beta)))[0, 1]) < 0.1  # drawn independently


def test_shakedrop_keeps_the_branch_with_probability_one_minus_p():
    torch.manual_seed(0)
    y = ShakeDrop(0.25).train()(torch.full((20000, 1), 2.0))
    assert (y == 2.0).float().mean().item() == pytest.approx(0.75, abs=0.02)


def test_shakedrop_in_eval_scales_by_its_expected_value():
    assert torch.equal(ShakeDrop(0.4).eval()(torch.ones(3, 2)), torch.full((3, 2), 0.6))


def test_pyramidnet_shakedrop_probability_increases_linearly_to_the_final_value():
    model = _meta("pyramidnet", 29, 12, shakedrop_p=0.5)
    probs = [m.p_drop for m in model.modules() if isinstance(m, ShakeDrop)]
    assert probs == pytest.approx([0.5 * (i + 1) / 9 for i in range(9)])


def test_shake_shake_mixes_forward_with_alpha_and_splits_gradient_with_independent_beta():
    torch.manual_seed(0)
    x1 = torch.zeros(4096, 1, requires_grad=True)
    x2 = torch.ones(4096, 1, requires_grad=True)
    y = shake_shake(x1, x2, training=True)  # = 1 - alpha
    y.sum().backward()
    beta = x1.grad[:, 0]
    assert torch.allclose(x1.grad + x2.grad, torch.ones_like(x1.grad))
    assert y.min() >= 0 and y.max() <= 1 and (y.mean() - 0.5).abs() < 0.05
    assert beta.min() >= 0 and beta.max() <= 1
    assert abs(torch.corrcoef(torch.stack((y[:, 0].detach(), beta)))[0, 1]) < 0.1


def test_shake_shake_in_eval_averages_the_branches():
    assert torch.equal(shake_shake(torch.zeros(2, 2), torch.full((2, 2), 4.0), training=False), torch.full((2, 2), 2.0))


# --- numbers of the papers: SE reduction, option-A shortcuts, PyramidNet division, More-or-Less DenseNet ----------


@pytest.mark.parametrize(("depth", "published"), [(110, 1.69e6), (164, 2.51e6)])
def test_se_resnet_on_cifar100_matches_dct_table_2(depth, published):
    # Divide and Co-training, Table 2: SE-ResNet-110 1.69M, SE-ResNet-164 2.51M (SE reduction 4, as its code on CIFAR).
    assert round(count_params("se_resnet_bottleneck", depth, 16, 100), -4) == published


def test_se_reduction_stays_4_in_a_divided_member():
    model = _meta("se_resnet_bottleneck", 164, get_family("se_resnet_bottleneck").divide_width(16, 2))
    se = model.layers[0].se
    assert se.fc1.in_channels // se.fc1.out_channels == 4


@pytest.mark.parametrize(("depth", "width", "published"), [(38, 32, 2.24e6), (26, 48, 3.28e6), (38, 48, 5.03e6)])
def test_option_a_resnet_matches_the_more_or_less_appendix_totals(depth, width, published):
    # More or Less, appendix (k = 4 tables): ResNet (depth 38, width 32) 2.24M, (26, 48) 3.28M, (38, 48) 5.03M.
    assert round(count_params("resnet", depth, width, 10, options={"shortcut": "A"}), -4) == published


def test_option_a_shortcut_has_no_parameters_and_zero_pads_the_strided_input():
    torch.manual_seed(0)
    model = create_model("resnet", 8, 4, num_classes=3, shortcut="A")
    block = model.layers[1]  # first block of stage two: stride 2, 4 -> 8 channels
    x = torch.randn(2, 4, 8, 8)
    out = block.shortcut(x)
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])
    assert out[:, :2].abs().sum() == 0 and out[:, 6:].abs().sum() == 0


def test_option_b_is_the_default_cifar_resnet_shortcut():
    assert count_params("resnet", 38, 32, 10) == count_params("resnet", 38, 32, 10, options={"shortcut": "B"})


def test_pyramidnet_272_divided_by_2_uses_the_unrounded_rate_and_totals_28_87m():
    from spaces.designs import Shape, ensemble_for, single_at

    single = single_at("pyramidnet", 272, 200, Shape(100, 3, 32), {}, "floor")
    member = ensemble_for(single, "dct", 2)
    assert member.family_args["exact_alpha"] == pytest.approx(200 / math.sqrt(2))
    assert round(member.params_total, -4) == 28.87e6  # DCT Table 2; rounding alpha to 141 gave 28.72M


def test_densenet_with_a_24_channel_stem_and_compression_1_is_densenet_b():
    # The More-or-Less code's DenseNet: a fixed 24-channel stem, transitions that keep every channel.
    model = _meta("densenet_bc", 40, 12, stem_channels=24, compression=1.0)
    transitions = [m for m in model.features if type(m).__name__ == "Transition"]
    assert model.stem.out_channels == 24
    assert [(t.conv.in_channels, t.conv.out_channels) for t in transitions] == [(24 + 6 * 12,) * 2, (24 + 12 * 12,) * 2]
    assert model.features[0].conv1.out_channels == 4 * 12  # 4 x growth bottleneck
    assert sum(type(m).__name__ == "DenseLayer" for m in model.features) == 3 * (40 - 4) // 6


def test_cifar_stem_resnet_152_has_four_stages_of_3_8_36_3_bottlenecks_and_46_skippable_blocks():
    # Cooperative learning, section 5.1: ResNet-152 (bottleneck, [3, 8, 36, 3]) with a CIFAR 3x3 stem.
    from spaces.families.depthmask import skippable_blocks

    model = _meta("resnet_bottleneck_4stage", 152, 64, num_classes=10)
    assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
    widths = [block.conv1.out_channels for block in model.layers]
    assert [widths.count(w) for w in (64, 128, 256, 512)] == [3, 8, 36, 3]
    assert len(skippable_blocks(model)) == 50 - 4
    assert count_params("resnet_bottleneck_4stage", 152, 64, 10) == pytest.approx(58.16e6, rel=1e-3)
