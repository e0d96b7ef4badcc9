"""Rerunning a sweep whose store holds an error row and a trial whose epochs file does not read: with --rerun-errors
the error row is trained again, the broken file is set aside and its trial rerun, and the run says so."""

from __future__ import annotations

import os

import pytest

import run_sweep
from analysis.store import load_epochs, load_trials
from harness.store import rows_from_result, store_path, write_error_row, write_trial
from tests.sweep.test_store import fake_result

pytestmark = pytest.mark.slow

SETS = ['classes=["single"]', "epochs=1", "seeds=[0]", "measure.latency_runs=3", "measure.latency_warmup=1",
        "measure.throughput_batch=32"]  # fmt: skip


@pytest.fixture(scope="module")
def rerun(ray_local, tmp_path_factory):
    """Seed a store with an error row (trial 0) and an ok trial whose epochs file is truncated (trial 1), then run the
    CLI with --rerun-errors on the session's Ray; return (exit code, its output, store, configs, broken file)."""
    import io
    from contextlib import redirect_stdout

    from spaces.spec import load_spec, trial_configs

    store = str(tmp_path_factory.mktemp("rerun") / "store")
    configs = trial_configs(load_spec("digits", SETS))  # two widths: two trials
    errored, truncated = configs
    row, _ = rows_from_result(errored, None, error="OutOfMemoryError: CUDA out of memory (a transient one)")
    write_error_row(store, "digits", row)
    row, epochs = rows_from_result(truncated, fake_result(truncated, accs=(0.5,)))
    write_trial(store, "digits", row, epochs)
    broken = store_path(store, "epochs", "digits", truncated["trial_id"])
    with open(broken, "r+b") as f:
        f.truncate(os.path.getsize(broken) // 2)
    args = [a for s in SETS for a in ("--set", s)]
    out = io.StringIO()
    with redirect_stdout(out):
        rc = run_sweep.main(["--spec", "digits", *args, "--store", store, "--rerun-errors", "--max-failures", "0",
                             "--no-report"])  # fmt: skip
    return rc, out.getvalue(), store, configs, broken


def test_rerun_errors_trains_an_error_row_again(rerun):
    rc, out, store, (errored, _), _ = rerun
    assert rc == 0, out
    assert "0 already in the store" in out and "2 to run" in out
    got = load_trials(store, sweep="digits").set_index("trial_id").loc[errored["trial_id"]]
    assert got["status"] == "ok" and got["final_acc"] > 0.1


def test_a_truncated_epochs_file_is_set_aside_its_trial_retrained_and_the_run_says_so(rerun):
    _, out, store, (_, truncated), broken = rerun
    assert f"trial {truncated['trial_id']}: {broken} does not read" in out and "the trial runs again" in out
    aside = [n for n in os.listdir(os.path.dirname(broken)) if n.startswith(f".{os.path.basename(broken)}.unreadable-")]
    assert len(aside) == 1  # kept for inspection, hidden from readers
    epochs = load_epochs(store, sweep="digits")  # the whole table reads again
    assert sorted(epochs["trial_id"]) == sorted(c["trial_id"] for c in rerun[3])
    row = load_trials(store, sweep="digits").set_index("trial_id").loc[truncated["trial_id"]]
    assert row["status"] == "ok" and row["final_acc"] != 0.5  # retrained, not the seeded fake row


def test_the_clis_max_failures_default_is_the_sweeps():
    from harness.sweep import DEFAULT_MAX_FAILURES

    assert run_sweep.DEFAULT_MAX_FAILURES == DEFAULT_MAX_FAILURES
