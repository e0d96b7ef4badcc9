"""Claims in the store (harness.claims), on a local folder and on a real S3 server (moto on loopback), without Ray:
one winner per trial however many drivers race, live claims respected, stale ones taken over once; and a checkpoint
in the store that does not load is set aside there."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
import warnings

import pyarrow.fs as pafs
import pytest
import torch

from harness.claims import Claims, skipped_lines
from harness.store import filesystem
from harness.sweep import _restore_checkpoint
from tests.sweep.s3 import start_s3_server


@pytest.fixture(scope="module")
def s3():
    yield from start_s3_server()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """A fresh store: a local folder, or a prefix in a bucket of the S3 test server."""
    if request.param == "local":
        return str(tmp_path / "store")
    server = request.getfixturevalue("s3")
    return server.store("claims", prefix=f"store-{tmp_path.name}")


def _race(store: str, run_id: str, trial_ids: list[str], stale_s: float, barrier, won) -> None:
    barrier.wait()  # every driver starts claiming at the same moment
    claims = Claims(store, "digits", stale_s)
    for trial_id in trial_ids:
        if claims.acquire(trial_id, run_id).mine is not None:
            won.put((trial_id, run_id))
    won.put(("done", run_id))


def race(store: str, drivers: int, trial_ids: list[str], stale_s: float = 600.0) -> dict[str, list[str]]:
    """Let `drivers` processes claim the same trials at once; return {trial id: [runs that got it]}."""
    ctx = multiprocessing.get_context("fork")
    barrier, won = ctx.Barrier(drivers), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(store, f"run{n}", trial_ids, stale_s, barrier, won))
             for n in range(drivers)]  # fmt: skip
    for p in procs:
        p.start()
    got: dict[str, list[str]] = {t: [] for t in trial_ids}
    finished = 0
    while finished < drivers:
        trial_id, run_id = won.get(timeout=120)
        if trial_id == "done":
            finished += 1
        else:
            got[trial_id].append(run_id)
    for p in procs:
        p.join(timeout=30)
    return got


def test_drivers_racing_for_the_same_trials_get_each_trial_exactly_once(store):
    got = race(store, drivers=4, trial_ids=[f"t{i}" for i in range(8)])
    assert {t: len(runs) for t, runs in got.items()} == {f"t{i}": 1 for i in range(8)}


def test_a_live_claim_of_another_run_is_respected_and_names_its_run_host_and_time(store):
    mine = Claims(store, "digits").acquire("t1", "run-a", {"host": "head", "pid": 7}).mine
    outcome = Claims(store, "digits").acquire("t1", "run-b")
    assert outcome.mine is None and outcome.holder.run_id == "run-a" and outcome.holder.host == mine.host
    assert outcome.holder.pid == os.getpid() and outcome.holder.driver_pid == 7
    assert abs((outcome.holder.claimed_at - dt.datetime.now(dt.UTC)).total_seconds()) < 60


def test_a_claim_of_the_same_run_is_its_own_as_when_ray_retries_the_trial(store):
    first = Claims(store, "digits").acquire("t1", "run-a").mine
    again = Claims(store, "digits").acquire("t1", "run-a").mine
    assert again is not None and again.path == first.path and again.claimed_at == first.claimed_at


def test_a_stale_claim_is_taken_over_once_with_the_next_generation(store):
    Claims(store, "digits", stale_s=0.5).acquire("t1", "dead-run")
    time.sleep(1.0)
    got = race(store, drivers=3, trial_ids=["t1"], stale_s=0.5)
    assert len(got["t1"]) == 1
    (newest,) = Claims(store, "digits").current().values()
    assert newest.generation == 2 and newest.run_id == got["t1"][0]
    fs, root = filesystem(store)
    files = fs.get_file_info(pafs.FileSelector(f"{root}/_claims/sweep=digits"))
    assert [f.base_name for f in files] == ["t1.2.json"]  # the dead run's generation is removed


def test_a_held_claim_heartbeats_while_held_and_is_deleted_after(store):
    claims = Claims(store, "digits", stale_s=1.0)  # a heartbeat every 0.1 s
    with claims.held("t1", "run-a") as outcome:
        first = outcome.mine.heartbeat_at
        time.sleep(0.6)
        (now,) = claims.current().values()
        assert now.heartbeat_at > first and now.claimed_at == outcome.mine.claimed_at
        assert Claims(store, "digits", stale_s=1.0).acquire("t1", "run-b").mine is None  # still live
    assert claims.current() == {}


def test_a_driver_releases_the_claims_its_run_left(store):
    claims = Claims(store, "digits")
    for trial_id in ("t1", "t2"):
        claims.acquire(trial_id, "run-a")
    claims.acquire("t3", "run-b")
    assert claims.release_run("run-a") == 2 and set(claims.current()) == {"t3"}


def test_the_driver_says_how_many_trials_another_run_trains_on_which_host_since_when(tmp_path):
    store = str(tmp_path / "store")
    claims = Claims(store, "digits")
    for trial_id in ("t1", "t2"):
        claims.acquire(trial_id, "run-a")
    live, stale = Claims(store, "digits").others(["t1", "t2", "t3"], run_id="run-b")
    (line,) = skipped_lines("digits", live, stale, 600)
    host, since = live["t1"].host, min(c.claimed_at for c in live.values()).strftime("%H:%M UTC")
    assert line.startswith(f"[digits] 2 trials are being trained by another run on host {host} since {since}; skipped")
    assert "no heartbeat for 10 min is taken over" in line


def test_a_checkpoint_in_the_store_that_does_not_load_is_set_aside_there_and_an_older_one_used(store, tmp_path):
    fs, root = filesystem(store)
    newer = f"{root}/_tune/digits-20260101-000000/t1/checkpoint_000002"
    older = f"{root}/_tune/digits-20250101-000000/t1/checkpoint_000001"
    for folder in (newer, older):
        fs.create_dir(folder)
    with fs.open_output_stream(f"{newer}/trial_state.pt") as out:
        out.write(b"half a checkpoint")
    local = tmp_path / "older.pt"
    torch.save({"trial_id": "t1", "history": [{"epoch": 1}]}, local)
    with fs.open_output_stream(f"{older}/trial_state.pt") as out:
        out.write(local.read_bytes())
    work = tmp_path / "work"
    work.mkdir()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        used = _restore_checkpoint(store, "digits", "t1", "digits-20260202-000000", str(work))

    assert used == older and torch.load(work / "trial_state.pt", weights_only=True)["history"] == [{"epoch": 1}]
    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(newer))]
    assert len(names) == 1 and names[0].startswith(".trial_state.pt.unreadable-")  # a dot-file, in the store
    (message,) = [str(w.message) for w in caught if "does not load" in str(w.message)]
    assert "\n" not in message and f"set aside there as {newer}/{names[0]}" in message
