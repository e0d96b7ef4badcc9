"""Test-only targets for `harness.isolate.call_in_child`: functions that crash, fail or return, by name."""

from __future__ import annotations

import os


def abort(*_args) -> None:
    """Abort the process (SIGABRT), as a native library does on heap corruption."""
    os.abort()


def double(x: int) -> int:
    """Return 2 * x."""
    return 2 * x


def refuse(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def exit_quietly(code: int) -> None:
    """Exit with `code` without a result, as a child that cannot import its target does."""
    os._exit(code)


def make_inductor_abort() -> None:
    """Make inductor's compiler abort this process (SIGABRT), as its C++ kernels did on some hosts: a stand-in that
    shows the default test run never reaches inductor on the CPU."""
    import torch._inductor.compile_fx as compile_fx

    def aborting_compile_fx(*_args, **_kwargs):
        os.abort()

    compile_fx.compile_fx = aborting_compile_fx
