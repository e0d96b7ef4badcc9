"""A sweep on an S3 store (moto's server on loopback): the store URI carries its endpoint in the query, Ray keeps the
checkpoints there, a driver SIGKILLed mid-trial is resumed by the rerun from the trial's last epoch, and the report
reads the store back."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.fs as pafs
import pytest

from analysis.store import load_epochs, load_trials
from tests.sweep.conftest import kill_driver_when, run_cli, wait_out_claims
from tests.sweep.s3 import start_s3_server

pytestmark = pytest.mark.slow

# One trial of 3 epochs; the driver is killed once Ray has persisted the checkpoint of epoch 1.
# The killed driver's claim on the trial is taken over once stale: after 2 s here (the default is 10 minutes).
STALE_S = 2.0
ARGS = ["--spec", "digits", "--set", 'classes=["single"]', "--set", "families.0.widths=[8]", "--set", "seeds=[0]",
        "--set", "epochs=3", "--set", "measure.latency_runs=3", "--set", "measure.throughput_batch=32",
        "--claim-stale-after", str(STALE_S)]  # fmt: skip


@pytest.fixture(scope="module")
def s3():
    yield from start_s3_server()


def _listing(store: str) -> list[str]:
    fs, root = pafs.FileSystem.from_uri(store)
    return [i.path[len(root) + 1 :] for i in fs.get_file_info(pafs.FileSelector(root, recursive=True,
                                                                               allow_not_found=True))]  # fmt: skip


def _checkpoints(store: str) -> list[str]:
    return [p for p in _listing(store) if p.startswith("_tune/") and p.rsplit("/", 1)[-1].startswith("checkpoint_")]


@pytest.fixture(scope="module")
def resumed(s3, tmp_path_factory):
    """Run the sweep on S3, SIGKILL the driver as soon as the trial's first checkpoint is in the store, run it again;
    return what was seen."""
    store = s3.store("sweeps")
    report = str(tmp_path_factory.mktemp("report"))
    proc = run_cli(*ARGS, "--store", store, "--report", report, env=s3.env, start_new_session=True)
    killed_at = kill_driver_when(proc, lambda: bool(_checkpoints(store)), 300, poll_s=0.25)
    at_kill = _listing(store)
    wait_out_claims(store, "digits", STALE_S)
    rerun = run_cli(*ARGS, "--store", store, "--report", report, env=s3.env)
    out, _ = rerun.communicate(timeout=400)
    return {"store": store, "report": report, "killed_at": killed_at, "at_kill": at_kill, "rc": rerun.returncode,
            "out": out, "after": _listing(store)}  # fmt: skip


def test_the_driver_was_killed_mid_trial_with_a_checkpoint_in_the_store(resumed):
    assert any("/checkpoint_" in p for p in resumed["at_kill"]), resumed["at_kill"]
    assert not any(p.startswith("trials/") for p in resumed["at_kill"])  # the trial had not finished


def test_the_rerun_finishes_the_sweep_on_the_s3_store(resumed):
    assert resumed["rc"] == 0, resumed["out"][-3000:]
    assert f"0 already in the store {resumed['store']}, 1 to run" in resumed["out"]
    trials = load_trials(resumed["store"], sweep="digits")
    assert len(trials) == 1 and trials.iloc[0]["status"] == "ok"


def test_the_killed_drivers_claim_stayed_in_the_bucket_until_stale_and_the_rerun_took_it_over(resumed):
    claims = [p for p in resumed["at_kill"] if p.startswith("_claims/sweep=digits/")]
    assert len(claims) == 1 and claims[0].endswith(".1.json")
    assert "1 trial claimed by run digits-" in resumed["out"] and "stale claims, taken over" in resumed["out"]
    assert not [p for p in resumed["after"] if p.startswith("_claims/") and p.endswith(".json")]  # released


def test_the_killed_trial_resumed_from_its_last_epoch_with_its_start_time_kept(resumed):
    trial = load_trials(resumed["store"], sweep="digits").iloc[0]
    assert trial["started_at"] < pd.Timestamp(resumed["killed_at"])  # from the first run's checkpoint
    epochs = load_epochs(resumed["store"], sweep="digits")
    assert sorted(epochs["epoch"]) == [1, 2, 3]  # no epoch repeated, none lost


def test_a_finished_trials_checkpoints_are_removed_from_the_store(resumed):
    assert not [p for p in resumed["after"] if "/checkpoint_" in p]


def test_the_report_reads_the_s3_store_back_and_names_its_uri(resumed):
    with open(os.path.join(resumed["report"], "index.md")) as page:
        text = page.read()
    assert "Trials finished: 1 ok." in text
    assert f"Store: {resumed['store']} " in text
