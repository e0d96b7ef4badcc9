"""The `mutual` design class in specs: its design point, its recipe keys and their one-line errors."""

from __future__ import annotations

import re

import pytest

from spaces.spec import SpecError, load_spec, trial_configs


def test_mutual_cifar100_preset_is_one_slimmable_wrn_28_10_beside_the_single_one():
    spec = load_spec("mutual_cifar100")
    by_class = {d.design_class: d for d in spec.designs}
    assert set(by_class) == {"single", "mutual"}
    mutual = by_class["mutual"]
    assert (mutual.family, mutual.depth, mutual.width, mutual.members) == ("wrn", 28, 10, 1)
    assert mutual.params_total == by_class["single"].params_total == mutual.budget
    recipe = next(c["recipe"] for c in trial_configs(spec) if c["design"]["design_class"] == "mutual")
    assert recipe["widths"] == [0.9, 1.0] and recipe["resolutions"] == [32, 28, 24, 20]


def test_mutual_keys_reach_only_the_mutual_trials_recipes():
    configs = trial_configs(load_spec("mutual_digits"))
    single = next(c for c in configs if c["design"]["design_class"] == "single")
    assert "widths" not in single["recipe"] and "resolutions" not in single["recipe"]


def test_default_classes_stay_the_fixed_designs():
    spec = load_spec("digits")
    assert "mutual" not in {d.design_class for d in spec.designs}


def test_resolutions_default_to_fractions_of_the_image_size():
    spec = load_spec("mutual_digits", ["recipe.mutual.resolutions=[16]"])
    mutual = next(c for c in trial_configs(spec) if c["design"]["design_class"] == "mutual")
    assert mutual["recipe"]["resolutions"] == [16]
    raw = load_spec("mutual_cifar100")
    raw.data["_raw_recipe"]["mutual"].pop("resolutions")
    recipe = next(c for c in trial_configs(raw) if c["design"]["design_class"] == "mutual")["recipe"]
    assert recipe["resolutions"] == [32, 28, 24, 20]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("recipe.mutual.widths=[1.2, 1.0]", "recipe.mutual.widths = [1.2, 1.0]: must be [min, max]"),
        ("recipe.mutual.widths=[0.5]", "must be [min, max] with 0 < min <= max <= 1"),
        ("recipe.mutual.resolutions=[40, 16]", "every resolution must be in 1..16 (image_size)"),
        ("recipe.mutual.resolutions=[]", "recipe.mutual.resolutions = []: must not be empty"),
        ("recipe.mutual.width_step=0.0", "recipe.mutual.width_step = 0.0: must be in (0, 1]"),
        ("recipe.single.widths=[0.5, 1.0]", "recipe.single.widths = [0.5, 1.0]: unknown key"),
    ],
)
def test_bad_mutual_keys_are_one_line_errors(override, message):
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        load_spec("mutual_digits", [override])
    assert "\n" not in str(err.value)


def test_mutual_on_a_family_that_is_not_slimmable_names_the_family():
    with pytest.raises(SpecError, match="'mutual' needs a slimmable family .*families.0 is 'densenet_bc'"):
        load_spec("mutual_digits", ["families.0.name=densenet_bc", "families.0.depths=[40]", "families.0.widths=[4]"])
