"""Does inductor's CPU code run on this torch build? Asked once per (torch version, thread count) in a child process,
before a trial that opted in (recipe `inductor_cpu = true`) compiles with inductor on a CPU, so that a build whose
kernels abort every time refuses the trial up front instead of taking the Ray worker (or the test run) down with it.
It cannot clear a host: on AVX-512 hosts with torch 2.14.1 (issue 21) this probe passed and the compiled trial then
aborted, which is why inductor on a CPU is an opt-in at all (spaces.spec, harness.fused.check_compile_supported).

Seen here: torch 2.15.0 aborted ("double free or corruption") in the compiled backward of a CIFAR ResNet on 16x16
digits with 1 thread; torch 2.14.1 aborted in the same place with 2 threads during a full test run (not when that
test ran alone: heap corruption shows or not with the process's history). The probe trains that case, a resnet-8
(width 8) on 16x16 one-channel inputs compiled as a trial compiles its members, for two steps. So it catches a build
that aborts every time; a flaky abort can still pass it, which is why the tests that compile run in a child too.
The answer is cached as JSON beside inductor's own cache (`TORCHINDUCTOR_CACHE_DIR`, by default
/tmp/torchinductor_<user>), in `harness_probe/`; delete that folder to probe again.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

from harness.isolate import ChildCrashed, call_in_child

# The function the child runs (module:function, takes the thread count); tests point it at a crasher.
PROBE_WORKLOAD = "harness.compile_probe:train_compiled_resnet"
PROBE_TIMEOUT_S = 900.0  # compiling forward and backward took 40-270 s on 2 (busy) cores here


def train_compiled_resnet(threads: int) -> dict:
    """Train a compiled resnet-8 (width 8, 1 x 16 x 16 inputs, batch 64) for 2 SGD steps with inductor on the CPU using
    `threads` torch threads; return {'loss': the last training loss}."""
    from spaces.families import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("resnet", 8, 8, num_classes=10, in_chans=1)
    compiled = torch.compile(model, backend="inductor", mode="default")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    loss = torch.zeros(())
    for _ in range(2):
        x, y = torch.randn(64, 1, 16, 16), torch.randint(0, 10, (64,))
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(compiled(x), y)
        loss.backward()  # the crashes seen were in the compiled backward kernels
        optimizer.step()
    return {"loss": float(loss)}


def probe_cache_file(threads: int) -> Path:
    """Return the JSON file that caches the probe's answer for this torch version and `threads`."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "harness_probe" / f"inductor-cpu_torch-{torch.__version__}_threads-{threads}.json"


def inductor_cpu_probe(threads: int) -> dict:
    """Return the probe's answer for inductor on the CPU with `threads` torch threads, probing in a child process the
    first time for this torch version and thread count: {'ok': bool, 'signal': name or None, 'torch', 'threads',
    'probed_at'}. A probe that times out or fails without a signal is not cached and counts as ok (not known bad)."""
    path = probe_cache_file(threads)
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # a torn write by a concurrent probe: probe again
    answer = {"ok": True, "signal": None, "torch": torch.__version__, "threads": threads}
    try:
        call_in_child(PROBE_WORKLOAD, threads, timeout_s=PROBE_TIMEOUT_S, capture_output=True)
    except ChildCrashed as crash:
        answer.update(ok=False, signal=crash.signal_name)
    except (subprocess.TimeoutExpired, Exception):  # not a native crash: nothing known, nothing cached
        return answer
    answer["probed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(answer))
    tmp.replace(path)  # atomic: a concurrent trial reads the old answer or the new one, never half
    return answer


def check_inductor_cpu_works(threads: int) -> None:
    """Return None when inductor's CPU kernels survive the probe with `threads` threads on this torch build; raise
    ValueError (one line: what was tried, the torch version, what to set instead) when the probe's child crashed."""
    answer = inductor_cpu_probe(threads)
    if not answer["ok"]:
        raise ValueError(
            f"compile with backend inductor on a CPU: a probe training a compiled CIFAR ResNet with {threads} torch"
            f" thread(s) died with {answer['signal']} on torch {answer['torch']}; set compile_backend ="
            ' "aot_eager" or compile = "off" (or use another torch release)'
        )
