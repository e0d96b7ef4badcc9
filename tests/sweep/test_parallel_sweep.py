"""Trials that span 2 Ray Train workers through `run_sweep.py` (issue 25): a members-parallel dct ensemble and a
data-parallel single network train side by side on the embedded local Ray, the driver is SIGKILLed once each has a
checkpoint, and the rerun resumes both from their last epoch, training none twice, into one trials row each (with
`parallel` and `workers`) and one row per epoch. In the rerun one Train worker of a trial is SIGKILLed once it has
checkpointed another epoch (a lost worker): Tune retries the trial, which resumes from that checkpoint."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import time

import pandas as pd
import pytest
import torch

from analysis.store import load_epochs, load_trials
from harness.store import work_dir_prefix
from tests.sweep.conftest import kill_driver_when, run_cli, wait_out_claims

pytestmark = pytest.mark.slow

STALE_S = 2.0
EPOCHS = 3
# Half a CPU per worker: both trials' 2 workers fit the 2 cores at once, so one kill finds both mid-way. dct trains on
# batches of 16 so that its epochs last about as long as the data-parallel network's (DDP syncs every step).
ARGS = ["--spec", "digits", "--set", 'classes=["single", "dct"]', "--set", "seeds=[0]", "--set", f"epochs={EPOCHS}",
        "--set", "families.0.widths=[8]", "--set", "resources.workers=2", "--set", "resources.cpus=0.5",
        "--set", 'resources.parallel={ dct = "members", single = "data" }', "--set", "recipe.sync_bn=true",
        "--set", "recipe.dct.batch_size=16", "--set", "measure.cost_pass=false", "--set", "measure.latency_runs=3",
        "--set", "measure.throughput_batch=32", "--claim-stale-after", str(STALE_S), "--no-report"]  # fmt: skip


def checkpoint_files(store: str) -> dict[str, list[str]]:
    """Return {trial id: its Ray Train run's checkpoint files, oldest first} under the store's Train storage."""
    found = {}
    for path in sorted(glob.glob(f"{store}/_tune/train/*/checkpoint_*/trial_state.pt")):
        found.setdefault(path.split("/")[-3], []).append(path)
    return found


def work_folders(store: str, trial_id: str, ranks=(0, 1)) -> list[str]:
    """Return the local working folders of the trial's workers (`harness.store.trial_work_dir`) on this host, named
    `...-rank<N>-pid<worker process>`."""
    return [p for rank in ranks for p in glob.glob(f"{glob.escape(work_dir_prefix(store, trial_id, rank))}-pid*")]


def newest_history(store: str, trial_id: str) -> list[dict] | None:
    """Return the EPOCH records in the trial's newest checkpoint that loads (None: none yet)."""
    for path in reversed(checkpoint_files(store).get(trial_id, [])):
        try:
            return torch.load(path, weights_only=True)["history"]
        except Exception:  # being written, or removed for a newer one
            continue
    return None


def finished(store: str) -> set[str]:
    return {os.path.basename(p)[: -len(".parquet")] for p in glob.glob(f"{store}/trials/sweep=digits/*.parquet")}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Run the sweep, SIGKILL the driver once both trials have a checkpoint and neither has finished, read the latest
    checkpoint of each, run the sweep again; return what was seen."""
    store = str(tmp_path_factory.mktemp("parallel") / "store")
    proc = run_cli(*ARGS, "--store", store, start_new_session=True)
    kill_driver_when(proc, lambda: len(checkpoint_files(store)) >= 2, 400)
    latest = {tid: files[-1] for tid, files in checkpoint_files(store).items()}
    at_kill = {tid: torch.load(path, weights_only=True)["history"] for tid, path in latest.items()}
    done_at_kill = finished(store)
    wait_out_claims(store, "digits", STALE_S)
    rerun = run_cli(*ARGS, "--store", store)
    lost = kill_a_worker_once_resumed(store, at_kill, 300)
    out, _ = rerun.communicate(timeout=400)
    return {"store": store, "at_kill": at_kill, "done_at_kill": done_at_kill, "rc": rerun.returncode, "out": out,
            "lost": lost, "work_left": {tid: work_folders(store, tid) for tid in at_kill}}  # fmt: skip


def kill_a_worker_once_resumed(store: str, at_kill: dict[str, list], timeout_s: float) -> tuple[str, list[dict]]:
    """In the rerun, as soon as the trial that had trained least at the driver's kill has a newer checkpoint (one
    more epoch), SIGKILL its rank-1 Train worker (a lost worker: its pid is in its working folder's name); return
    (the trial id, the history in that checkpoint)."""
    target = min(at_kill, key=lambda tid: len(at_kill[tid]))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        history = newest_history(store, target)
        if history is not None and len(history) > len(at_kill[target]):
            for folder in work_folders(store, target, ranks=(1,)):
                with contextlib.suppress(ProcessLookupError):  # a killed run's folder, its process gone
                    os.kill(int(folder.rsplit("-pid", 1)[1]), signal.SIGKILL)
                    return target, history
        time.sleep(0.1)
    raise AssertionError(f"trial {target} had no newer checkpoint with a live rank-1 worker within {timeout_s:g} s")


def test_both_trials_were_killed_mid_way_with_a_checkpoint_each(resumed):
    assert len(resumed["at_kill"]) == 2 and not resumed["done_at_kill"]
    assert all(1 <= len(history) < EPOCHS for history in resumed["at_kill"].values()), resumed["at_kill"]


def test_the_rerun_writes_one_row_per_trial_with_how_it_ran(resumed):
    assert resumed["rc"] == 0, resumed["out"][-3000:]
    assert "0 already in the store" in resumed["out"] and "2 to run" in resumed["out"]
    trials = load_trials(resumed["store"], sweep="digits").set_index("design_class")
    assert trials["trial_id"].is_unique and (trials["status"] == "ok").all() and len(trials) == 2
    assert trials.loc["dct", "parallel"] == "members" and trials.loc["single", "parallel"] == "data"
    assert (trials["workers"] == 2).all()
    assert (trials["peak_mem_mb"] > 0).all() and (trials["epochs_done"] == EPOCHS).all()
    # Rank 0 measured the whole ensemble (FLOPs of both members: 2 per MAC of the design), not its own member.
    assert trials.loc["dct", "flops_torch"] == 2 * trials.loc["dct", "macs"]
    # The members-parallel ensemble's inference timed with both members at once, beside the sequential figure.
    assert trials.loc["dct", "latency_concurrent_ms_p50"] > 0 and trials.loc["dct", "throughput_concurrent_sps"] > 0
    assert pd.isna(trials.loc["single", "latency_concurrent_ms_p50"])


def test_each_trial_resumed_from_its_last_epoch_training_none_twice(resumed):
    epochs = load_epochs(resumed["store"], sweep="digits")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    for trial_id, history in resumed["at_kill"].items():
        rows = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        assert rows["epoch"].tolist() == list(range(1, EPOCHS + 1))
        # The epochs in the checkpoint were not trained again: the rows hold exactly their records.
        for record in history:
            row = rows[rows["epoch"] == record["epoch"]].iloc[0]
            assert row["epoch_time_s"] == record["epoch_time_s"] and row["test_acc"] == record["test_acc"]


def test_a_finished_trials_train_runs_are_removed(resumed):
    assert checkpoint_files(resumed["store"]) == {}


def test_a_resumed_trial_leaves_no_working_folder_of_its_workers_nor_of_its_killed_run(resumed):
    assert resumed["work_left"] == {tid: [] for tid in resumed["at_kill"]}


def test_a_trial_that_lost_a_worker_is_retried_from_its_last_checkpoint_training_none_twice(resumed):
    trial_id, history = resumed["lost"]
    retried = [line for line in resumed["out"].splitlines() if f"trial {trial_id} " in line and "(attempt 1)" in line]
    assert len(retried) == 1 and "it restarts from its Ray Train run's latest checkpoint" in retried[0], retried
    print(retried[0])  # shown with -s: why Tune retried it
    epochs = load_epochs(resumed["store"], sweep="digits")
    rows = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
    assert rows["epoch"].tolist() == list(range(1, EPOCHS + 1))
    for record in history:  # trained before the worker was lost, not again after
        row = rows[rows["epoch"] == record["epoch"]].iloc[0]
        assert row["epoch_time_s"] == record["epoch_time_s"] and row["test_acc"] == record["test_acc"]
