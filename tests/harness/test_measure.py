"""CPU peak memory is per trial: the peak-RSS window resets, so an earlier, larger allocation does not leak in."""

import sys

import pytest
import torch

from harness import measure

CPU = torch.device("cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset needs Linux /proc")
def test_cpu_peak_memory_forgets_what_happened_before_the_reset():
    big = torch.ones(100 * 2**20)  # 400 MiB, touched, so resident
    with_big = measure.peak_memory(CPU)["peak_mem_mb"]
    del big
    measure.reset_peak_memory(CPU)
    after_reset = measure.peak_memory(CPU)
    assert after_reset["mem_source"] == "rss"
    assert after_reset["peak_mem_mb"] < with_big - 300


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset needs Linux /proc")
def test_cpu_peak_memory_counts_an_allocation_inside_the_window():
    measure.reset_peak_memory(CPU)
    before = measure.peak_memory(CPU)["peak_mem_mb"]
    big = torch.ones(50 * 2**20)  # 200 MiB
    peak = measure.peak_memory(CPU)["peak_mem_mb"]
    del big
    assert peak - before == pytest.approx(200, abs=30)
