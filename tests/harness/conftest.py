"""Fixtures for the trial-function tests: tiny CIFAR ResNets on scikit-learn's digits, built as trial configs."""

from __future__ import annotations

import hashlib
import json

import pytest

from spaces.designs import Shape, ensemble_for, single_at

DIGITS = Shape(num_classes=10, in_chans=1, image_size=16)

RECIPE = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "wd_policy": "none",
    "schedule": "cosine",
    "warmup_epochs": 0,
    "milestones": [],
    "gamma": 0.1,
    "batch_size": 64,
    "eval_batch_size": 512,
    "label_smoothing": 0.0,
    "lambda_cot": 0.0,
    "cot_warmup_epochs": 0,
    "cot_floor": 0.005,
    "member_views": False,
    "crop_padding": 2,
    "flip": False,
    "autoaugment": False,
    "randaugment": False,
    "random_erasing": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "precision": "fp32",
    "channels_last": False,
    "combine": "logits",
    "execution": "sequential",
    "compile": "off",
    "compile_backend": "inductor",
    "inductor_cpu": False,
    "cudnn_benchmark": True,
}


def design_point(design_class: str = "single", members: int = 2, depth: int = 8, width: int = 8):
    """Return a DesignPoint on digits: the resnet-8 single network of `width`, or an ensemble under its budget."""
    single = single_at("resnet", depth, width, DIGITS, {}, "floor")
    return single if design_class == "single" else ensemble_for(single, design_class, members)


def make_config(design, epochs: int = 2, seed: int = 0, **recipe) -> dict:
    """Return a contract trial config for a DesignPoint with RECIPE overridden by `recipe`; cheap measurements."""
    body = {
        "seed": seed,
        "epochs": epochs,
        "dataset": {
            "name": "digits",
            "root": "",
            "download": False,
            "num_classes": 10,
            "in_chans": 1,
            "image_size": 16,
            "test_fraction": 0.25,
            "split_seed": 0,
        },
        "design": design.as_dict(),
        "recipe": {**RECIPE, **recipe},
    }
    trial_id = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "trial_id": trial_id,
        "sweep": "test",
        **body,
        "measure": {"latency_warmup": 2, "latency_runs": 10, "throughput_batch": 64, "threads": 1},
        "resources": {"cpus": 1, "gpus": 0, "fractional_gpu": False},
    }


@pytest.fixture
def records():
    """A list and a `report` callable that appends to it."""
    got: list[dict] = []
    return got, got.append


def dct_config(execution: str = "sequential", epochs: int = 2, **recipe) -> dict:
    """A 2-member dct trial on digits (member views, co-training) run with `execution`, overridden by `recipe`."""
    cotrain = {"lambda_cot": 0.5, "cot_warmup_epochs": 1, "member_views": True}
    return make_config(design_point("dct"), epochs=epochs, execution=execution, **{**cotrain, **recipe})


@pytest.fixture
def float64_members(monkeypatch):
    """Make `run_trial` build its members in float64 (inputs cast on entry): float rounding then no longer hides
    whether two ways of running a trial compute the same numbers."""
    from harness.kinds import fixed

    monkeypatch.setattr(fixed, "build_members", building_float64(fixed.build_members))


def building_float64(build):
    """Return `build` (a member builder) made to build float64 members whose inputs are cast to float64 on entry."""

    def build_float64(*args, **kwargs):
        members = build(*args, **kwargs)
        for model in members:
            model.double().register_forward_pre_hook(lambda module, inputs: tuple(x.double() for x in inputs))
        return members

    return build_float64


class Killed(Exception):
    """Stands in for the process being killed right after an epoch's checkpoint was written."""


def kill_and_resume(config: dict, checkpoint_dir, after_epoch: int) -> tuple[dict, list[dict]]:
    """Run the trial with checkpoints until it is killed after epoch `after_epoch`, then run it again from the
    checkpoint; return (the resumed run's result, the records the resumed run reported)."""
    from harness.trial import run_trial

    def kill(record):
        if record["kind"] == "epoch" and record["epoch"] == after_epoch:
            raise Killed

    with pytest.raises(Killed):
        run_trial(config, kill, checkpoint_dir=str(checkpoint_dir))
    reported = []
    return run_trial(config, reported.append, checkpoint_dir=str(checkpoint_dir)), reported


# The EPOCH fields a resumed trial must reproduce exactly.
CURVE_KEYS = ("test_acc", "member_acc", "train_loss", "test_loss")


def curve_of(result: dict) -> list[list]:
    """Return the trial's per-epoch CURVE_KEYS values."""
    return [[r[k] for k in CURVE_KEYS] for r in result["epochs"]]
