"""The `coop` design class in specs: its design point, its recipe keys and their one-line errors."""

from __future__ import annotations

import re

import pytest

from spaces.spec import SpecError, load_spec, trial_configs


def test_coop_cifar100_preset_is_three_cifar_stem_resnet_152s_beside_the_single_one():
    spec = load_spec("coop_cifar100")
    by_class = {d.design_class: d for d in spec.designs}
    assert set(by_class) == {"single", "coop"}
    coop = by_class["coop"]
    # Cooperative learning, section 5.1: ResNet-152 (bottleneck, [3, 8, 36, 3]) with a CIFAR stem.
    assert (coop.family, coop.depth, coop.width, coop.members) == ("resnet_bottleneck_4stage", 152, 64, 3)
    assert coop.params_total == 3 * by_class["single"].params_total
    recipe = next(c["recipe"] for c in trial_configs(spec) if c["design"]["design_class"] == "coop")
    assert recipe["scales"] == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_coop_keys_reach_only_the_coop_trials_recipes():
    configs = trial_configs(load_spec("coop_digits"))
    single = next(c for c in configs if c["design"]["design_class"] == "single")
    assert "scales" not in single["recipe"] and "gumbel_tau" not in single["recipe"]


def test_coop_scales_default_to_0_2_through_1_0():
    spec = load_spec("coop_digits", ["classes=['coop']"])
    spec.data["_raw_recipe"]["coop"].pop("scales")
    assert trial_configs(spec)[0]["recipe"]["scales"] == [0.2, 0.4, 0.6, 0.8, 1.0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("recipe.coop.scales=[0.0, 1.0]", "recipe.coop.scales = [0.0, 1.0]: must be a non-empty list"),
        ("recipe.coop.scales=[1.5]", "scaling factors in (0, 1]"),
        ("recipe.coop.scales=[]", "recipe.coop.scales = []: must be a non-empty list"),
        ("recipe.coop.scales=[0.5, 0.5]", "must not repeat a scaling factor"),
        ("recipe.coop.gumbel_tau=0", "recipe.coop.gumbel_tau = 0.0: must be > 0"),
        ("recipe.coop.widths=[0.5, 1.0]", "recipe.coop.widths = [0.5, 1.0]: unknown key"),
        ("recipe.single.scales=[0.5]", "recipe.single.scales = [0.5]: unknown key"),
    ],
)
def test_bad_coop_keys_are_one_line_errors(override, message):
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        load_spec("coop_digits", [override])
    assert "\n" not in str(err.value)


def test_coop_on_a_family_without_depth_masks_names_the_family():
    with pytest.raises(SpecError, match="'coop' needs a depth-maskable family .*families.0 is 'wrn'"):
        load_spec("coop_digits", ["families.0.name=wrn", "families.0.depths=[10]", "families.0.widths=[1]"])
