"""run_sweep on the session's real local Ray: trials land in the store once, reruns skip them, a failing trial is
retried and then recorded as an error while the sweep goes on. One small sweep is run once for the module."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from analysis.store import load_epochs, load_trials
from harness.sweep import TEST_FAIL_FIRST_ATTEMPT, measurement_resources, run_sweep, trial_resources
from tests.sweep.conftest import refused_config, tiny_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def swept(ray_local, tmp_path_factory):
    """Run 4 real trials (single + weq at two budgets, 2 epochs), the first of which fails once with a test-only
    transient error, plus 4 trials whose data set config the trial refuses (a deterministic error); return what we saw.

    The failing trials go first so that they overlap the good trials on the 2 CPUs."""
    import io
    from contextlib import redirect_stdout

    from spaces.spec import trial_configs

    store = str(tmp_path_factory.mktemp("sweep") / "store")
    spec = tiny_spec('classes=["single","weq"]', "epochs=2")
    good = trial_configs(spec)
    good[0][TEST_FAIL_FIRST_ATTEMPT] = str(tmp_path_factory.mktemp("markers"))
    bad = [refused_config(good[0], i) for i in range(4)]
    out = io.StringIO()
    with redirect_stdout(out):
        summary = run_sweep(spec, store=store, configs=[*bad, *good], max_failures=1, progress_every_s=1)
    return {"store": store, "spec": spec, "good": good, "bad": bad, "summary": summary, "out": out.getvalue()}


def test_trial_resources_are_whole_gpus_unless_fractional():
    assert trial_resources({"resources": {"cpus": 2, "gpus": 0.5}}) == {"CPU": 2.0, "GPU": 1.0}
    assert trial_resources({"resources": {"cpus": 1, "gpus": 0.5, "fractional_gpu": True}}) == {"CPU": 1.0, "GPU": 0.5}
    assert trial_resources({"resources": {"cpus": 1, "gpus": 0}}) == {"CPU": 1.0, "GPU": 0.0}


def test_packing_divides_a_trials_device_and_the_cost_pass_holds_it_whole():
    packed_gpu = {"resources": {"cpus": 2, "gpus": 1, "trials_per_gpu": 4}}
    packed_cpu = {"resources": {"cpus": 2, "gpus": 0, "trials_per_cpu_group": 4}}
    assert trial_resources(packed_gpu) == {"CPU": 2.0, "GPU": 0.25}
    assert trial_resources(packed_cpu) == {"CPU": 0.5, "GPU": 0.0}
    assert measurement_resources(packed_gpu) == {"CPU": 2.0, "GPU": 1.0}
    assert measurement_resources(packed_cpu) == {"CPU": 2.0, "GPU": 0.0}


def _recorded_bad(swept) -> list[str]:
    ids = {c["trial_id"] for c in swept["bad"]}
    return sorted(set(load_trials(swept["store"])["trial_id"]) & ids)


def test_every_trial_that_ran_has_exactly_one_row_and_its_epochs(swept):
    store, good = swept["store"], swept["good"]
    recorded = _recorded_bad(swept)
    assert swept["summary"].total == 8 and swept["summary"].statuses == {"ok": 4, "error": len(recorded)}
    trials = pd.read_parquet(os.path.join(store, "trials"))
    assert sorted(trials["trial_id"]) == sorted([c["trial_id"] for c in good] + recorded)
    ok = trials[trials["status"] == "ok"]
    assert ((ok["final_acc"] > 0) & (ok["final_acc"] <= 1)).all() and (ok["epochs_done"] == 2).all()
    epochs = load_epochs(store, sweep="digits")
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2]] * 4


def test_ensemble_rows_carry_one_accuracy_per_member(swept):
    epochs = load_epochs(swept["store"], design_class="weq")
    assert len(epochs) == 4 and (epochs["members"] == 2).all() and epochs["member_acc"].map(len).eq(2).all()


def test_duckdb_reads_the_sweep_store(swept):
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"select count(*) from read_parquet('{swept['store']}/trials/*/*.parquet', hive_partitioning=true) "
                   "where sweep = 'digits' and status = 'ok'").fetchall()[0][0]  # fmt: skip
    assert n == 4


def test_progress_is_printed_as_plain_lines_with_the_pandas_example_and_no_traceback(swept):
    out, n_err = swept["out"], len(_recorded_bad(swept))
    assert f"8/8 done (ok 4, diverged 0, error {n_err}, not run {4 - n_err})" in out
    assert "best acc 0." in out and "pd.read_parquet(" in out and "\x1b" not in out
    assert "Traceback" not in out and "Configuration for experiment" not in out
    assert f"Ray's output (banners, warnings, tracebacks of failed attempts): {swept['summary'].log_path}" in out
    assert os.path.exists(swept["summary"].log_path)


def test_a_deterministic_error_is_recorded_at_once_without_retries(swept):
    recorded, out = _recorded_bad(swept), swept["out"]
    assert 2 <= len(recorded) <= 3  # two failures stop the data set; a third may already have been running
    rows = load_trials(swept["store"]).set_index("trial_id").loc[recorded]
    assert (rows["status"] == "error").all() and rows["error"].str.contains("test_size").all()
    for trial_id in recorded:
        assert f"trial {trial_id} single k=1 resnet-14 w=8 seed=0: error (not retried, it would recur): " in out
        assert f"trial {trial_id} failed (attempt" not in out


def test_a_data_set_whose_trials_all_fail_alike_is_stopped_and_its_other_trials_do_not_run(swept):
    not_run = sorted({c["trial_id"] for c in swept["bad"]} - set(_recorded_bad(swept)))
    assert not_run and sorted(swept["summary"].missing) == not_run
    assert "stopping data set digits at " in swept["out"]
    assert ": 2 of its trials failed with the same error, none succeeded; its other trials are not run" in swept["out"]
    assert all(f"trial {t} single k=1 resnet-14 w=8 seed=0: not run" in swept["out"] for t in not_run)


def test_a_transient_error_is_retried_and_the_trial_then_succeeds(swept):
    first = swept["good"][0]["trial_id"]
    assert f"trial {first} " in swept["out"] and "(attempt 1); it restarts from epoch 1" in swept["out"]
    assert "injected failure on the first attempt (test only)" in swept["out"]
    row = load_trials(swept["store"]).set_index("trial_id").loc[first]
    assert row["status"] == "ok" and row["epochs_done"] == 2


def test_cpu_trials_record_the_share_of_the_node_they_had(swept):
    ok = load_trials(swept["store"], status="ok")
    assert ok["device_shared"].all()
    assert (ok["device_share"] == "1 of 2 CPUs (up to 2 trials at once on the node)").all()


def test_a_rerun_skips_completed_trials_and_trains_nothing(swept):
    store = swept["store"]
    recorded = [c for c in swept["bad"] if c["trial_id"] in _recorded_bad(swept)]
    before = dict(load_trials(store)[["trial_id", "written_at"]].values)
    again = run_sweep(swept["spec"], store=store, configs=[*swept["good"], *recorded], progress=False)
    assert again.skipped == 4 + len(recorded) and again.statuses == {"ok": 4, "error": len(recorded)}
    assert dict(load_trials(store)[["trial_id", "written_at"]].values) == before


def test_the_latency_pass_times_every_ok_trial_and_writes_it_into_its_row(swept):
    trials = load_trials(swept["store"], sweep="digits").set_index("trial_id")
    ok = trials[trials["status"] == "ok"]
    assert len(ok) == 4 and (ok["latency_interleaved_ms_p50"] > 0).all()
    assert (ok["latency_interleaved_ms_p90"] >= ok["latency_interleaved_ms_iqr"]).all()
    assert trials[trials["status"] == "error"]["latency_interleaved_ms_p50"].isna().all()
    assert "latency pass: 4 trials timed in interleaved blocks, budget by budget" in swept["out"]
