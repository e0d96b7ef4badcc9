"""The paper presets: each one's resolved recipe and design points are the paper's (tables and sections cited)."""

from functools import cache

import pytest

from spaces.spec import load_spec, trial_configs


@cache
def _configs(preset: str) -> list[dict]:
    return trial_configs(load_spec(preset))


def _recipe(preset: str, family: str, design_class: str = "single", **design) -> dict:
    for config in _configs(preset):
        d = config["design"]
        if d["family"] == family and d["design_class"] == design_class and all(d[k] == v for k, v in design.items()):
            return config["recipe"]
    raise AssertionError(f"no {design_class} {family} {design} design in {preset}")


def _subset(recipe: dict, expected: dict) -> dict:
    return {k: recipe[k] for k in expected}


# Divide and Co-training, section 4 and Table 1 (CIFAR).
DCT_CIFAR = {
    "lr": 0.1, "momentum": 0.9, "nesterov": True, "schedule": "cosine", "warmup_epochs": 20, "batch_size": 128,
    "autoaugment": True, "random_erasing": 0.5, "mixup_alpha": 0.2, "crop_padding": 4, "flip": True,
}  # fmt: skip


def test_dct_cifar100_trains_300_epochs_with_the_papers_recipe():
    assert {c["epochs"] for c in _configs("dct_cifar100")} == {300}
    assert _subset(_recipe("dct_cifar100", "resnet_bottleneck", depth=110), DCT_CIFAR) == DCT_CIFAR


def test_dct_cifar100_co_trains_with_lambda_0_5_warmed_up_over_40_epochs():
    recipe = _recipe("dct_cifar100", "resnet_bottleneck", "dct", depth=110, members=2)
    assert (recipe["lambda_cot"], recipe["cot_warmup_epochs"], recipe["member_views"]) == (0.5, 40, True)


@pytest.mark.parametrize(
    ("family", "design", "weight_decay"),
    [
        ("resnet_bottleneck", {"depth": 164}, 1e-4),
        ("se_resnet_bottleneck", {"depth": 110}, 1e-4),
        ("wrn", {"depth": 16, "width": 8}, 1e-4),
        ("wrn", {"depth": 28, "width": 10}, 5e-4),
        ("wrn", {"depth": 40, "width": 10}, 5e-4),
        ("resnext29", {"depth": 29}, 5e-4),
        ("densenet_bc", {"depth": 190}, 1e-4),
        ("pyramidnet", {"depth": 272}, 1e-4),
    ],
)
def test_dct_cifar100_weight_decay_is_5e_4_only_for_resnext_29_and_wrn_28_and_40_10(family, design, weight_decay):
    assert _recipe("dct_cifar100", family, **design)["weight_decay"] == weight_decay


@pytest.mark.parametrize(("family", "precision"), [("densenet_bc", "fp16"), ("pyramidnet", "fp16"), ("wrn", "fp32")])
def test_dct_cifar100_trains_densenet_190_and_pyramidnet_272_in_mixed_precision(family, precision):
    # Table 2: DenseNet-BC-190 and PyramidNet-272 with mixed precision.
    assert _recipe("dct_cifar100", family)["precision"] == precision


def test_dct_imagenet_recipe_is_the_papers():
    expected = {
        "lr": 0.1, "schedule": "cosine", "warmup_epochs": 5, "batch_size": 256, "label_smoothing": 0.1,
        "autoaugment": True, "nesterov": True,
    }  # fmt: skip
    assert {c["epochs"] for c in _configs("dct_imagenet")} == {120}
    assert {c["dataset"]["image_size"] for c in _configs("dct_imagenet")} == {224}
    assert _subset(_recipe("dct_imagenet", "resnet_imagenet"), expected) == expected
    dct = _recipe("dct_imagenet", "wrn_imagenet", "dct", members=2)
    assert (dct["lambda_cot"], dct["cot_warmup_epochs"]) == (0.5, 60)


def test_dct_imagenet_divides_resnet_50_to_base_44_and_wrn_50_2_to_a_resnet_50():
    designs = {(c["design"]["family"], c["design"]["budget_width"], c["design"]["members"]): c["design"]
               for c in _configs("dct_imagenet") if c["design"]["design_class"] == "dct"}  # fmt: skip
    assert designs[("resnet_imagenet", 64, 2)]["width"] == 44
    assert designs[("wrn_imagenet", 2, 2)]["width"] == 1
    assert designs[("wrn_imagenet", 3, 2)]["width"] == 2


# More or Less, Table A (step schedule x0.1 at the listed epochs); ensemble sizes k in {4, 6, 8}.


@pytest.mark.parametrize(
    ("preset", "family", "epochs", "milestones", "batch_size", "weight_decay"),
    [
        ("more_or_less_resnet", "resnet", 250, [100, 200], 128, 1e-4),
        ("more_or_less_densenet", "densenet_bc", 120, [60, 90], 128, 1e-3),
        ("more_or_less_wrn", "wrn", 200, [100, 200], 128, 1e-4),
    ],
)
def test_more_or_less_presets_follow_table_a(preset, family, epochs, milestones, batch_size, weight_decay):
    recipe = _recipe(preset, family)
    assert {c["epochs"] for c in _configs(preset)} == {epochs}
    assert (recipe["schedule"], recipe["milestones"], recipe["gamma"]) == ("step", milestones, 0.1)
    assert (recipe["batch_size"], recipe["weight_decay"]) == (batch_size, weight_decay)
    assert {c["design"]["members"] for c in _configs(preset) if c["design"]["design_class"] != "single"} == {4, 6, 8}


def test_more_or_less_resnet_uses_option_a_and_deq_widths_of_w_over_root_k():
    designs = [c["design"] for c in _configs("more_or_less_resnet")]
    assert {d["family_args"]["shortcut"] for d in designs} == {"A"}
    deq4 = {d["budget_width"]: d["width"] for d in designs if d["design_class"] == "deq" and d["members"] == 4}
    assert deq4 == {16: 8, 24: 12, 32: 16, 48: 24}
    assert {d["fit"] for d in designs} == {"deq=nearest,weq=floor"}


def test_more_or_less_resnet_budgets_are_the_appendix_totals():
    budgets = {(c["design"]["budget_depth"], c["design"]["budget_width"]): c["design"]["budget"]
               for c in _configs("more_or_less_resnet")}  # fmt: skip
    assert [round(budgets[p], -4) for p in [(38, 32), (26, 48), (38, 48)]] == [2.24e6, 3.28e6, 5.03e6]


def test_more_or_less_densenet_counts_and_trains_the_24_channel_stem_densenet_b_sized_by_nearest():
    designs = [c["design"] for c in _configs("more_or_less_densenet")]
    assert {(d["family_args"]["stem_channels"], d["family_args"]["compression"]) for d in designs} == {(24, 1.0)}
    assert {d["fit"] for d in designs} == {"nearest"}


# Cooperative learning, section 5.1 (CIFAR-100).


def test_coop_cifar100_follows_section_5_1():
    recipe = _recipe("coop_cifar100", "resnet_bottleneck_4stage", "coop")
    assert {c["epochs"] for c in _configs("coop_cifar100")} == {200}
    assert (recipe["lr"], recipe["schedule"], recipe["gamma"]) == (0.1, "step", 0.1)
    assert recipe["milestones"] == [75, 130, 180]
    assert (recipe["momentum"], recipe["weight_decay"]) == (0.9, 5e-4)
    assert recipe["gumbel_tau"] == pytest.approx(2 / 3)
    assert recipe["scales"] == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_coop_cifar100_backbone_is_the_cifar_stem_resnet_152():
    design = _configs("coop_cifar100")[0]["design"]
    assert (design["family"], design["depth"], design["width"]) == ("resnet_bottleneck_4stage", 152, 64)
    assert design["params_member"] == pytest.approx(58.34e6, rel=1e-3)  # ResNet-152 (CIFAR stem), 100 classes
