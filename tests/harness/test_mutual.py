"""The mutual (MutualNet) trial on digits: the sandwich rule trains one slimmable ResNet, and every evaluated
(width, resolution) sub-network lands in the store's subnets table."""

from __future__ import annotations

import pytest
import torch

from analysis.store import load_subnets, load_trials
from harness.kinds.mutual import sandwich_widths, width_grid
from harness.store import build_subnet_rows, rows_from_result, write_trial
from harness.trial import run_trial
from spaces.spec import load_spec, trial_configs
from tests.harness.conftest import curve_of, kill_and_resume

OVERRIDES = [
    "epochs=2",
    "recipe.lr=0.1",
    "recipe.mutual.widths=[0.5, 1.0]",
    "recipe.mutual.width_step=0.25",
    "recipe.mutual.resolutions=[16, 12]",
    "recipe.mutual.bn_calib_samples=256",
]


@pytest.fixture(scope="module")
def mutual_run():
    """(config, result, reported records) of the mutual_digits preset's mutual trial, shortened."""
    config = next(
        c for c in trial_configs(load_spec("mutual_digits", OVERRIDES)) if c["design"]["design_class"] == "mutual"
    )
    got = []
    return config, run_trial(config, got.append), got


def test_width_grid_steps_over_the_range_and_ends_at_the_maximum():
    assert width_grid(0.9, 1.0, 0.05) == [0.9, 0.95, 1.0]
    assert width_grid(0.25, 1.0, 0.3) == [0.25, 0.55, 0.85, 1.0]


def test_sandwich_widths_are_the_smallest_then_two_draws_in_the_range():
    widths = sandwich_widths(0.25, 1.0, torch.Generator().manual_seed(0))
    assert widths[0] == 0.25 and len(widths) == 3
    assert all(0.25 <= w <= 1.0 for w in widths[1:])


def test_mutual_trial_learns_digits_and_reports_each_epoch_then_the_final_record(mutual_run):
    _, result, got = mutual_run
    assert [r["kind"] for r in got] == ["epoch", "epoch", "final"]
    assert result["final"]["status"] == "ok"
    assert result["final"]["final_acc"] > 0.3  # chance is 0.1
    assert result["epochs"][-1]["train_loss"] < result["epochs"][0]["train_loss"]
    assert result["final"]["params_total"] == result["final"]["params_member"][0]


def test_every_width_and_resolution_of_the_grid_is_evaluated(mutual_run):
    _, result, _ = mutual_run
    subnets = result["final"]["subnets"]
    assert sorted((s["width_mult"], s["resolution"]) for s in subnets) == [
        (w, r) for w in (0.5, 0.75, 1.0) for r in (12, 16)
    ]
    for s in subnets:
        assert 0.0 <= s["test_acc"] <= 1.0 and s["latency_ms_p50"] > 0 and s["bn_calib_samples"] == 256
        assert s["macs"] * 2 == s["flops_torch"]


def test_subnet_cost_grows_with_width_and_resolution_and_the_full_one_is_the_whole_network(mutual_run):
    config, result, _ = mutual_run
    by = {(s["width_mult"], s["resolution"]): s for s in result["final"]["subnets"]}
    assert by[(0.5, 16)]["macs"] < by[(0.75, 16)]["macs"] < by[(1.0, 16)]["macs"]
    assert by[(1.0, 12)]["macs"] < by[(1.0, 16)]["macs"]
    assert by[(0.5, 16)]["params"] < by[(1.0, 16)]["params"] == config["design"]["params_total"]
    assert by[(1.0, 16)]["flops_torch"] == result["final"]["flops_torch"]


def test_mutual_trial_writes_its_subnets_rows_to_the_store(mutual_run, tmp_path):
    config, result, _ = mutual_run
    row, epochs = rows_from_result(config, result)
    write_trial(str(tmp_path), "mutual_digits", row, epochs, build_subnet_rows(config, result))
    subnets = load_subnets(str(tmp_path), sweep="mutual_digits")
    assert len(subnets) == 6
    assert set(subnets["design_class"]) == {"mutual"} and set(subnets["trial_id"]) == {config["trial_id"]}
    assert set(subnets["resolution"]) == {12, 16}
    assert load_trials(str(tmp_path))["design_class"].tolist() == ["mutual"]


def test_fixed_designs_write_no_subnets_file(tmp_path):
    config = next(
        c for c in trial_configs(load_spec("mutual_digits", OVERRIDES)) if c["design"]["design_class"] == "single"
    )
    result = {"epochs": [], "final": {"status": "ok", "final_acc": 0.5}}
    row, epochs = rows_from_result(config, result)
    write_trial(str(tmp_path), "s", row, epochs, build_subnet_rows(config, result))
    assert not (tmp_path / "subnets").exists()
    assert load_subnets(str(tmp_path)).empty


def test_a_killed_mutual_trial_resumes_to_the_uninterrupted_result(mutual_run, tmp_path):
    config, uninterrupted, _ = mutual_run
    resumed, reported = kill_and_resume(config, tmp_path, after_epoch=1)
    assert [r["kind"] for r in reported] == ["epoch", "final"]  # epoch 1 came from the checkpoint, not again
    assert curve_of(resumed) == curve_of(uninterrupted)
    grid = ("width_mult", "resolution", "test_acc")
    assert [[s[k] for k in grid] for s in resumed["final"]["subnets"]] == [
        [s[k] for k in grid] for s in uninterrupted["final"]["subnets"]
    ]
