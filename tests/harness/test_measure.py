"""CPU peak memory is per trial: the peak-RSS window resets, so an earlier, larger allocation does not leak in."""

import sys
import time

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
    measure.memory_baseline(CPU)  # as a trial does: free heap pages go back to the OS, so new memory shows
    measure.reset_peak_memory(CPU)
    before = measure.peak_memory(CPU)["peak_mem_mb"]
    big = torch.ones(50 * 2**20)  # 200 MiB
    peak = measure.peak_memory(CPU)["peak_mem_mb"]
    del big
    assert peak - before == pytest.approx(200, abs=30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS above a baseline needs Linux /proc")
def test_cpu_peak_memory_is_measured_above_the_baseline():
    baseline = measure.memory_baseline(CPU)
    measure.reset_peak_memory(CPU)
    big = torch.ones(50 * 2**20)  # 200 MiB
    got = measure.peak_memory(CPU, baseline)
    del big
    assert got["mem_baseline_mb"] == baseline > 50  # Python and torch
    assert got["peak_mem_mb"] == pytest.approx(200, abs=40)


def test_blocked_latency_interleaves_modes_and_reports_median_p90_and_iqr():
    calls = []
    got = measure.blocked_latency_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, CPU,
                                     warmup=1, runs=6, blocks=3)  # fmt: skip
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3  # warm-up, then blocks of 2 runs alternating
    for mode in ("a", "b"):
        assert set(got[mode]) == {"p50", "p90", "iqr"}
        assert 0 <= got[mode]["p50"] <= got[mode]["p90"] and got[mode]["iqr"] >= 0


def test_a_latency_measurement_holds_the_node_lock_exclusively(tmp_path):
    import fcntl

    lock = str(tmp_path / "latency.lock")
    with measure.one_measurement_per_node(lock) as waited, open(lock, "a") as other:
        assert waited < 1.0
        with pytest.raises(BlockingIOError):  # another trial's measurement would wait here
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released afterwards


def test_a_training_batch_waits_while_another_trial_measures_latency(tmp_path):
    import threading

    lock = str(tmp_path / "latency.lock")
    measuring, done = threading.Event(), threading.Event()

    def measure_for_a_while():
        with measure.one_measurement_per_node(lock):
            measuring.set()
            time.sleep(0.3)
            done.set()  # the measurement's last act while it holds the lock (after the release it would race)

    thread = threading.Thread(target=measure_for_a_while)
    thread.start()
    measuring.wait()
    share = measure.TrainingShare(lock)
    with share:  # a batch starts only after the measurement
        assert done.is_set()
    share.close()
    thread.join()


def test_a_measurement_waits_for_the_batch_in_flight(tmp_path):
    import threading

    lock = str(tmp_path / "latency.lock")
    share = measure.TrainingShare(lock)
    waited = []

    def measure_now():
        with measure.one_measurement_per_node(lock) as w:
            waited.append(w)

    with share:
        thread = threading.Thread(target=measure_now)
        thread.start()
        time.sleep(0.3)
        assert waited == []  # still waiting for this batch
    thread.join()
    share.close()
    assert waited[0] >= 0.25


def test_a_subnetworks_latency_is_timed_in_blocks_while_holding_the_node_lock(monkeypatch, tmp_path):
    import contextlib

    events = []
    real_lock, real_blocks = measure.one_measurement_per_node, measure.blocked_latency_ms

    @contextlib.contextmanager
    def lock():
        events.append("lock")
        with real_lock(str(tmp_path / "latency.lock")) as waited:
            yield waited
        events.append("unlock")

    def blocks(*args, **kwargs):
        events.append("blocks")
        return real_blocks(*args, **kwargs)

    monkeypatch.setattr(measure, "one_measurement_per_node", lock)
    monkeypatch.setattr(measure, "blocked_latency_ms", blocks)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    p50, p90 = measure.batch1_latency_ms(model, (1, 2, 2), CPU, 1, 10, contextlib.nullcontext())
    assert events == ["lock", "blocks", "unlock"]
    assert p50 > 0 and p90 > 0


def test_quantile_is_the_measured_time_at_rank_round_q_times_n_minus_1():
    times = [float(t) for t in range(1, 11)]  # 1..10 ms
    assert measure.quantile(times, 0.9) == 9.0  # rank round(0.9 * 9) = 8, not int(0.9 * 10) = 9 (10 ms)
    # round() halves to even: rank round(4.5) = 4
    assert measure.quantile(times, 0.5) == 5.0 and measure.quantile(times, 0.0) == 1.0
    assert measure.quantile(times, 1.0) == 10.0 and measure.quantile([4.0], 0.9) == 4.0


def test_the_concurrent_p90_is_the_same_statistic_as_the_sequential_p90():
    from harness.parallel import concurrent_figures

    batch1 = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 10.0, 4.0, 8.0, 6.0]  # ms, in the order they were timed
    got = concurrent_figures(batch1, [20.0, 40.0, 30.0], throughput_batch=64)
    assert got["latency_concurrent_ms_p90"] == measure.quantile(sorted(batch1), 0.9) == 9.0
    assert got["latency_concurrent_ms_p50"] == 5.5
    assert got["throughput_concurrent_sps"] == 64 / 0.030  # samples/s over the median run (30 ms)
