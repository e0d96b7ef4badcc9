"""Timings of a trial: the data time inside each epoch, the latency spread, and fused latency when it ran fused."""

from __future__ import annotations

from harness.trial import run_trial
from tests.harness.conftest import dct_config, design_point, make_config


def test_each_epoch_records_its_data_time_inside_its_epoch_time():
    result = run_trial(dct_config(epochs=1), lambda r: None)  # member views: per-member augmentation
    record = result["epochs"][0]
    assert 0 < record["data_time_s"] < record["epoch_time_s"]


def test_a_fused_trial_records_fused_latency_beside_the_sequential_one():
    final = run_trial(make_config(design_point("deq"), epochs=1, execution="fused"), lambda r: None)["final"]
    assert final["execution"] == "fused"
    assert final["latency_fused_ms_p50"] > 0 and final["latency_fused_ms_p90"] >= final["latency_fused_ms_p50"]
    assert final["latency_ms_p50"] > 0 and final["latency_ms_iqr"] >= 0 and final["latency_fused_ms_iqr"] >= 0


def test_a_sequential_trial_has_no_fused_latency():
    final = run_trial(make_config(design_point("deq"), epochs=1), lambda r: None)["final"]
    assert final["latency_fused_ms_p50"] is None and final["latency_ms_p50"] > 0
    assert final["latency_lock_wait_s"] >= 0
