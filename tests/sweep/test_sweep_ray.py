"""run_sweep on the session's real local Ray: trials land in the store once, reruns skip them, a failing trial is
retried and then recorded as an error while the sweep goes on. One small sweep is run once for the module."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from analysis.store import load_epochs, load_trials
from harness.sweep import run_sweep, trial_resources
from tests.sweep.conftest import failing_config, tiny_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def swept(ray_local, tmp_path_factory):
    """Run 4 real trials (single + weq at two budgets, 2 epochs) plus one that always fails; return what we saw.

    The failing trial goes first so that its retries overlap the good trials on the 2 CPUs."""
    import io
    from contextlib import redirect_stdout

    from spaces.spec import trial_configs

    store = str(tmp_path_factory.mktemp("sweep") / "store")
    spec = tiny_spec('classes=["single","weq"]', "epochs=2")
    good = trial_configs(spec)
    bad = failing_config(good[0], str(tmp_path_factory.mktemp("no-cifar-here")))
    out = io.StringIO()
    with redirect_stdout(out):
        summary = run_sweep(spec, store=store, configs=[bad, *good], max_failures=1, progress_every_s=1)
    return {"store": store, "spec": spec, "good": good, "bad": bad, "summary": summary, "out": out.getvalue()}


def test_trial_resources_are_whole_gpus_unless_fractional():
    assert trial_resources({"resources": {"cpus": 2, "gpus": 0.5}}) == {"CPU": 2.0, "GPU": 1.0}
    assert trial_resources({"resources": {"cpus": 1, "gpus": 0.5, "fractional_gpu": True}}) == {"CPU": 1.0, "GPU": 0.5}
    assert trial_resources({"resources": {"cpus": 1, "gpus": 0}}) == {"CPU": 1.0, "GPU": 0.0}


def test_every_trial_has_exactly_one_row_and_its_epochs(swept):
    store, good = swept["store"], swept["good"]
    assert swept["summary"].total == 5 and swept["summary"].statuses == {"ok": 4, "error": 1}
    trials = pd.read_parquet(os.path.join(store, "trials"))
    assert sorted(trials["trial_id"]) == sorted(c["trial_id"] for c in [*good, swept["bad"]])
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


def test_progress_is_printed_as_plain_lines_with_the_pandas_example(swept):
    out = swept["out"]
    assert "5/5 done (ok 4, diverged 0, error 1)" in out
    assert "best acc 0." in out and "pd.read_parquet(" in out and "\x1b" not in out


def test_a_failing_trial_is_retried_then_recorded_as_error_with_its_text(swept):
    bad = swept["bad"]["trial_id"]
    row = load_trials(swept["store"]).set_index("trial_id").loc[bad]
    assert row["status"] == "error" and "cifar10 not found" in row["error"]
    assert f"trial {bad} failed (attempt 1); retrying" in swept["out"] and "error after 2 attempt(s)" in swept["out"]


def test_a_rerun_skips_completed_trials_and_trains_nothing(swept):
    store = swept["store"]
    before = dict(load_trials(store)[["trial_id", "written_at"]].values)
    again = run_sweep(swept["spec"], store=store, configs=[*swept["good"], swept["bad"]], progress=False)
    assert again.skipped == 5 and again.statuses == {"ok": 4, "error": 1}
    assert dict(load_trials(store)[["trial_id", "written_at"]].values) == before
