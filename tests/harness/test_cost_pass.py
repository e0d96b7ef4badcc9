"""The sweep's cost pass: every design point measured once, alone (holding the node's measurement lock), in fresh
processes; its rows in the store's costs table survive a rerun (no Ray here; tests/sweep runs it inside sweeps)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from harness import cost_pass as cp
from harness import measure
from harness.isolate import call_in_child
from harness.store import point_id, read_cost_rows, rows_from_result, store_path, write_trial
from tests.harness.conftest import design_point, make_config

HELD_S = 2.0  # how long the test holds the node's lock while the pass waits


def _ok_trials(store: str, configs: list[dict]) -> None:
    """Write an ok trials row (and its epochs file) for each config, as a finished trial leaves them."""
    for config in configs:
        final = {"kind": "final", "trial_id": config["trial_id"], "status": "ok", "final_acc": 0.9}
        write_trial(store, "s", *rows_from_result(config, {"epochs": [], "final": final}))


@pytest.fixture(scope="module")
def passed(tmp_path_factory):
    """Two seeds of a single network and one seed of a deq ensemble finished in a store; the cost pass run while the
    test held the node's measurement lock for HELD_S. Return (store, configs, measured count, rows written while the
    lock was held, the pass's wall time in s)."""
    store = str(tmp_path_factory.mktemp("costs") / "store")
    configs = [make_config(design_point("single"), seed=s) for s in (1, 0)] + [make_config(design_point("deq"))]
    _ok_trials(store, configs)
    out = {}
    with measure.one_measurement_per_node():
        worker = threading.Thread(target=lambda: out.update(n=cp.cost_pass(store, "s", configs)))
        start = time.perf_counter()
        worker.start()
        time.sleep(HELD_S)
        rows_while_held = read_cost_rows(store, "s")
    worker.join(timeout=300)
    return store, configs, out["n"], rows_while_held, time.perf_counter() - start


def test_the_pass_measures_each_design_point_once_with_its_lowest_seed(passed):
    store, configs, measured, _, _ = passed
    rows = read_cost_rows(store, "s")
    assert measured == 2 and len(rows) == 2
    by_point = {r["point_id"]: r for r in rows}
    assert set(by_point) == {point_id(c) for c in configs}
    assert by_point[point_id(configs[0])]["seed_built"] == 0  # the single network's seeds 1 and 0: built from seed 0
    for row in rows:
        assert row["step_time_ms_p50"] > 0 and row["latency_ms_p50"] > 0 and row["peak_mem_mb"] > 0
        assert row["epoch_time_s"] == pytest.approx(row["step_time_ms_p50"] / 1000 * row["steps_per_epoch"])
        assert row["steps_per_epoch"] == pytest.approx(1347 / 64)  # digits' 75% training split, batch 64
        assert row["mem_source"] == "rss" and row["device_type"] == "cpu" and row["threads"] == 1
        assert (row["warmup_steps"], row["timed_steps"], row["blocks"]) == (cp.WARMUP_STEPS, cp.TIMED_STEPS, cp.BLOCKS)


def test_the_pass_waits_while_another_measurement_holds_the_node_lock(passed):
    store, _, _, rows_while_held, wall_s = passed
    assert rows_while_held == []  # nothing measured while the test held the lock
    assert wall_s >= HELD_S
    assert all(r["lock_wait_s"] >= HELD_S * 0.9 for r in read_cost_rows(store, "s"))


def test_a_rerun_keeps_the_rows_and_measures_nothing(passed):
    store, configs, _, _, _ = passed
    before = {r["point_id"]: r["measured_at"] for r in read_cost_rows(store, "s")}
    files = sorted(os.listdir(store_path(store, "costs", "s")))
    assert cp.cost_pass(store, "s", configs) == 0
    assert {r["point_id"]: r["measured_at"] for r in read_cost_rows(store, "s")} == before
    assert sorted(os.listdir(store_path(store, "costs", "s"))) == files


def test_a_point_without_an_ok_trial_is_not_measured(tmp_path):
    store = str(tmp_path / "store")
    config = make_config(design_point("single"))
    row, epochs = rows_from_result(config, None, error="boom")
    write_trial(store, "s", row, epochs)
    assert cp.design_points(store, "s", [config]) == {}
    assert cp.cost_pass(store, "s", [config]) == 0


def test_fresh_processes_read_the_same_peak_memory_for_both_seeds_of_a_design():
    # Forked from a fresh interpreter, as the pass does (this test process has run torch: forking it could deadlock).
    configs = [make_config(design_point("dct"), seed=s, member_views=True, lambda_cot=0.5) for s in (0, 1)]
    memory = call_in_child("harness.cost_pass:run_forked", [(cp.peak_memory_of, c) for c in configs], 2)
    peaks = [m["peak_mem_mb"] for m in memory]
    assert peaks[0] > 0
    assert peaks[1] == pytest.approx(peaks[0], rel=0.05)


def test_a_failing_measurement_is_raised_with_its_traceback():
    config = make_config(design_point("single"))
    config["design"]["design_class"] = "nosuchclass"
    with pytest.raises(RuntimeError, match="unknown design class 'nosuchclass'"):
        call_in_child("harness.cost_pass:run_forked", [(cp.peak_memory_of, config)], 1)
