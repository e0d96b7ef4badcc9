"""A checkpoint is data only: a file that would run code when unpickled is refused (`torch.load(weights_only=True)`),
set aside with a one-line warning naming it, and the trial trains from scratch; the marker its code would write is
never written."""

from __future__ import annotations

import pytest
import torch

from harness.loop import CHECKPOINT_FILE, CheckpointRefused, checkpoint_problem, read_checkpoint, run_trial
from tests.harness.conftest import design_point, make_config


class WritesMarker:
    """A test object whose unpickling writes a marker file: what an attacker with write access to the store could
    place in a checkpoint."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran while loading a checkpoint')",)


def malicious_checkpoint(path, trial_id: str, marker) -> None:
    """Write a checkpoint that looks like the trial's own but carries a WritesMarker."""
    torch.save({"trial_id": trial_id, "models": [torch.zeros(4)], "payload": WritesMarker(str(marker))}, path)


def test_the_test_payload_does_run_code_when_unpickled_without_restriction(tmp_path):
    marker = tmp_path / "marker"
    malicious_checkpoint(tmp_path / "evil.pt", "t", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)  # what the loop did before: the marker appears
    assert marker.read_text() == "code ran while loading a checkpoint"


def test_a_checkpoint_holding_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    malicious_checkpoint(tmp_path / CHECKPOINT_FILE, "t", marker)
    with pytest.raises(CheckpointRefused, match="holds exec, not only tensors and plain data; refused, since loading"):
        read_checkpoint(str(tmp_path / CHECKPOINT_FILE))
    assert "refused" in checkpoint_problem(str(tmp_path / CHECKPOINT_FILE))
    assert not marker.exists()


def test_a_trial_sets_aside_a_checkpoint_holding_code_warns_in_one_line_and_trains_from_scratch(tmp_path):
    config = make_config(design_point("single"), epochs=1)
    marker, ckpt = tmp_path / "marker", tmp_path / CHECKPOINT_FILE
    malicious_checkpoint(ckpt, config["trial_id"], marker)

    with pytest.warns(UserWarning, match="refused") as caught:
        result = run_trial(config, lambda record: None, checkpoint_dir=str(tmp_path))

    assert not marker.exists()
    message = str(caught[0].message)
    assert "\n" not in message and str(ckpt) in message
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{CHECKPOINT_FILE}.unreadable-")]
    assert len(aside) == 1 and str(aside[0]) in message
    assert result["final"]["status"] == "ok" and [r["epoch"] for r in result["epochs"]] == [1]  # from scratch
    state = read_checkpoint(str(ckpt))  # the trial's own checkpoint, data only, replaced the refused one
    assert state["trial_id"] == config["trial_id"] and len(state["history"]) == 1


# Every trial kind's own checkpoint loads through the same data-only loader: the kill-and-resume tests of single
# (test_trial), dct fused (test_fused), mutual and coop resume from one.
