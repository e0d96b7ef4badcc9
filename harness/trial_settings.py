"""Process-wide settings a trial makes explicitly, and a checkpoint that does not load set aside.

A Ray actor reused for several trials (`reuse_actors=True`) keeps torch's thread count, cuDNN flags and global RNG
states from one trial to the next; `apply_trial_settings` sets all of them from the trial's own config, so a trial's
numbers never depend on what ran before it in the same process.
"""

from __future__ import annotations

import os
import random
import warnings
from datetime import UTC, datetime

import numpy as np
import torch

from harness.errors import one_line
from harness.networks import derived_seed

# torch's intra-op thread count when this process started (under Ray: from the trial's CPUs, via OMP_NUM_THREADS);
# what a trial with `measure.threads = 0` runs with, whatever an earlier trial in the same process set.
DEFAULT_THREADS = torch.get_num_threads()


def apply_trial_settings(config: dict) -> None:
    """Set torch's intra-op threads (`measure.threads`, 0: the process default), `cudnn.benchmark`
    (`recipe.cudnn_benchmark`) and the global torch, `random` and NumPy seeds (from the trial seed) for this trial."""
    threads = int((config.get("measure") or {}).get("threads", 0))
    torch.set_num_threads(threads if threads > 0 else DEFAULT_THREADS)
    torch.backends.cudnn.benchmark = bool((config.get("recipe") or {}).get("cudnn_benchmark", True))
    seed = derived_seed(int(config["seed"]), "torch")
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def set_aside_checkpoint(path: str, err: BaseException) -> str:
    """Rename a checkpoint file that does not load to `<name>.unreadable-<UTC time>` beside it, warn naming both
    paths and the error, and return the new path; the trial then starts from scratch."""
    new = f"{path}.unreadable-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    os.replace(path, new)
    warnings.warn(f"checkpoint {path} does not load ({one_line(err)}); set aside as {new}; the trial starts from "
                  "epoch 1", stacklevel=3)  # fmt: skip
    return new
