"""A trial sets its process-wide state itself (threads, cudnn.benchmark, global seeds), so a Ray actor reused for
several trials leaks nothing from one to the next; a checkpoint that does not load is set aside, not retried."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from harness.loop import CHECKPOINT_FILE, run_trial
from harness.networks import derived_seed
from harness.trial_settings import DEFAULT_THREADS
from tests.harness.conftest import design_point, make_config


def with_threads(config: dict, threads: int) -> dict:
    return {**config, "measure": {**config["measure"], "threads": threads}}


def test_a_trial_inherits_no_threads_cudnn_flag_or_seed_from_the_trial_before_it_in_the_same_process():
    state, losses = [], []

    def spy(record):
        if record["kind"] == "epoch":
            state.append((torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.initial_seed()))
            losses.append(record["train_loss"])
        else:  # the global `random` and NumPy streams are still untouched by training when the FINAL record comes
            state[-1] += (random.random(), float(np.random.random()))

    default_trial = with_threads(make_config(design_point("single"), epochs=1, seed=0), 0)
    other_trial = with_threads(make_config(design_point("single"), epochs=1, seed=1, cudnn_benchmark=False), 1)
    for config in (default_trial, other_trial, default_trial):
        run_trial(config, spy)
    alone, other, after_other = state
    assert alone[:3] == (DEFAULT_THREADS, True, derived_seed(0, "torch"))
    assert other[:3] == (1, False, derived_seed(1, "torch"))
    assert after_other == alone  # threads 0 means the process default again, not the 1 the trial before set
    assert losses[2] == losses[0]


def test_a_checkpoint_that_does_not_load_is_set_aside_named_in_a_warning_and_the_trial_completes(tmp_path):
    config = make_config(design_point("single"), epochs=1)
    ckpt = tmp_path / CHECKPOINT_FILE
    torch.save({"trial_id": config["trial_id"], "models": [torch.zeros(1000)]}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # truncated, as by a crash during the write

    with pytest.warns(UserWarning, match="does not load") as caught:
        result = run_trial(config, lambda record: None, checkpoint_dir=str(tmp_path))

    assert result["final"]["status"] == "ok" and [r["epoch"] for r in result["epochs"]] == [1]  # from scratch
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{CHECKPOINT_FILE}.unreadable-")]
    assert len(aside) == 1 and str(aside[0]) in str(caught[0].message) and str(ckpt) in str(caught[0].message)
    state = torch.load(ckpt, weights_only=True)  # the trial's own checkpoint replaced the broken one
    assert state["trial_id"] == config["trial_id"] and len(state["history"]) == 1
