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
