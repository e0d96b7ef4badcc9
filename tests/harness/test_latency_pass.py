"""The sweep's latency pass: every finished trial of a budget timed in the same interleaved blocks, the results set
into the trials rows already in the store (no Ray here; tests/sweep runs it inside a sweep)."""

from __future__ import annotations

import pyarrow.parquet as pq
import torch

from harness import latency_pass as lp
from harness.store import TRIALS_SCHEMA, rows_from_result, store_path, update_trial_rows, write_trial
from tests.harness.conftest import design_point, make_config

CPU = torch.device("cpu")


def test_the_trials_of_a_budget_are_timed_in_one_set_of_interleaved_blocks(monkeypatch):
    seen = []
    real = lp.measure.blocked_latency_ms

    def spy(modes, *args, **kwargs):
        seen.append(sorted(modes))
        return real(modes, *args, **kwargs)

    monkeypatch.setattr(lp.measure, "blocked_latency_ms", spy)
    configs = [make_config(design_point("single"), seed=s) for s in (0, 1)] + [make_config(design_point("deq"))]
    timed = lp.interleaved_latency_ms(configs, CPU, warmup=1, runs=5)
    assert seen == [sorted(c["trial_id"] for c in configs)]  # one call: every trial in the same blocks
    assert set(timed) == {c["trial_id"] for c in configs}
    assert all(t["p50"] > 0 and t["p90"] > 0 for t in timed.values())


def test_the_pass_uses_the_threads_the_trial_ran_with():
    config = make_config(design_point("single"))
    assert lp.trial_threads({**config, "measure": {**config["measure"], "threads": 0}}) == 1  # 1 CPU per trial
    assert lp.trial_threads({**config, "measure": {**config["measure"], "threads": 3}}) == 3


def test_updating_a_trials_row_sets_the_given_columns_and_keeps_every_other_value(tmp_path):
    store = str(tmp_path / "store")
    config = make_config(design_point("single"))
    final = {"kind": "final", "trial_id": config["trial_id"], "status": "ok", "final_acc": 0.9, "latency_ms_p50": 1.5}
    row, epochs = rows_from_result(config, {"epochs": [], "final": final})
    write_trial(store, "s", row, epochs)
    before = pq.read_table(store_path(store, "trials", "s", config["trial_id"])).to_pylist()[0]
    assert update_trial_rows(store, "s", {config["trial_id"]: {"latency_interleaved_ms_p50": 2.25},
                                          "no-such-trial": {"latency_interleaved_ms_p50": 1.0}}) == 1  # fmt: skip
    table = pq.read_table(store_path(store, "trials", "s", config["trial_id"]))
    after = table.to_pylist()[0]
    assert table.schema.equals(TRIALS_SCHEMA, check_metadata=False)
    assert after["latency_interleaved_ms_p50"] == 2.25
    assert {k: v for k, v in after.items() if k != "latency_interleaved_ms_p50"} == {
        k: v for k, v in before.items() if k != "latency_interleaved_ms_p50"}
