"""Multi-device trial keys (issue 25): `resources.parallel`, `resources.workers`, `resources.gpus` >= 2 and
`recipe.sync_bn` are checked at spec time, each refusal one line naming the key, the value and what is allowed."""

import pytest

from spaces.spec import load_spec, trial_configs
from tests.spaces.test_spec import MINIMAL, error_of, write

ENSEMBLES = MINIMAL.replace('classes = ["single", "deq", "weq", "dct"]', 'classes = ["deq", "dct"]')


def test_the_new_keys_at_their_defaults_keep_every_trial_id(tmp_path):
    plain = [c["trial_id"] for c in trial_configs(load_spec(write(tmp_path, MINIMAL)))]
    explicit = ['resources.parallel="none"', "resources.workers=1", "recipe.sync_bn=false"]
    configs = trial_configs(load_spec(write(tmp_path, MINIMAL), explicit))
    assert [c["trial_id"] for c in configs] == plain
    assert {(c["resources"]["parallel"], c["resources"]["workers"]) for c in configs} == {("none", 1)}


def test_a_per_class_table_gives_each_class_its_mode_and_every_trial_its_workers(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL), ["resources.workers=2", "recipe.sync_bn=true",
                                                'resources.parallel={ dct = "members", deq = "members", '
                                                'weq = "members", single = "data" }'])  # fmt: skip
    modes = {c["design"]["design_class"]: c["resources"]["parallel"] for c in trial_configs(spec)}
    assert modes == {"single": "data", "deq": "members", "weq": "members", "dct": "members"}
    assert {c["resources"]["workers"] for c in trial_configs(spec)} == {2}


def test_two_gpus_are_two_workers(tmp_path):
    (config, *_) = trial_configs(load_spec(write(tmp_path, MINIMAL), ["resources.gpus=2", "resources.parallel=data"]))
    assert config["resources"]["workers"] == 2 and config["resources"]["parallel"] == "data"


def test_several_gpus_without_a_parallel_mode_are_refused_instead_of_idling(tmp_path):
    message = error_of(tmp_path, MINIMAL, ["resources.gpus=2"])
    assert message.startswith("resources.gpus = 2: a trial would train on one of its 2 GPUs; set "
                              'resources.parallel = "data"')  # fmt: skip


def test_members_parallel_is_refused_for_a_single_network(tmp_path):
    message = error_of(tmp_path, MINIMAL, ["resources.workers=2", "resources.parallel=members"])
    assert message.startswith("resources.parallel = 'members': single is not an ensemble of separate networks")
    assert 'parallel = { dct = "members", single = "data" }' in message


def test_members_parallel_needs_the_workers_to_divide_every_ensemble_size(tmp_path):
    message = error_of(tmp_path, ENSEMBLES, ["resources.workers=2", "resources.parallel=members", "members=[2, 3]"])
    assert message.startswith("members = [2, 3]: members-parallel over 2 workers needs every ensemble size to be a "
                              "multiple of 2")  # fmt: skip


def test_members_parallel_refuses_fused_execution(tmp_path):
    message = error_of(tmp_path, ENSEMBLES, ["resources.workers=2", "resources.parallel=members",
                                             "recipe.execution=fused"])  # fmt: skip
    assert message.startswith("recipe.execution = 'fused': members-parallel trains each worker's members one after")


@pytest.mark.parametrize("cls", ["mutual", "coop"])
def test_adaptive_classes_are_refused_members_parallel(tmp_path, cls):
    text = MINIMAL.replace('classes = ["single", "deq", "weq", "dct"]', f'classes = ["{cls}"]')
    message = error_of(tmp_path, text, ["resources.workers=2", "resources.parallel=members"])
    assert message.startswith(f"resources.parallel = 'members': {cls} is not an ensemble of separate networks")


def test_a_parallel_mode_needs_two_workers(tmp_path):
    message = error_of(tmp_path, MINIMAL, ["resources.parallel=data"])
    assert message.startswith("resources.parallel = 'data': data-parallel needs resources.workers >= 2")


def test_an_unknown_mode_names_the_allowed_ones(tmp_path):
    message = error_of(tmp_path, MINIMAL, ["resources.workers=2", "resources.parallel=model"])
    assert message.startswith("resources.parallel = 'model': not allowed; allowed: 'none', 'data', 'members'")


def test_cpu_workers_and_gpus_are_not_mixed(tmp_path):
    message = error_of(tmp_path, MINIMAL, ["resources.gpus=1", "resources.workers=2", "resources.parallel=data"])
    assert message.startswith("resources.workers = 2: on GPUs the workers are resources.gpus")

