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
