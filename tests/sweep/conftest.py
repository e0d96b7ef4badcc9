"""Helpers for the sweep tests: tiny real trial configs from the digits preset."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_spec(*overrides: str):
    """Return the digits preset shrunk to single ResNets, 1 epoch, one seed (overrides apply on top)."""
    from spaces.spec import load_spec

    base = ['classes=["single"]', "epochs=1", "seeds=[0]", "measure.latency_runs=3", "measure.latency_warmup=1",
            "measure.throughput_batch=32"]  # fmt: skip
    return load_spec("digits", [*base, *overrides])


def failing_config(config: dict, root: str) -> dict:
    """Return a copy of `config` that fails in run_trial (CIFAR-10 asked for in an empty folder), with its own id."""
    bad = copy.deepcopy(config)
    bad["dataset"].update(name="cifar10", root=root, in_chans=3, image_size=32)
    bad["trial_id"] = "badbadbadbadbad0"
    return bad


def run_cli(*args: str, timeout: float = 300, **popen) -> subprocess.Popen:
    """Start `python run_sweep.py ARGS` from the repo root; return the Popen (stdout+stderr merged, text)."""
    return subprocess.Popen([sys.executable, os.path.join(REPO, "run_sweep.py"), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)  # fmt: skip


@pytest.fixture
def store(tmp_path):
    """Return a fresh store folder (as a string)."""
    return str(tmp_path / "store")
