"""The CLI with a store it cannot use: one line, exit code 2, in seconds, before Ray starts."""

from __future__ import annotations

import os
import time

import pytest

from tests.sweep.conftest import run_cli
from tests.sweep.s3 import CREDENTIALS, free_port

pytestmark = pytest.mark.slow


def _finish(proc, timeout: float = 120) -> tuple[int, list[str], float]:
    start = time.monotonic()
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, [ln for ln in out.splitlines() if ln.strip()], time.monotonic() - start


def test_an_unwritable_store_exits_2_with_one_line_before_ray_starts(tmp_path):
    (tmp_path / "afile").write_text("a file where the store folder would go")
    store = str(tmp_path / "afile" / "store")
    rc, lines, took = _finish(run_cli("--store", store))
    assert rc == 2 and took < 60 and len(lines) == 1, lines
    assert lines[0].startswith(f"store error: cannot write to {store}/trials (")
    assert not any("ray" in ln.lower() for ln in lines)


def test_an_unreachable_s3_store_exits_2_naming_it_instead_of_running_every_trial():
    store = f"s3://bucket/store?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    rc, lines, took = _finish(run_cli("--store", store, env={**os.environ, **CREDENTIALS}))
    assert rc == 2 and took < 60 and len(lines) == 1, lines
    assert lines[0].startswith("store error: cannot list bucket/store/trials/sweep=digits: ")
    assert "to run" not in lines[0]
