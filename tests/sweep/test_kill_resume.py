"""SIGKILL the sweep driver mid-sweep, run the same command again: every trial ends in the store exactly once and
trials completed before the kill are not trained again; the claims the killed driver held are taken over once they are
stale (the staleness limit set short here, `--claim-stale-after`)."""

from __future__ import annotations

import glob
import os

import pytest

from analysis.store import load_epochs, load_trials
from harness.claims import Claims
from tests.sweep.conftest import kill_driver_when, run_cli, wait_out_claims

pytestmark = pytest.mark.slow

STALE_S = 2.0  # the claims' staleness limit in these tests (the default is 10 minutes)
ARGS = ["--spec", "digits", "--set", 'classes=["single"]', "--set", "seeds=[0,1]", "--set", "epochs=2",
        "--set", "measure.latency_runs=3", "--set", "measure.throughput_batch=32",
        "--claim-stale-after", str(STALE_S), "--set", "measure.cost_pass=false"]  # fmt: skip


def trial_files(store: str, table: str = "trials") -> dict[str, float]:
    """Return {trial file name: mtime} of the visible files of `table`."""
    return {os.path.basename(p): os.path.getmtime(p) for p in glob.glob(f"{store}/{table}/sweep=digits/*.parquet")}


def one_done_one_in_flight(store: str, claims: Claims) -> bool:
    """Return True when a trial is done and another holds a claim without being done."""
    done = trial_files(store)
    return bool(done) and any(f"{tid}.parquet" not in done for tid in claims.current())


def test_a_killed_sweep_resumes_without_duplicates_or_retraining(store):
    report = os.path.join(store, "..", "report")
    proc = run_cli(*ARGS, "--store", store, "--report", report, start_new_session=True)
    claims = Claims(store, "digits", STALE_S)
    # Killed once a trial is done and another is in flight, holding its claim.
    kill_driver_when(proc, lambda: one_done_one_in_flight(store, claims), 240)
    done_at_kill = trial_files(store)
    assert 1 <= len(done_at_kill) < 4, f"kill came too late or too early: {sorted(done_at_kill)}"
    epochs_at_kill = {name: t for name, t in trial_files(store, "epochs").items() if name in done_at_kill}
    written_at_kill = load_trials(store, sweep="digits").set_index("trial_id")["written_at"]
    held = {tid: c for tid, c in claims.current().items() if f"{tid}.parquet" not in done_at_kill}
    assert held, "no trial was in flight at the kill"
    (killed_run,) = {c.run_id for c in held.values()}
    # Nobody released the killed run's claims: they stay until their heartbeats are older than the limit.
    assert wait_out_claims(store, "digits", STALE_S) == len(claims.current()) >= len(held)

    rerun = run_cli(*ARGS, "--store", store, "--report", report)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert f"{len(done_at_kill)} already in the store" in out
    assert f"claimed by run {killed_run} on host " in out and "stale claims, taken over" in out
    with open(os.path.join(report, "index.md")) as page:
        assert "Trials finished: 4 ok." in page.read()  # the report covers all four trials
    assert os.path.exists(os.path.join(report, "explorer", "index.html"))  # and the explorer is beside it

    assert len(trial_files(store)) == 4
    # Completed trials were not trained again: their epochs files and their rows' write times are as they were (the
    # rerun's latency pass adds its columns to every row, keeping the rest).
    epochs_after = trial_files(store, "epochs")
    assert {name: epochs_after[name] for name in epochs_at_kill} == epochs_at_kill
    trials = load_trials(store, sweep="digits")
    assert (trials.set_index("trial_id")["written_at"].reindex(written_at_kill.index) == written_at_kill).all()
    assert trials["trial_id"].is_unique and (trials["status"] == "ok").all()
    in_flight = trials.set_index("trial_id").loc[sorted(held)]
    assert in_flight["run_id"].notna().all() and (in_flight["run_id"] != killed_run).all()  # the rerun trained them
    assert claims.current() == {}
    assert trials["latency_interleaved_ms_p50"].notna().all()
    epochs = load_epochs(store, sweep="digits")
    assert not epochs.duplicated(["trial_id", "epoch"]).any() and len(epochs) == 4 * 2

