"""The progress line after a failed attempt says why in a few words, not Ray's whole error (no Ray needed)."""

from __future__ import annotations

import pytest

from harness.sweep import failure_reason

NODE_LOST = """ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.
	class_name: ImplicitFunc
	actor_id: 5c1d
	pid: 4242
	namespace: 77a0
	ip: 10.0.0.7
The actor is dead because its node has died. Node Id: 9f3e
The node (IP: 10.0.0.7) was terminated unexpectedly."""
WORKER_KILLED = """ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.
	class_name: ImplicitFunc
	pid=4242, ip=10.0.0.8
The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR"""


@pytest.mark.parametrize(("text", "reason"), [
    (NODE_LOST, "its node 10.0.0.7 was lost"),
    (WORKER_KILLED, "its worker process on 10.0.0.8 died (killed, or its node went away)"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "its worker ran out of memory"),
    ("OSError: [Errno 5] Input/output error\nTraceback ...", "failed: OSError: [Errno 5] Input/output error"),
])  # fmt: skip
def test_a_failed_attempt_is_named_by_its_cause(text, reason):
    assert failure_reason(text) == reason
