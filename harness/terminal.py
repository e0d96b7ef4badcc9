"""A quiet terminal: while a sweep runs, everything Ray prints goes to a log file; the harness's lines do not.

Ray writes from many places: Python loggers, the C++ core worker on file descriptor 2, and the worker output it
forwards to the driver (`log_to_driver`). Redirecting the process's descriptors 1 and 2 (and `sys.stdout`/`sys.stderr`)
to the log catches all of them; the harness writes its own lines to a duplicate of the terminal taken before. Plain
lines, no control codes, so a `ray job submit` log reads the same as a terminal.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys


def _terminal_copy(stream):
    """Return a stream that keeps writing where `stream` writes now, even after descriptors 1 and 2 are redirected."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return stream, None  # an in-memory stream (tests): redirecting descriptors does not touch it
    if fd not in (1, 2):
        return stream, None
    copy = os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8")
    return copy, copy


@contextlib.contextmanager
def ray_output_to(log_path: str | None):
    """Send the process's stdout/stderr (Ray's banners, warnings, tracebacks, forwarded worker output) to `log_path`
    (appended; its folder is made) for the duration; yield the stream the harness's own lines should go to.

    With `log_path=None` nothing is redirected (`--verbose`) and the current stdout is yielded.
    """
    if log_path is None:
        yield sys.stdout
        return
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    term, owned = _terminal_copy(sys.stdout)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    old_out, old_err = sys.stdout, sys.stderr
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = log
        try:
            yield term
        finally:
            log.flush()
            sys.stdout, sys.stderr = old_out, old_err
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            if owned is not None:
                owned.flush()
                owned.close()
