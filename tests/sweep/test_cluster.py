"""A sweep on a 2-node Ray cluster on this machine (ray.cluster_utils.Cluster, 1 CPU per node) into a shared store.

It runs in a subprocess: a process holds one Ray connection, and the test session's own Ray stays untouched."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from analysis.store import load_trials
from tests.sweep.conftest import REPO

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import sys
    from ray.cluster_utils import Cluster
    from harness.sweep import run_sweep
    from tests.sweep.conftest import tiny_spec

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        summary = run_sweep(tiny_spec("epochs=1"), store=sys.argv[1], address=cluster.address, progress_every_s=2)
    finally:
        cluster.shutdown()
    print("NODES 2 OK", summary.ok)
""")


def test_a_sweep_runs_across_two_nodes_into_a_shared_store(store):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, store], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "NODES 2 OK True" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = load_trials(store, sweep="digits")
    assert len(trials) == 2 and (trials["status"] == "ok").all()
    # One CPU per node and two one-CPU trials: they ran at the same time, so on different nodes.
    first, second = trials.sort_values("started_at").to_dict("records")
    assert second["started_at"] < first["finished_at"]
