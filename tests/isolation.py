"""Tests that run native code which can abort the process (inductor's CPU kernels) run it in a child process:
a crash then fails that one test, naming the signal, and the test run goes on."""

from __future__ import annotations

import pytest
import torch

from harness.compile_probe import inductor_cpu_probe
from harness.isolate import ChildCrashed, call_in_child


def in_child(target: str, *args, timeout_s: float = 1200.0, env: dict | None = None):
    """Return `module:function`(*args) run in a fresh Python process (with `env` added to its environment); a child
    killed by a signal fails the calling test (or fixture) with a one-line message naming the signal."""
    try:
        return call_in_child(target, *args, timeout_s=timeout_s, env=env)
    except ChildCrashed as crash:
        pytest.fail(f"child process crashed: {crash}", pytrace=False)


def skip_unless_inductor_cpu_survives(threads: int) -> None:
    """Skip the calling test when the probe (harness.compile_probe) shows that inductor's CPU kernels abort on this
    torch build with `threads` threads; the reason names the torch version and the signal."""
    answer = inductor_cpu_probe(threads)
    if not answer["ok"]:
        pytest.skip(
            f"inductor's CPU kernels crash on torch {torch.__version__} with {threads} thread(s): the compile probe"
            f" died with {answer['signal']}"
        )


def run_trial_counting_graphs(config: dict) -> dict:
    """Return `harness.trial.run_trial(config)`'s result (a target for `in_child`) with 'graphs_by_epoch': how many
    graphs torch.compile had captured in this process when each EPOCH record was reported."""
    import os

    from torch._dynamo.utils import counters

    from harness.trial import run_trial

    if os.environ.get("HARNESS_TEST_INDUCTOR_ABORTS") == "1":  # the test-only crasher (tests/conftest.py)
        from tests.crashers import make_inductor_abort

        make_inductor_abort()

    graphs: list[int] = []

    def count(record: dict) -> None:
        if record["kind"] == "epoch":
            graphs.append(int(counters["stats"]["unique_graphs"]))

    return {**run_trial(config, count), "graphs_by_epoch": graphs}
