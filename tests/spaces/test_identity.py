"""Trial identity: what changes what a trial measures is in its id; a key at its default value is not."""

from __future__ import annotations

from spaces import spec as spec_module
from spaces.spec import Key, load_spec, trial_configs


def ids(*overrides: str) -> list[str]:
    return [c["trial_id"] for c in trial_configs(load_spec("digits", list(overrides)))]


def test_ids_stay_the_same_when_a_recipe_key_with_a_default_is_added(monkeypatch):
    before = ids()
    # A later release adds a recipe key; every spec that does not set it keeps its trials' ids (and their rows).
    monkeypatch.setitem(spec_module.RECIPE_KEYS, "ema_decay", Key("float", 0.0))
    monkeypatch.setattr(spec_module, "RECIPE_ALL_KEYS", {**spec_module.RECIPE_ALL_KEYS, "ema_decay": Key("float", 0.0)})
    assert "ema_decay" in trial_configs(load_spec("digits"))[0]["recipe"]
    assert ids() == before
    assert ids("recipe.ema_decay=0.0") == before  # set to its default: the same trials
    assert set(ids("recipe.ema_decay=0.999")).isdisjoint(before)  # a real change: new trials


def test_ids_change_with_the_gpus_sharing_cpus_and_threads_a_trial_runs_with():
    cpu = ids()
    assert ids("resources.gpus=0") == cpu
    gpu = ids("resources.gpus=1")
    assert set(gpu).isdisjoint(cpu)
    shared = ids("resources.gpus=0.5", "resources.fractional_gpu=true")
    assert set(shared).isdisjoint(cpu + gpu)
    assert set(ids("resources.cpus=2")).isdisjoint(cpu)
    assert set(ids("measure.threads=4")).isdisjoint(cpu)


def test_ids_change_with_precision_but_not_with_the_data_sets_location():
    base = ids()
    assert set(ids("recipe.precision=bf16")).isdisjoint(base)
    assert ids("dataset.root=/elsewhere") == base
    assert ids("measure.latency_runs=7") == base  # how precisely latency is sampled is not what is measured


def test_seeds_of_one_design_point_share_its_point_id_and_not_their_trial_id():
    from harness.store import point_id

    configs = trial_configs(load_spec("digits", ["seeds=[0,1]", 'classes=["single"]', "families.0.widths=[8]"]))
    assert len(configs) == 2 and configs[0]["trial_id"] != configs[1]["trial_id"]
    assert point_id(configs[0]) == point_id(configs[1])
