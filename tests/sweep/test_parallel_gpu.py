"""The two parallel trials of `test_parallel_sweep` on 2 CUDA devices (issue 25): a members-parallel dct ensemble and
a data-parallel single network with synchronised BatchNorm (torch's SyncBatchNorm over NCCL) run through
`run_sweep.py` with `resources.gpus = 2`. Needs 2 CUDA devices and Ray; skips cleanly elsewhere (`pytest -m gpu`)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from analysis.store import load_epochs, load_trials
from tests.sweep.conftest import run_cli

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices"),
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray (Ray Train runs the workers)"),
]

EPOCHS = 2
ARGS = ["--spec", "digits", "--set", 'classes=["single", "dct"]', "--set", "seeds=[0]", "--set", f"epochs={EPOCHS}",
        "--set", "families.0.widths=[8]", "--set", "resources.gpus=2",
        "--set", 'resources.parallel={ dct = "members", single = "data" }', "--set", "recipe.sync_bn=true",
        "--set", "measure.cost_pass=false", "--set", "measure.latency_runs=3", "--set", "measure.throughput_batch=32",
        "--no-report"]  # fmt: skip


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Run the sweep on 2 GPUs; return (return code, output, store)."""
    store = str(tmp_path_factory.mktemp("parallel_gpu") / "store")
    proc = run_cli(*ARGS, "--store", store)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out, store


def test_both_parallel_trials_train_on_two_cuda_devices_into_the_store(swept):
    rc, out, store = swept
    assert rc == 0, out[-3000:]
    trials = load_trials(store, sweep="digits").set_index("design_class")
    assert (trials["status"] == "ok").all() and len(trials) == 2
    assert trials.loc["dct", "parallel"] == "members" and trials.loc["single", "parallel"] == "data"
    assert (trials["workers"] == 2).all() and (trials["gpus"] == 2).all()
    assert trials["mem_source"].str.startswith("cuda_allocator").all() and (trials["peak_mem_mb"] > 0).all()
    assert trials["final_acc"].gt(0.2).all()  # both learned (chance is 0.1)
    epochs = load_epochs(store, sweep="digits")
    assert len(epochs) == 2 * EPOCHS and not epochs.duplicated(["trial_id", "epoch"]).any()
