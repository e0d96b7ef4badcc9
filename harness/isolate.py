"""Run one function in a fresh Python process, so that a native crash there (an abort, a segfault) becomes an
exception here instead of ending this process.

Used where native code is known to take the process down on some builds: inductor's CPU kernels (see
`harness.compile_probe`) and the tests that compile with it. A Ray worker or a pytest run that calls
`call_in_child` survives the child's crash and sees `ChildCrashed`, which names the signal.

The child is a new interpreter (`python -m harness.isolate IN OUT`), not a fork: forking a process that has started
torch's thread pools can deadlock. Arguments and the return value travel as pickles through two temporary files;
the child inherits this process's `sys.path`, so it imports the same modules.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any


class ChildCrashed(RuntimeError):
    """The child process died from a signal (e.g. SIGABRT from a native abort); `signal_name` names it."""

    def __init__(self, target: str, signum: int, output: str = ""):
        self.target, self.signum = target, signum
        self.signal_name = signal_name(signum)
        self.output = output
        super().__init__(f"{target} crashed the child process with signal {self.signal_name} ({signum})")


class ChildFailed(RuntimeError):
    """The child exited non-zero without a result (e.g. it could not import the target); the message has its exit
    code and the last line it printed."""


def signal_name(signum: int) -> str:
    """Return the signal's name, e.g. 'SIGABRT' for 6 (or 'signal N' for a number this platform does not name)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def call_in_child(
    target: str, *args: Any, timeout_s: float | None = None, capture_output: bool = False, env: dict | None = None
) -> Any:
    """Return `module:function`(*args) computed in a fresh Python process.

    An exception raised by the function is raised here again (the same type when it pickles). A child killed by a
    signal raises `ChildCrashed`; a child that exits otherwise without a result raises `ChildFailed`; a child still
    running after `timeout_s` seconds is killed and raises `subprocess.TimeoutExpired`. With `capture_output`, the
    child's stdout/stderr are kept (the tail goes into the error) instead of passing through to this process's.
    """
    with tempfile.TemporaryDirectory(prefix="harness-child-") as tmp:
        call_file, result_file = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
        call_file.write_bytes(pickle.dumps((target, args)))
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.run(
            [sys.executable, "-m", "harness.isolate", str(call_file), str(result_file)],
            env=child_env,
            timeout=timeout_s,
            capture_output=capture_output,
            text=True,
        )
        output = ((proc.stdout or "") + (proc.stderr or "")) if capture_output else ""
        if proc.returncode < 0:
            raise ChildCrashed(target, -proc.returncode, output)
        if not result_file.exists():
            last = output.strip().splitlines()[-1] if output.strip() else "no output kept"
            raise ChildFailed(f"{target} exited with code {proc.returncode} and no result ({last})")
        outcome, value = pickle.loads(result_file.read_bytes())
    if outcome == "error":
        raise value
    return value


def _resolve(target: str):
    """Return the function named by 'package.module:function'."""
    module_name, _, function_name = target.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def _child_main(call_path: str, result_path: str) -> int:
    """Run the pickled call in this (child) process and pickle ('ok', value) or ('error', exception); return 0."""
    target, args = pickle.loads(Path(call_path).read_bytes())
    try:
        outcome = ("ok", _resolve(target)(*args))
    except BaseException as err:  # noqa: BLE001 -- every failure goes back to the parent as a value
        err.add_note(f"raised in the child process:\n{traceback.format_exc()}")
        try:
            pickle.loads(pickle.dumps(err))
            outcome = ("error", err)
        except Exception:
            outcome = ("error", RuntimeError(f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    Path(result_path).write_bytes(pickle.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1], sys.argv[2]))
