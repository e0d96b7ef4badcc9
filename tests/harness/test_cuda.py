"""The CUDA paths of a trial: data resident on the GPU, bf16 autocast, channels_last, fused members by `auto`, and
the memory readings (allocator and NVML). They need a CUDA device and skip cleanly without one (`pytest -m gpu`
runs them where there is one)."""

from __future__ import annotations

import pytest
import torch

from harness.data import load_data
from harness.store import rows_from_result
from harness.trial import run_trial
from tests.harness.conftest import design_point, make_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def on_cuda(config: dict) -> dict:
    """Return `config` asking for one GPU."""
    config["resources"]["gpus"] = 1
    return config


@pytest.fixture(scope="module")
def bf16_channels_last_trial():
    """A single resnet-8 trained 3 epochs on digits on the GPU in bf16 and channels_last: (config, result)."""
    config = on_cuda(make_config(design_point("single"), epochs=3, precision="bf16", channels_last=True))
    return config, run_trial(config, lambda r: None)


def test_small_data_sets_stay_resident_on_the_gpu():
    data = load_data(make_config(design_point("single"))["dataset"], torch.device("cuda"))
    assert not data.loader
    assert data.train_x.device.type == "cuda" and data.test_x.device.type == "cuda"


def test_a_bf16_channels_last_trial_learns_digits_and_records_what_ran(bf16_channels_last_trial):
    config, result = bf16_channels_last_trial
    final = result["final"]
    assert final["status"] == "ok" and result["epochs"][-1]["test_acc"] > 0.5
    assert final["precision"] == "bf16" and final["channels_last"] is True
    assert final["device_name"] == torch.cuda.get_device_name() and final["cuda_version"] == torch.version.cuda
    row, _ = rows_from_result(config, result)
    assert (row["precision"], row["channels_last"], row["execution"]) == ("bf16", True, "sequential")


def test_gpu_memory_is_read_from_the_allocator_and_nvml(bf16_channels_last_trial):
    final = bf16_channels_last_trial[1]["final"]
    assert final["mem_source"] in ("cuda_allocator+nvml", "cuda_allocator")
    assert 0 < final["peak_mem_mb"] <= final["peak_mem_reserved_mb"]
    if final["mem_source"] == "cuda_allocator+nvml":
        # NVML sees the whole process: the CUDA context and everything the caching allocator holds.
        assert final["nvml_mem_mb"] > final["peak_mem_reserved_mb"]


def test_auto_runs_an_ensemble_fused_on_cuda_and_it_learns():
    result = run_trial(
        on_cuda(make_config(design_point("deq", members=4, width=16), epochs=3, execution="auto")), lambda r: None
    )
    assert result["final"]["execution"] == "fused" and result["final"]["channels_last"] is False
    assert result["epochs"][-1]["test_acc"] > 0.5


def test_an_fp16_trial_runs_with_loss_scaling_and_learns():
    result = run_trial(on_cuda(make_config(design_point("single"), epochs=3, precision="fp16")), lambda r: None)
    assert result["final"]["precision"] == "fp16" and result["final"]["status"] == "ok"
    assert result["epochs"][-1]["test_acc"] > 0.5


@pytest.mark.parametrize("wanted", [False, True])
def test_a_cuda_trial_sets_cudnn_benchmark_as_its_recipe_says(wanted):
    run_trial(on_cuda(make_config(design_point("single"), epochs=1, cudnn_benchmark=wanted)), lambda r: None)
    assert torch.backends.cudnn.benchmark is wanted
