"""Sweep specs: presets validate, overrides apply, every malformed spec fails early with one clear line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spaces.spec import SpecError, list_presets, load_spec, trial_configs

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
name = "tiny"
epochs = 2
seeds = [0]
classes = ["single", "deq", "weq", "dct"]
members = [2]

[dataset]
name = "digits"

[[families]]
name = "resnet"
depths = [14]
widths = [8]
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text), list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_default_preset_enumerates_all_four_classes_at_two_budgets():
    spec = load_spec("digits")
    assert {d.design_class for d in spec.designs} == {"single", "deq", "weq", "dct"}
    assert len({d.budget for d in spec.designs}) == 2
    assert spec.data["seeds"] == [0, 1]


@pytest.mark.parametrize("preset", ["dct_cifar100", "dct_imagenet", "more_or_less_wrn"])
def test_paper_presets_validate_and_enumerate(preset):
    spec = load_spec(preset)
    assert spec.designs
    assert all(d.params_total > 0 and d.macs > 0 for d in spec.designs)


def test_every_bundled_preset_is_known():
    assert set(list_presets()) >= {
        "digits",
        "more_or_less_resnet",
        "more_or_less_densenet",
        "more_or_less_wrn",
        "dct_cifar100",
        "dct_imagenet",
    }


def test_dct_preset_reproduces_wrn_28_10_at_published_size():
    spec = load_spec("dct_cifar100")
    wrn = next(d for d in spec.designs if d.family == "wrn" and d.depth == 28 and d.design_class == "single")
    assert wrn.params_total == pytest.approx(36.5e6, rel=0.01)


def test_overrides_replace_scalars_lists_and_array_entries(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL), ["epochs=5", "recipe.lr=0.02", "families.0.widths=[8, 16]"])
    assert spec.data["epochs"] == 5
    assert {d.budget_width for d in spec.designs} == {8, 16}
    assert all(c["recipe"]["lr"] == 0.02 for c in trial_configs(spec))


def test_override_of_an_unknown_key_is_rejected_like_a_typo_in_the_file(tmp_path):
    assert "recipe.lrr = 0.1: unknown key (did you mean 'lr'?)" in error_of(tmp_path, MINIMAL, ["recipe.lrr=0.1"])


def test_toml_syntax_error_names_the_line(tmp_path):
    message = error_of(tmp_path, MINIMAL + "\nepochs = = 3\n")
    assert message.endswith("spec.toml: TOML syntax error: Invalid value (at line 16, column 10)")


def test_unknown_top_level_key_is_rejected_with_a_suggestion(tmp_path):
    message = error_of(tmp_path, "epoch = 3\n" + MINIMAL)
    assert message.startswith("epoch = 3: unknown key (did you mean 'epochs'?)")


def test_wrong_type_names_key_value_and_expected_type(tmp_path):
    assert error_of(tmp_path, MINIMAL.replace("epochs = 2", 'epochs = "two"')) == ("epochs = 'two': must be an integer")


def test_unknown_family_lists_the_known_families(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace('name = "resnet"', 'name = "resnet9000"'))
    assert message.startswith("families.0.name = 'resnet9000': unknown family; allowed:")
    assert "'wrn'" in message and "'densenet_bc'" in message


def test_unknown_dataset_lists_the_data_sets(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace('name = "digits"', 'name = "mnist"'))
    assert message.startswith("dataset.name = 'mnist': not allowed; allowed: 'digits', 'cifar10'")


def test_unknown_design_class_lists_the_classes(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace('"dct"]', '"dtc"]'))
    assert "classes = " in message and "allowed: 'single', 'deq', 'weq', 'dct'" in message


def test_depth_invalid_for_its_family_names_the_rule(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("depths = [14]", "depths = [15]"))
    assert message == "families.0.depths = [15]: depth 15 is not valid for resnet; valid depths: 6n+2"


def test_ensemble_with_fewer_than_two_members_is_rejected(tmp_path):
    assert error_of(tmp_path, MINIMAL.replace("members = [2]", "members = [1]")).startswith("members = [1]:")


@pytest.mark.parametrize("key, text", [("epochs", "epochs = 0"), ("recipe.batch_size", "[recipe]\nbatch_size = -8")])
def test_non_positive_epochs_or_batch_size_is_rejected(tmp_path, key, text):
    spec = MINIMAL.replace("epochs = 2", "epochs = 2" if key != "epochs" else text)
    if key != "epochs":
        spec += "\n" + text + "\n"
    assert error_of(tmp_path, spec).startswith(f"{key} = ") and "must be > 0" in error_of(tmp_path, spec)


def test_budget_too_small_for_any_member_names_class_and_budget(tmp_path):
    tiny_budget = MINIMAL.replace("widths = [8]", "widths = [2]").replace("members = [2]", "members = [8]")
    message = error_of(tmp_path, tiny_budget)
    assert "families.0 (resnet): deq with 8 members cannot fit budget" in message


def test_skip_unfit_lists_ensembles_that_cannot_fit_instead_of_failing(tmp_path):
    text = MINIMAL.replace("members = [2]", "members = [8]\nskip_unfit = true").replace("widths = [8]", "widths = [2]")
    spec = load_spec(write(tmp_path, text))
    assert {d.design_class for d in spec.designs} == {"single", "dct"}
    assert any("cannot fit budget" in reason for reason in spec.skipped)


def test_fractional_gpus_need_the_explicit_option(tmp_path):
    message = error_of(tmp_path, MINIMAL + "\n[resources]\ngpus = 0.5\n")
    assert message.startswith("resources.gpus = 0.5: fractional GPUs need resources.fractional_gpu = true")


def test_packing_trials_on_a_gpu_needs_one_whole_gpu(tmp_path):
    message = error_of(tmp_path, MINIMAL + "\n[resources]\ngpus = 2\ntrials_per_gpu = 4\n")
    assert message == "resources.trials_per_gpu = 4: packs trials on one GPU; it needs resources.gpus = 1 (it is 2)"


def test_packing_trials_on_a_cpu_core_group_needs_their_thread_count(tmp_path):
    message = error_of(tmp_path, MINIMAL + "\n[resources]\ntrials_per_cpu_group = 2\n")
    assert message.startswith("resources.trials_per_cpu_group = 2: packed CPU trials need measure.threads > 0")


def test_packing_keys_at_their_defaults_keep_every_trial_id(tmp_path):
    plain = [c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL)))]
    explicit = ["resources.trials_per_gpu=1", "resources.trials_per_cpu_group=1"]
    assert [c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL), explicit))] == plain


def test_dry_run_says_how_many_trials_run_at_once_per_device(tmp_path):
    spec = str(write(tmp_path, MINIMAL))
    packed = ("--set", "measure.threads=1", "--set", "resources.trials_per_cpu_group=2")
    cpu = run_cli("--spec", spec, *packed, "--dry-run")
    assert cpu.stdout.splitlines()[-1].startswith(
        "trials at once per device: 2 per group of 1 CPU cores (each asks for 0.5 CPUs, runs 1 threads;")
    gpu = run_cli("--spec", spec, "--set", "resources.gpus=1", "--set", "resources.trials_per_gpu=4", "--dry-run")
    assert gpu.stdout.splitlines()[-1].startswith("trials at once per device: 4 per GPU (each asks for 0.25 GPU")


def test_unknown_family_option_is_rejected(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("widths = [8]", "widths = [8]\noptions = { dropout = 0.1 }"))
    assert message.startswith("families.0.options.dropout = 0.1: unknown option of resnet; allowed: drop_rate")


def test_milestones_past_the_last_epoch_are_rejected(tmp_path):
    message = error_of(tmp_path, MINIMAL + '\n[recipe]\nschedule = "step"\nmilestones = [1, 9]\n')
    assert message == "recipe.milestones = [1, 9]: milestones must be <= epochs (2)"


def test_dct_co_trains_on_member_views_and_other_classes_train_independently(tmp_path):
    recipes = {c["design"]["design_class"]: c["recipe"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL)))}
    assert (recipes["dct"]["lambda_cot"], recipes["dct"]["member_views"]) == (0.5, True)
    for cls in ("single", "deq", "weq"):
        assert (recipes[cls]["lambda_cot"], recipes[cls]["member_views"]) == (0.0, False)


def test_per_class_recipe_table_overrides_only_that_class(tmp_path):
    text = MINIMAL + "\n[recipe]\nlr = 0.05\n\n[recipe.deq]\nlambda_cot = 0.3\n"
    recipes = {c["design"]["design_class"]: c["recipe"] for c in trial_configs(load_spec(write(tmp_path, text)))}
    assert recipes["deq"]["lambda_cot"] == 0.3 and recipes["weq"]["lambda_cot"] == 0.0
    assert all(r["lr"] == 0.05 for r in recipes.values())


@pytest.mark.parametrize("policy, factor", [("none", 1.0), ("exp", 0.6065306597), ("linear", 0.5)])
def test_weight_decay_policy_divides_dct_weight_decay_only(tmp_path, policy, factor):
    text = MINIMAL + f'\n[recipe]\nweight_decay = 1e-3\nwd_policy = "{policy}"\n'
    recipes = {c["design"]["design_class"]: c["recipe"] for c in trial_configs(load_spec(write(tmp_path, text)))}
    assert recipes["dct"]["weight_decay"] == pytest.approx(1e-3 * factor)
    assert recipes["deq"]["weight_decay"] == pytest.approx(1e-3)


@pytest.mark.parametrize("epochs, warmup", [(300, 40), (30, 4), (2, 0)])
def test_co_training_warm_up_is_40_of_300_epochs_scaled_to_the_run(tmp_path, epochs, warmup):
    spec = load_spec(write(tmp_path, MINIMAL), [f"epochs={epochs}"])
    dct = next(c for c in trial_configs(spec) if c["design"]["design_class"] == "dct")
    assert dct["recipe"]["cot_warmup_epochs"] == warmup


def test_trial_ids_are_stable_and_ignore_where_the_data_lives(tmp_path):
    first = [c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL)))]
    again = [c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL), ["dataset.root=/elsewhere"]))]
    assert first == again and len(set(first)) == len(first)


def test_trial_id_changes_with_the_recipe_and_the_seed(tmp_path):
    base = {c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL)))}
    other_lr = {c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL), ["recipe.lr=0.2"]))}
    other_seed = {c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL), ["seeds=[1]"]))}
    assert base.isdisjoint(other_lr) and base.isdisjoint(other_seed)


def run_cli(*args):
    code = "import sys, run_sweep; rc = run_sweep.main(sys.argv[1:]); assert 'ray' not in sys.modules; sys.exit(rc)"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_exits_2_with_one_line_and_starts_no_ray_for_an_invalid_spec(tmp_path):
    result = run_cli("--spec", str(write(tmp_path, MINIMAL)), "--set", "recipe.schedule=cosin")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "spec error: recipe.schedule = 'cosin': not allowed; allowed: 'cosine', 'step'"
    ]


def test_dry_run_json_has_the_documented_keys(tmp_path):
    result = run_cli("--spec", str(write(tmp_path, MINIMAL)), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    required = {
        "design_class",
        "family",
        "depth",
        "width",
        "members",
        "params_member",
        "params_total",
        "budget",
        "budget_deviation_pct",
        "macs",
        "budget_depth",
        "budget_width",
    }
    assert [r["design_class"] for r in rows] == ["single", "deq", "weq", "dct"]
    assert all(required <= set(r) for r in rows)
    assert [r["trials"] for r in rows] == [[0], [1], [2], [3]]  # the `python -m harness.trial --index` numbers


def test_dry_run_table_prints_one_row_per_design(tmp_path):
    result = run_cli("--spec", str(write(tmp_path, MINIMAL)), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "4 design points x 1 seed = 4 trials" in lines[0]
    assert lines[1].split()[:4] == ["trials", "class", "family", "depth"]
    table = lines[3 : lines.index("")]
    assert [line.split()[:2] for line in table] == [["0", "single"], ["1", "deq"], ["2", "weq"], ["3", "dct"]]


def test_dry_run_marks_designs_beyond_the_deviation_limit_and_prints_the_worst_per_class(tmp_path):
    # A limit of 0.001%: deq and weq of the minimal spec (not exactly at their budget) are marked, single is not, and
    # dct, whose division rule sets its size, says so instead of a mark (the analysis never marks it either).
    result = run_cli("--spec", str(write(tmp_path, MINIMAL)), "--set", "max_budget_deviation_pct=0.001", "--dry-run")
    lines = result.stdout.splitlines()
    table = lines[3 : lines.index("")]
    assert [line.split()[1] for line in table if line.rstrip().split()[-2] == "*"] == ["deq", "weq"]
    assert [line.split()[1] for line in table if line.rstrip().split()[-2] == "rule"] == ["dct"]
    summary = lines[lines.index("") + 1 :]
    summary = summary[: summary.index("")]  # the packing line follows after a blank line
    assert summary[0].startswith("budget deviation per class") and "0.001%" in summary[0]
    assert [line.split(":")[0].strip() for line in summary[1:]] == ["single", "deq", "weq", "dct"]
    assert summary[1] == "  single: worst +0.00%, 0/1 beyond 0.001%, 1/1 within 5%"


def test_dry_run_table_numbers_each_design_points_trials_as_harness_trial_does(tmp_path):
    result = run_cli("--spec", str(write(tmp_path, MINIMAL)), "--set", "seeds=[0, 1]", "--dry-run")
    lines = result.stdout.splitlines()
    assert "4 design points x 2 seeds = 8 trials" in lines[0]
    assert [line.split()[0] for line in lines[3 : lines.index("")]] == ["0-1", "2-3", "4-5", "6-7"]


def test_cudnn_benchmark_is_on_unless_the_recipe_turns_it_off():
    assert {c["recipe"]["cudnn_benchmark"] for c in trial_configs(load_spec("digits", ["epochs=1"]))} == {True}
    off = trial_configs(load_spec("digits", ["epochs=1", "recipe.cudnn_benchmark=false"]))
    assert {c["recipe"]["cudnn_benchmark"] for c in off} == {False}


# --- per-family recipe, per-class fit, family option values ---------------------------------------------------------

TWO_ENTRIES = MINIMAL.replace('classes = ["single", "deq", "weq", "dct"]', 'classes = ["single", "dct"]') + """
[[families]]
name = "resnet"
depths = [8]
widths = [8]
recipe = { weight_decay = 5e-4, dct = { lambda_cot = 0.25 } }

[recipe]
weight_decay = 1e-4
"""


def _recipes_by_depth(spec):
    return {(c["design"]["depth"], c["design"]["design_class"]): c["recipe"] for c in trial_configs(spec)}


def test_a_family_recipe_overrides_the_global_recipe_for_that_entry_only(tmp_path):
    recipes = _recipes_by_depth(load_spec(write(tmp_path, TWO_ENTRIES)))
    assert recipes[(14, "single")]["weight_decay"] == 1e-4
    assert recipes[(8, "single")]["weight_decay"] == 5e-4
    assert (recipes[(14, "dct")]["lambda_cot"], recipes[(8, "dct")]["lambda_cot"]) == (0.5, 0.25)
    assert recipes[(8, "single")]["lambda_cot"] == 0.0


def test_a_family_recipe_changes_the_trial_id_of_that_entry_only(tmp_path):
    before = {c["design"]["depth"]: c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, TWO_ENTRIES)))}
    after = {
        c["design"]["depth"]: c["trial_id"]
        for c in trial_configs(load_spec(write(tmp_path, TWO_ENTRIES), ["families.1.recipe.weight_decay=2e-4"]))
    }
    assert before[14] == after[14] and before[8] != after[8]


def test_an_unknown_family_recipe_key_names_the_entry(tmp_path):
    message = error_of(tmp_path, TWO_ENTRIES, ["families.1.recipe.weight_decy=1e-4"])
    assert message.startswith("families.1.recipe.weight_decy = 0.0001: unknown key (did you mean 'weight_decay'?)")


def test_family_recipe_milestones_past_the_last_epoch_are_rejected(tmp_path):
    message = error_of(tmp_path, TWO_ENTRIES, ["families.1.recipe.milestones=[5]"])
    assert message == "families.1.recipe.milestones = [5]: milestones must be <= epochs (2)"


def test_fit_per_class_sizes_each_class_by_its_rule_and_labels_the_sweep(tmp_path):
    text = MINIMAL.replace("members = [2]", "members = [2]\nfit = { deq = \"nearest\", weq = \"floor\" }")
    spec = load_spec(write(tmp_path, text))
    floor = {d.design_class: d for d in load_spec(write(tmp_path, MINIMAL, "floor.toml")).designs}
    nearest = {d.design_class: d for d in load_spec(write(tmp_path, MINIMAL, "n.toml"), ["fit=nearest"]).designs}
    got = {d.design_class: d for d in spec.designs}
    assert got["deq"].width == nearest["deq"].width and got["weq"].depth == floor["weq"].depth
    assert {d.fit for d in spec.designs} == {"deq=nearest,weq=floor"}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("fit=ceil", "fit = 'ceil': not allowed; allowed: 'floor', 'nearest', or a per-class table"),
        ("fit.deq=round", "fit.deq = 'round': not allowed; allowed: 'floor', 'nearest'"),
        ("fit.dct=nearest", "fit.dct = 'nearest': unknown key; allowed keys: deq, single, weq"),
    ],
)
def test_a_bad_fit_rule_or_class_is_one_line_naming_it(tmp_path, override, expected):
    text = MINIMAL.replace("members = [2]", "members = [2]\nfit = { deq = \"nearest\" }")
    assert error_of(tmp_path, text, [override]).startswith(expected)


@pytest.mark.parametrize(
    ("family", "depth", "option", "value", "expected"),
    [
        ("resnet", 14, "shortcut", '"C"', 'families.0.options.shortcut = \'C\': must be "A"'),
        ("densenet_bc", 10, "compression", "1.5", "families.0.options.compression = 1.5: must be a number in (0, 1]"),
        ("densenet_bc", 10, "stem_channels", "0", "families.0.options.stem_channels = 0: must be an integer >= 1"),
    ],
)
def test_a_family_option_value_outside_its_choices_is_rejected(tmp_path, family, depth, option, value, expected):
    text = MINIMAL.replace('name = "resnet"\ndepths = [14]', f'name = "{family}"\ndepths = [{depth}]')
    assert error_of(tmp_path, text, [f"families.0.options.{option}={value}"]).startswith(expected)


@pytest.mark.parametrize("preset", ["mutual_digits", "coop_digits"])
@pytest.mark.parametrize("key", ["mixup_alpha", "cutmix_alpha"])
def test_spec_refuses_mixing_for_the_adaptive_classes_before_anything_runs(preset, key):
    cls = preset.split("_")[0]
    with pytest.raises(SpecError) as info:
        load_spec(preset, [f"recipe.{key}=0.2"])
    assert str(info.value) == (
        f"recipe.{key} = 0.2: {cls} trials train on hard labels (sub-networks distil a full network); "
        f"set recipe.{cls}.{key} = 0"
    )
    # Turning it off for the class alone keeps mixing for the others and makes the spec valid again.
    spec = load_spec(preset, [f"recipe.{key}=0.2", f"recipe.{cls}.{key}=0.0"])
    recipes = {c["design"]["design_class"]: c["recipe"] for c in trial_configs(spec)}
    assert recipes[cls][key] == 0.0 and recipes["single"][key] == 0.2
