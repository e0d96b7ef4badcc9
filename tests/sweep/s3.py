"""A real S3-compatible server on loopback for the store tests: moto's server in a subprocess (a test dependency)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

# moto accepts any credentials; pyarrow and Ray's workers read them from the environment.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str  # host:port
    env: dict  # os.environ plus the credentials, for subprocesses

    def store(self, bucket: str, prefix: str = "store") -> str:
        """Return a store URI in `bucket` (created on first use) with the endpoint in its query, as a user writes it."""
        import pyarrow.fs as pafs

        fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}?endpoint_override={self.endpoint}&scheme=http"
                                         "&allow_bucket_creation=true")  # fmt: skip
        fs.create_dir(bucket)
        return f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http"


def start_s3_server(timeout_s: float = 30.0):
    """Start moto's S3 server on 127.0.0.1 at a free port; yield an S3Server; stop it. Skips (saying why) when moto is
    not installed or the server does not answer within `timeout_s`."""
    pytest.importorskip("moto.server", reason="needs moto's S3 server: pip install 'moto[server]' (the [test] extra)")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"moto's S3 server did not start on 127.0.0.1:{port} within {timeout_s:g} s "
                            f"(exit code {proc.poll()})")  # fmt: skip
            time.sleep(0.2)
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield S3Server(endpoint=f"127.0.0.1:{port}", env={**os.environ, **CREDENTIALS})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=30)
