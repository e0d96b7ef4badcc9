"""Shared fixtures. `ray_local`: ONE local Ray (2 CPUs) for the whole test session, started lazily by the first test
that asks for it and shut down when the session ends. Tests that need their own cluster run it in a subprocess."""

from __future__ import annotations

import logging
import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """Return the GCS address ("host:port") of the session's local Ray, starting it on first use."""
    import ray

    # Trials keep the repo as working directory (relative data paths keep working); Tune passes this on to trials.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


# Tests that run inductor's C++ kernels on the CPU are opt-in (issue 21): on some hosts (AVX-512, torch 2.14.1) those
# kernels abort the process with heap corruption, and the default run must pass on every CPU CI may run on.
INDUCTOR_CPU_MARK = "inductor_cpu"
# Test-only crasher: with this variable set, inductor's compiler aborts the process (tests.crashers), to show on a host
# whose kernels do not abort that the default run does not depend on them.
INDUCTOR_ABORTS_ENV = "HARNESS_TEST_INDUCTOR_ABORTS"


def pytest_configure(config):
    if os.environ.get(INDUCTOR_ABORTS_ENV) == "1":
        from tests.crashers import make_inductor_abort

        make_inductor_abort()


def pytest_report_header(config):
    """Name the host's CPU and torch's CPU kernels, so a failure can be tied to the kind of machine it ran on."""
    import platform

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
                 platform.processor() or "unknown")  # fmt: skip
    try:
        import torch

        capability = f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    except ImportError:
        capability = "torch not importable"
    return f"cpu: {model} ({os.cpu_count()} cores); {capability}"


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def pytest_collection_modifyitems(config, items):
    if INDUCTOR_CPU_MARK in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="inductor's C++ kernels on the CPU abort the process on some hosts; opt in with"
                                   f" `pytest -m {INDUCTOR_CPU_MARK}`")  # fmt: skip
    for item in items:
        if INDUCTOR_CPU_MARK in item.keywords:
            item.add_marker(skip)
