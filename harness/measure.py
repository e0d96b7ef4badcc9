"""Once-per-trial measurements: parameters, forward FLOPs, peak training memory, inference latency, environment.

Units are in the names: `*_mb` are MiB (2**20 bytes), `*_ms_*` milliseconds, `*_sps` samples per second. FLOPs are
per sample (batch 1), forward only, summed over members:
- `macs_fvcore`: fvcore's `FlopCountAnalysis` total, which counts one multiply-add as one "flop" (i.e. MACs). It
  traces with `torch.jit`, and it also counts batch-norm as 1 op per element (elementwise adds, ReLU and the global
  mean are "unsupported" and skipped), so it is a few % above `flops_torch / 2` for CIFAR ResNets.
- `flops_torch`: `torch.utils.flop_counter.FlopCounterMode`, 2 FLOPs per MAC, convs and matmuls only.
Either count that fails is None with the reason in `*_error`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import logging
import math
import os
import platform
import resource
import socket
import statistics
import tempfile
import time
import warnings
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.data import TrialData, test_batches
from harness.views import resize

MIB = 2**20


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA) so that host timers measure it; a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_params(model: nn.Module) -> int:
    """Return the number of parameters (a count) of one model."""
    return sum(p.numel() for p in model.parameters())


def _error_text(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]


def fvcore_macs(models: list[nn.Module], sample: torch.Tensor) -> tuple[int | None, str | None]:
    """Return (MACs per sample summed over members by fvcore, None) or (None, reason)."""
    # fvcore's import and tracing raise torch.jit deprecation FutureWarnings in torch 2.x, and it logs every
    # unsupported op; the skipped ops are the documented elementwise ones, so both are noise here.
    fv_logger = logging.getLogger("fvcore.nn.jit_analysis")
    level = fv_logger.level
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            fv_logger.setLevel(logging.ERROR)
            from fvcore.nn import FlopCountAnalysis

            total = 0
            for model in models:
                analysis = FlopCountAnalysis(model, (sample,))
                analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                total += int(analysis.total())
        return total, None
    except Exception as err:  # fvcore is old and jit-based; a failure must not end the trial
        return None, _error_text(err)
    finally:
        fv_logger.setLevel(level)


def torch_flops(models: list[nn.Module], sample: torch.Tensor) -> tuple[int | None, str | None]:
    """Return (forward FLOPs per sample summed over members by FlopCounterMode -- 2 per MAC --, None) or
    (None, reason)."""
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            for model in models:
                model(sample)
        return int(counter.get_total_flops()), None
    except Exception as err:
        return None, _error_text(err)


def _release_free_heap() -> None:
    """Collect garbage and hand glibc's free heap pages back to the OS (malloc_trim), so that resident memory is what
    is alive: memory freed by an earlier trial in a reused worker could otherwise be reused without showing up."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _current_rss_kib() -> int | None:
    """Return the process's resident memory now (VmRSS, KiB), or None without /proc."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def data_device_mb(data: TrialData, device: torch.device) -> float:
    """Return the MiB of the data set's tensors held on `device` (train and test pixels and labels); 0 for folder
    data and for CPU-held tensors on a CUDA device."""
    tensors = (data.train_x, data.train_y, data.test_x, data.test_y)
    held = [t for t in tensors if t is not None and t.device.type == device.type]
    return sum(t.numel() * t.element_size() for t in held) / MIB


def memory_baseline(device: torch.device) -> float:
    """Return the trial's memory baseline in MiB, taken after the data is loaded and before the models are built:
    the CUDA allocator's allocated bytes (the device-held data set, mostly), or on CPU the process's resident memory
    (Python, torch, the data set) after freeing the heap. `peak_memory` reports the peak above it."""
    if device.type == "cuda":
        sync(device)
        return torch.cuda.memory_allocated(device) / MIB
    _release_free_heap()
    rss = _current_rss_kib()
    return rss / 1024 if rss is not None else 0.0


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh peak-memory window: torch's peak stats on CUDA; on Linux CPUs the process's peak RSS (VmHWM),
    which writing "5" to /proc/self/clear_refs resets. Without the reset, a Ray worker reused across trials would
    report the largest earlier trial's peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_kib() -> tuple[int, str]:
    """Return (peak RSS in KiB, mem_source): VmHWM since the last reset where /proc has it, else the lifetime peak."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]), "rss"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rss_lifetime"


def _nvml_process_mb(device: torch.device) -> float | None:
    """This process's device memory by NVML, in MiB, or None when NVML is unusable (no driver, containers)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pid = os.getpid()
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    return proc.usedGpuMemory / MIB
            return None
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def peak_memory(device: torch.device, baseline_mb: float = 0.0) -> dict:
    """Return the peak training memory fields of the FINAL record (MiB).

    `peak_mem_mb` is the peak since `reset_peak_memory` above `baseline_mb` (`memory_baseline`, taken before the
    models were built, recorded as `mem_baseline_mb`): the models, gradients, optimizer state and activations of
    training. CUDA: torch's peak allocated minus the baseline (which holds a device-resident data set); the peak
    reserved and NVML's reading of this process's device memory now (CUDA context included) are raw, without
    subtraction. CPU: the process's peak resident memory (VmHWM; mem_source "rss") minus the baseline resident memory;
    where /proc is missing it is the lifetime peak (ru_maxrss; mem_source "rss_lifetime"), baseline not subtracted.
    """
    if device.type == "cuda":
        nvml = _nvml_process_mb(device)
        return {
            "peak_mem_mb": torch.cuda.max_memory_allocated(device) / MIB - baseline_mb,
            "mem_baseline_mb": baseline_mb,
            "peak_mem_reserved_mb": torch.cuda.max_memory_reserved(device) / MIB,
            "nvml_mem_mb": nvml,
            "mem_source": "cuda_allocator+nvml" if nvml is not None else "cuda_allocator",
        }
    rss_kib, source = _peak_rss_kib()
    baseline = baseline_mb if source == "rss" else 0.0
    return {
        "peak_mem_mb": rss_kib * 1024 / MIB - baseline,
        "mem_baseline_mb": baseline,
        "peak_mem_reserved_mb": None,
        "nvml_mem_mb": None,
        "mem_source": source,
    }


def _timed_ms(run, device: torch.device, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        run()
    sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


class PhaseTimer:
    """Sum the time of the blocks run under `with timer:` (s): host wall-clock on CPU; on CUDA the device time between
    two events recorded around each block, read at `total_s()` (one synchronization then, none per block)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host_s = 0.0
        self.events: list = []

    def __enter__(self):
        if self.cuda:
            self.events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.events[-1][0].record()
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.events[-1][1].record()
        else:
            self.host_s += time.perf_counter() - self._start
        return False

    def total_s(self) -> float:
        """Return the summed time of every block so far, in seconds."""
        if not self.cuda:
            return self.host_s
        torch.cuda.synchronize()
        return sum(start.elapsed_time(end) for start, end in self.events) / 1000.0


def quantile(sorted_times: list[float], q: float) -> float:
    """Return the `q` quantile (0..1) of `sorted_times` (ascending; in their unit, ms here): the value at rank
    round(q * (n - 1)), a measured time, not an interpolation. Every latency p90 of the harness is this one statistic
    (the sequential, fused and concurrent columns alike)."""
    return sorted_times[min(len(sorted_times) - 1, int(round(q * (len(sorted_times) - 1))))]


# Timed runs are split into this many blocks; with several modes to time, the blocks interleave (A, B, A, B, ...).
LATENCY_BLOCKS = 5


def blocked_latency_ms(runs_by_mode: dict, device: torch.device, warmup: int, runs: int,
                       blocks: int = LATENCY_BLOCKS, rotate: bool = False) -> dict[str, dict]:  # fmt: skip
    """Time each mode's `run()` (ms per call, device-synchronized) in `blocks` interleaved blocks of about
    runs / blocks calls, after `warmup` untimed calls of each; return per mode {"p50": the median of the block
    medians, "p90": the 90th percentile of all calls, "iqr": the interquartile range of all calls}.

    The median of block medians is robust to a burst of interference (a neighbour's training step, a page fault,
    a timer tick) that falls inside one block; interleaving gives each mode the same conditions. With `rotate`, each
    block starts one mode later than the one before: a mode that always followed the same other mode could inherit
    its caches' state or its interference."""
    per_block = max(1, math.ceil(runs / blocks))
    for run in runs_by_mode.values():
        for _ in range(warmup):
            run()
    sync(device)
    modes = list(runs_by_mode)
    times: dict[str, list[list[float]]] = {mode: [] for mode in modes}
    for b in range(blocks):
        first = b % len(modes) if rotate else 0
        for mode in modes[first:] + modes[:first]:
            times[mode].append(_timed_ms(runs_by_mode[mode], device, 0, per_block))
    out = {}
    for mode, block_times in times.items():
        flat = sorted(t for block in block_times for t in block)
        out[mode] = {
            "p50": statistics.median(statistics.median(block) for block in block_times),
            "p90": quantile(flat, 0.9),
            "iqr": quantile(flat, 0.75) - quantile(flat, 0.25),
        }
    return out


LOCK_FILE = os.path.join(tempfile.gettempdir(), "ensemble-harness-latency.lock")


@contextlib.contextmanager
def one_measurement_per_node(path: str = LOCK_FILE):
    """Hold the node's latency-measurement lock for the block; yield the seconds waited for it.

    Two files: `path`.intent taken exclusively first (a second measurement waits here, and training trials start no
    new batch, see `TrainingShare`), then `path` exclusively, which waits for the batches in flight to end. So one
    trial measures at a time per node, and no trial of this node trains while it does; training trials still train
    together (they hold `path` shared) and pause only for the length of a measurement."""
    start = time.perf_counter()
    with open(path + ".intent", "a") as intent, open(path, "a") as running:
        fcntl.flock(intent, fcntl.LOCK_EX)
        try:
            fcntl.flock(running, fcntl.LOCK_EX)
            try:
                yield time.perf_counter() - start
            finally:
                fcntl.flock(running, fcntl.LOCK_UN)
        finally:
            fcntl.flock(intent, fcntl.LOCK_UN)


class TrainingShare:
    """A training trial's side of the node's latency-measurement lock (`one_measurement_per_node`): `with share:`
    around one batch first waits while a measurement is pending or running (a shared lock on the intent file, let go
    at once), then holds the lock file shared for the batch, so concurrent trials train together but a measurement
    starts only between their batches. `close()` releases the files."""

    def __init__(self, path: str = LOCK_FILE):
        self.intent = open(path + ".intent", "a")  # noqa: SIM115 -- held for the trial's lifetime, closed by close()
        self.running = open(path, "a")  # noqa: SIM115

    def __enter__(self):
        fcntl.flock(self.intent, fcntl.LOCK_SH)
        fcntl.flock(self.intent, fcntl.LOCK_UN)
        fcntl.flock(self.running, fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.running, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        """Close the lock files (which drops any lock still held)."""
        self.intent.close()
        self.running.close()


def autocast_context(device: torch.device, autocast_dtype: torch.dtype | None):
    """Return torch.autocast on `device` with `autocast_dtype`, or a null context when it is None (fp32)."""
    return torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()


def members_forward(models: list[nn.Module], input_shape: tuple[int, ...], device: torch.device,
                    autocast_dtype: torch.dtype | None = None, channels_last: bool = False):  # fmt: skip
    """Return a function that runs one forward of every model, one after another, on a random input of `input_shape`
    (N, C, H, W) under no grad and the autocast dtype: what a latency or throughput measurement times."""
    amp = autocast_context(device, autocast_dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(*input_shape, device=device).contiguous(memory_format=fmt)

    def run():
        with torch.no_grad(), amp:
            for model in models:
                model(x)

    return run


def inference_latency(
    models: list[nn.Module],
    shape: tuple[int, int, int],
    device: torch.device,
    warmup: int,
    runs: int,
    throughput_batch: int,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    fused_forward=None,
) -> dict:
    """Return the inference timings of the FINAL record in eval mode, no grad, holding the node's latency lock:

    - latency_ms_p50/p90/iqr: batch 1, members one after another (ms per ensemble forward; p50 is the median of
      block medians, see `blocked_latency_ms`);
    - latency_fused_ms_p50/p90/iqr: batch 1 through `fused_forward` (the trial's vmapped members, given when the trial
      ran fused; None otherwise), timed in blocks interleaved with the sequential ones;
    - throughput_sps (samples/s at `throughput_batch`, members one after another, from the median batch time);
    - latency_lock_wait_s: the seconds spent waiting for another trial's measurement on this node.
    """
    for model in models:
        model.eval()
    amp = autocast_context(device, autocast_dtype)

    def runner(batch: int):
        return members_forward(models, (batch, *shape), device, autocast_dtype, channels_last)

    modes = {"sequential": runner(1)}
    if fused_forward is not None:
        x1 = torch.randn(1, *shape, device=device)

        def run_fused():
            with torch.no_grad(), amp:
                fused_forward([x1] * len(models))

        modes["fused"] = run_fused
    with one_measurement_per_node() as waited:
        lat = blocked_latency_ms(modes, device, warmup, runs)
        # Big batches take long on a CPU; a handful of runs gives a stable median.
        thr = _timed_ms(runner(throughput_batch), device, min(warmup, 2), max(3, min(runs, 10)))
    fused = lat.get("fused", {})
    return {
        "latency_ms_p50": lat["sequential"]["p50"],
        "latency_ms_p90": lat["sequential"]["p90"],
        "latency_ms_iqr": lat["sequential"]["iqr"],
        "latency_fused_ms_p50": fused.get("p50"),
        "latency_fused_ms_p90": fused.get("p90"),
        "latency_fused_ms_iqr": fused.get("iqr"),
        "latency_lock_wait_s": waited,
        "throughput_sps": throughput_batch / (statistics.median(thr) / 1000.0),
        "throughput_batch": throughput_batch,
    }


@torch.no_grad()
def batch1_latency_ms(model: nn.Module, shape: tuple[int, int, int], device, warmup: int, runs: int, amp) -> tuple:
    """Return (p50, p90) batch-1 inference latency in ms of `model` as it is now (e.g. at a sub-network's width or
    mask), on inputs of `shape` (C, H, W) under the autocast context `amp`, measured as a design's `latency_ms_p50`
    is: in blocks (p50 the median of block medians, see `blocked_latency_ms`), holding the node's latency lock."""
    x = torch.randn(1, *shape, device=device)

    def run():
        with amp:
            model(x)

    with one_measurement_per_node():
        lat = blocked_latency_ms({"model": run}, device, warmup, max(1, runs))["model"]
    return lat["p50"], lat["p90"]


@torch.no_grad()
def subnet_accuracy(model: nn.Module, data: TrialData, side: int, batch_size: int, device, amp) -> float:
    """Return the test accuracy (fraction) of `model` as it is now (e.g. a sub-network) on the test split resized to
    `side` x `side` pixels."""
    model.eval()
    correct, n = torch.zeros((), device=device), 0
    for x, y in test_batches(data, batch_size, device):
        with amp:
            logits = model(resize(x, side))
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    return float(correct) / max(1, n)


def device_name(device: torch.device) -> str:
    """Return the GPU name (CUDA) or the CPU model name from /proc/cpuinfo (falling back to platform)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device, precision: str, device_shared: bool) -> dict:
    """Return the environment fields of the FINAL record."""
    return {
        "device_name": device_name(device),
        "device_shared": bool(device_shared),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if device.type == "cuda" else None,
        "precision": precision,
        "num_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
    }
