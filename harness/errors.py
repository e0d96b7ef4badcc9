"""Which trial errors will recur: a deterministic error is recorded at once, anything else is retried by Tune.

Deterministic: a missing data set, a config value the spec let through but the trial refuses (ValueError, KeyError,
TypeError), a shape mismatch between the data and the model, a bug (AttributeError, AssertionError). Running the
trial again gives the same error, so retrying only costs time and buries the message. Transient: a lost node, an
out-of-memory kill, a killed worker, a flaky filesystem (OSError); these are retried `max_failures` times.
"""

from __future__ import annotations


class DeterministicError(Exception):
    """An error that the same trial config raises every time; a marker base class."""


class DatasetMissingError(DeterministicError, FileNotFoundError):
    """A data set is not where the config says; the message names the path and how to get it."""


class InjectedTransientError(RuntimeError):
    """Raised on a trial's first attempt when a test asks for it (see `harness.sweep`); never raised otherwise."""


# Python errors that the same inputs raise every time.
_DETERMINISTIC_TYPES = (DeterministicError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                        AssertionError, NotImplementedError, ZeroDivisionError)  # fmt: skip
# RuntimeError texts of PyTorch shape mismatches (a model and data that do not fit together).
_SHAPE_MISMATCH = ("size mismatch", "shape", "must match the size", "sizes of tensors must match",
                   "expected input", "given groups=", "channels, but got")  # fmt: skip


def is_deterministic(err: BaseException) -> bool:
    """Return True when `err` will recur on a retry of the same trial config (see the module docstring)."""
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return False  # memory depends on what else runs on the device
    if isinstance(err, _DETERMINISTIC_TYPES):
        return True
    if isinstance(err, RuntimeError) and not isinstance(err, InjectedTransientError):
        text = str(err).lower()
        return any(s in text for s in _SHAPE_MISMATCH)
    return False


def one_line(err: BaseException) -> str:
    """Return the error as one line: `Type: first line of the message`."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else '(no message)'}"
