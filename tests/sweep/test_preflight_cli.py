"""The CLI as a new user runs it: mistakes fail in seconds with one line and exit code 2, and a healthy sweep's
terminal shows the harness's lines only (Ray's output goes to the log file the footer names)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.sweep.conftest import run_cli

pytestmark = pytest.mark.slow


def _finish(proc, timeout: float) -> tuple[int, list[str], float]:
    start = time.monotonic()
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, [ln for ln in out.splitlines() if ln.strip()], time.monotonic() - start


def test_a_missing_cifar_root_exits_2_within_30_s_with_one_line_and_writes_no_store(tmp_path, store):
    root = str(tmp_path / "nonexistent")
    proc = run_cli("--set", "dataset.name=cifar10", "--set", f"dataset.root={root}", "--store", store)
    rc, lines, took = _finish(proc, timeout=60)
    assert rc == 2 and took < 30 and len(lines) <= 3, lines
    assert lines[-1].startswith(f"data set error: cifar10 not found at {root}/cifar-10-batches-py. To get it: ")
    assert not os.path.exists(store)


def test_an_address_where_nothing_listens_exits_2_within_30_s_with_one_line_naming_it(store):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("--address", f"127.0.0.1:{port}", "--store", store)
    rc, lines, took = _finish(proc, timeout=60)
    assert rc == 2 and took < 30 and len(lines) == 1, lines
    assert lines[0].startswith(f"address error: nothing answers at --address 127.0.0.1:{port} (connection refused")
    assert not os.path.exists(store)


def test_a_ray_client_address_without_ray_client_is_refused_with_one_line(store):
    pytest.importorskip("ray")
    try:
        import grpc  # noqa: F401

        pytest.skip("the Ray Client package is installed here")
    except ImportError:
        pass
    rc, lines, _ = _finish(run_cli("--address", "ray://head:10001", "--store", store), timeout=60)
    assert rc == 2 and lines == [
        "address error: --address ray://head:10001 needs the Ray Client (pip install 'ray[client]'); or give the "
        "cluster's GCS address host:6379, or submit with `ray job submit -- python run_sweep.py ...`"
    ]


def test_the_default_sweeps_terminal_shows_no_ray_banner_and_no_traceback(store):
    proc = run_cli("--set", 'classes=["single"]', "--set", "families.0.widths=[8]", "--set", "epochs=1",
                   "--set", "seeds=[0]", "--store", store, "--no-report")  # fmt: skip
    rc, lines, _ = _finish(proc, timeout=300)
    text = "\n".join(lines)
    assert rc == 0, text
    for ray_noise in ("Traceback", "Started a local Ray", "Configuration for experiment", "tensorboard",
                      "Token authentication", "View detailed results"):  # fmt: skip
        assert ray_noise not in text
    assert lines[0] == f"[digits] 1 trial: 0 already in the store {store}, 1 to run"
    assert any(": ok, final acc 0." in ln for ln in lines)
    log = next(ln for ln in lines if ln.startswith("Ray's output")).rsplit(": ", 1)[1]
    assert log.startswith(os.path.join(store, "_tune", "digits-")) and log.endswith(".log")
    with open(log) as f:
        assert "Configuration for experiment" in f.read()  # Ray's box went to the log
