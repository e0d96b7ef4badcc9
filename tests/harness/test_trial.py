"""The trial function on digits with tiny CIFAR ResNets: learning, co-training, records, determinism, resume."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
import torch

from harness.trial import run_trial
from tests.harness.conftest import design_point, kill_and_resume, make_config

EPOCHS = 3
# resnet-8 width 8 is the single network; deq (width 5) and dct (width 6) divide its budget; weq keeps width 6
# and halves the depth of resnet-14 width 6.
DESIGNS = {
    "single": design_point("single"),
    "deq": design_point("deq"),
    "weq": design_point("weq", depth=14, width=6),
    "dct": design_point("dct"),
}
RECIPES = {"dct": {"lambda_cot": 0.5, "cot_warmup_epochs": 2, "member_views": True}}


def config_for(design_class: str, **recipe) -> dict:
    return make_config(DESIGNS[design_class], epochs=EPOCHS, **{**RECIPES.get(design_class, {}), **recipe})


@pytest.fixture(scope="module")
def trained():
    """Each design class trained once for EPOCHS epochs: {class: (result, reported records)}."""
    runs = {}
    for name in DESIGNS:
        got = []
        runs[name] = (run_trial(config_for(name), got.append), got)
    return runs


def curve(result: dict) -> list[tuple]:
    return [(r["test_acc"], r["member_acc"], r["train_loss"], r["test_loss"]) for r in result["epochs"]]


@pytest.mark.parametrize("design_class", list(DESIGNS))
def test_every_design_class_learns_digits(trained, design_class):
    result, _ = trained[design_class]
    assert result["final"]["status"] == "ok"
    assert len(result["epochs"]) == EPOCHS
    assert result["final"]["final_acc"] > 0.5  # chance is 0.1
    assert result["epochs"][-1]["train_loss"] < result["epochs"][0]["train_loss"]


def test_report_gets_each_epoch_then_the_final_record(trained):
    result, got = trained["deq"]
    assert [r["kind"] for r in got] == ["epoch"] * EPOCHS + ["final"]
    assert got[:-1] == result["epochs"] and got[-1] == result["final"]


def test_epoch_records_hold_every_contract_field(trained):
    result, _ = trained["dct"]
    times = 0.0
    for i, rec in enumerate(result["epochs"], start=1):
        assert rec["epoch"] == i and rec["kind"] == "epoch"
        assert len(rec["member_acc"]) == 2 and all(0 <= a <= 1 for a in rec["member_acc"])
        assert rec["member_acc_mean"] == pytest.approx(sum(rec["member_acc"]) / 2)
        assert rec["train_loss"] > 0 and rec["test_loss"] > 0
        times += rec["epoch_time_s"]
        assert 0 < rec["epoch_time_s"] < 60 and rec["cum_time_s"] == pytest.approx(times)
        assert 0 <= rec["lr"] <= 0.1
    # lambda_cot warms up per epoch over 2 epochs, with the floor in epoch 1.
    assert [r["lambda_cot"] for r in result["epochs"]] == [0.005, 0.25, 0.5]


def test_final_record_measurements_are_present_in_their_units(trained):
    design = DESIGNS["dct"]
    final = trained["dct"][0]["final"]
    assert final["params_member"] == [design.params_member] * 2 and final["params_total"] == design.params_total
    assert final["flops_torch"] == 2 * design.macs  # the design's MACs are torch's count / 2
    # fvcore counts a multiply-add once and adds batch-norm's elementwise ops, so it is slightly above flops / 2.
    assert final["macs_fvcore"] == pytest.approx(final["flops_torch"] / 2, rel=0.05)
    assert final["macs_fvcore_error"] is None and final["flops_torch_error"] is None
    assert final["mem_source"] == "rss" and final["peak_mem_mb"] > 10
    assert final["peak_mem_reserved_mb"] is None and final["nvml_mem_mb"] is None
    assert 0 < final["latency_ms_p50"] <= final["latency_ms_p90"] < 1000
    assert final["throughput_sps"] > 0 and final["throughput_batch"] == 64
    assert final["precision"] == "fp32" and final["cuda_version"] is None and final["num_threads"] == 1
    assert final["device_name"] and final["hostname"] and final["torch_version"] == torch.__version__
    assert final["device_shared"] is False and len(final["split_id"]) == 12
    assert final["best_acc"] == max(r["test_acc"] for r in trained["dct"][0]["epochs"])
    assert final["train_time_s"] == pytest.approx(trained["dct"][0]["epochs"][-1]["cum_time_s"])
    assert datetime.fromisoformat(final["started_at"]) <= datetime.fromisoformat(final["finished_at"])


def test_same_seed_gives_identical_epochs_even_with_deterministic_algorithms(trained):
    torch.use_deterministic_algorithms(True)
    try:
        again = run_trial(config_for("dct"), lambda r: None)
    finally:
        torch.use_deterministic_algorithms(False)
    assert curve(again) == curve(trained["dct"][0])


def test_members_without_cotraining_train_exactly_as_they_would_alone(trained):
    ensemble = trained["deq"][0]
    member = dataclasses.replace(DESIGNS["deq"], design_class="single", members=1)
    alone = run_trial(make_config(member, epochs=EPOCHS), lambda r: None)
    assert [r["member_acc"][0] for r in ensemble["epochs"]] == [r["test_acc"] for r in alone["epochs"]]


def test_a_huge_learning_rate_ends_the_trial_as_diverged():
    got = []
    result = run_trial(make_config(DESIGNS["single"], epochs=2, lr=1e12), got.append)
    final = result["final"]
    assert final["status"] == "diverged" and "non-finite" in final["error"]
    assert final["epochs_done"] == len(result["epochs"]) < 2
    assert got[-1] == final


def test_a_killed_trial_resumes_from_its_checkpoint_with_history_intact(trained, tmp_path):
    resumed, got = kill_and_resume(config_for("single"), tmp_path, after_epoch=2)
    assert [r["epoch"] for r in got if r["kind"] == "epoch"] == [3]  # only the new epoch is reported
    assert [r["epoch"] for r in resumed["epochs"]] == [1, 2, 3]
    assert curve(resumed) == curve(trained["single"][0])  # equal to the uninterrupted run
    assert resumed["final"]["epochs_done"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_a_parallel_trial_is_refused_as_one_process():
    from harness.trial import main

    with pytest.raises(ValueError, match="runs on 2 Ray Train workers"):
        main(["--spec", "digits", "--index", "0", "--set", "resources.workers=2", "--set", "resources.parallel=data"])
