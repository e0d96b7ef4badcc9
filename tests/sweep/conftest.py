"""Helpers for the sweep tests: tiny real trial configs from the digits preset."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_spec(*overrides: str):
    """Return the digits preset shrunk to single ResNets, 1 epoch, one seed, no cost pass (overrides apply on
    top)."""
    from spaces.spec import load_spec

    base = ['classes=["single"]', "epochs=1", "seeds=[0]", "measure.latency_runs=3", "measure.latency_warmup=1",
            "measure.throughput_batch=32", "measure.cost_pass=false"]  # fmt: skip
    return load_spec("digits", [*base, *overrides])


def refused_config(config: dict, n: int) -> dict:
    """Return a copy of `config` with its own id whose data set the trial refuses every time (a test fraction of 2,
    which scikit-learn's split rejects with a ValueError subclass): an invalid config that slipped past the spec."""
    bad = copy.deepcopy(config)
    bad.pop("test_fail_first_attempt", None)
    bad["dataset"]["test_fraction"] = 2.0
    bad["trial_id"] = f"refused{n:09d}"
    return bad


def run_cli(*args: str, timeout: float = 300, **popen) -> subprocess.Popen:
    """Start `python run_sweep.py ARGS` from the repo root; return the Popen (stdout+stderr merged, text)."""
    return subprocess.Popen([sys.executable, os.path.join(REPO, "run_sweep.py"), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)  # fmt: skip


def wait_out_claims(store: str, sweep: str, stale_s: float, timeout_s: float = 120) -> int:
    """Wait until every claim left in the store's sweep has had no heartbeat for longer than `stale_s` seconds (what a
    SIGKILLed driver's claims do once its workers are gone); return how many claims there are."""
    from harness.claims import Claims

    claims = Claims(store, sweep, stale_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = list(claims.current().values())
        if all(c.is_stale(stale_s) for c in left):
            return len(left)
        time.sleep(0.2)
    raise AssertionError(f"claims in {store} still had heartbeats after {timeout_s:g} s")


@pytest.fixture
def store(tmp_path):
    """Return a fresh store folder (as a string)."""
    return str(tmp_path / "store")


def kill_driver_when(proc: subprocess.Popen, ready, timeout_s: float, poll_s: float = 0.2) -> dt.datetime:
    """Wait until `ready()` is true (or the driver ended, or `timeout_s` passed), SIGKILL the driver alone, as a crash
    or `kill -9` would, then, 2 s later, what it left in the process group the test started it in (its embedded Ray,
    Train workers); return when the driver was killed (UTC). `proc` must be started with start_new_session=True."""
    deadline = time.monotonic() + timeout_s
    try:
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(poll_s)
        killed_at = dt.datetime.now(dt.UTC)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        time.sleep(2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return killed_at
