"""A parallel trial on Ray Train (`harness.parallel` has the math): the worker function every worker runs, and the
launch of a trial's TorchTrainer from inside its Tune trial."""

from __future__ import annotations

import contextlib
import math
import os

import pyarrow.fs as pafs
import torch

from harness.parallel import Workers
from harness.store import build_subnet_rows, filesystem, rows_from_result, trial_work_dir, write_trial


def train_worker(loop_config: dict) -> None:
    """The Ray Train worker function of a parallel trial: run `harness.loop.run_trial` on this worker's device with
    its `Workers`, resuming from the Train run's latest checkpoint; every rank reports each record to Ray Train (rank 0
    with the checkpoint and the trial's metrics), and rank 0 writes the trial's rows to the store at the end.

    `loop_config`: {"config": the trial config, "store", "sweep", "run": the run id (rows' run_id), "write": whether
    to write the rows (the sweep's trials do)}. The checkpoint resumed from is the newest that loads among those the
    trial's Train runs left in the store (`latest_checkpoint`), else the one Ray Train hands over."""
    import ray.train.torch

    config = loop_config["config"]
    device = ray.train.torch.get_device()
    if device.type == "cuda":  # NCCL's object collectives and the allocator's readings use the current device
        torch.cuda.set_device(device)
    workers = Workers.join(config["resources"]["parallel"], device)
    with trial_work_dir(loop_config["store"], config["trial_id"], workers.rank) as work:
        _train_in(work, loop_config, workers)


def _train_in(work: str, loop_config: dict, workers: Workers) -> None:
    import ray.train

    from harness.loop import CHECKPOINT_FILE, run_trial

    config = loop_config["config"]
    if latest_checkpoint(loop_config["store"], config["trial_id"], work) is None:
        given = ray.train.get_checkpoint()
        if given is not None:
            given.to_directory(work)

    def report(record: dict) -> None:
        saved = workers.lead and record.get("kind") == "epoch" and os.path.exists(os.path.join(work, CHECKPOINT_FILE))
        checkpoint = ray.train.Checkpoint.from_directory(work) if saved else None
        ray.train.report(scalar_metrics(record), checkpoint=checkpoint)

    result = run_trial(config, report=report, checkpoint_dir=work, workers=workers)
    if workers.lead and loop_config.get("write"):
        result["final"]["device_shared"], result["final"]["device_share"] = False, None
        trial_row, epoch_rows = rows_from_result(config, result, run_id=loop_config.get("run"))
        write_trial(loop_config["store"], loop_config["sweep"], trial_row, epoch_rows,
                    build_subnet_rows(config, result))  # fmt: skip


def train_storage(store: str) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path) where parallel trials keep their Ray Train runs: `<store>/_tune/train/<trial_id>/`,
    one run per trial named by its id, so that every later run of the sweep restores the trial's latest checkpoint."""
    fs, root = filesystem(store)
    return fs, f"{root}/_tune/train"


def latest_checkpoint(store: str, trial_id: str, work: str) -> str | None:
    """Copy the newest checkpoint of the trial's Train run that loads as data into the folder `work`; return its path
    in the store, or None when there is none.

    Ray Train restores a run from the checkpoints its controller registered; a controller killed with the driver may
    not have registered the last one its rank 0 uploaded, so the folder is read here, as
    `harness.sweep._restore_checkpoint` does for one-device trials."""
    from ray.train import Checkpoint

    from harness.loop import CHECKPOINT_FILE, checkpoint_problem

    fs, root = train_storage(store)
    infos = fs.get_file_info(pafs.FileSelector(f"{root}/{trial_id}", allow_not_found=True))
    folders = sorted((i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(
        "checkpoint_")), reverse=True)  # fmt: skip
    local = os.path.join(work, CHECKPOINT_FILE)
    for path in folders:  # named checkpoint_<UTC time>: newest first
        Checkpoint(path, filesystem=fs).to_directory(work)
        if os.path.exists(local) and checkpoint_problem(local) is None:
            return path
        with contextlib.suppress(FileNotFoundError):
            os.remove(local)
    return None


def scalar_metrics(record: dict) -> dict:
    """Return the scalar part of an EPOCH/FINAL record (what Ray reports; Tune sets its own `trial_id`)."""
    return {k: v for k, v in record.items() if k != "trial_id" and isinstance(v, int | float | str | bool)
            and not (isinstance(v, float) and math.isnan(v))}  # fmt: skip


def worker_resources(config: dict) -> dict:
    """Return the Ray resources of one Train worker of a parallel trial: `resources.cpus` CPUs and one GPU on GPUs."""
    res = config.get("resources") or {}
    return {"CPU": float(res.get("cpus", 1) or 0), "GPU": 1.0 if float(res.get("gpus", 0) or 0) >= 2 else 0.0}


def fit_parallel(config: dict, store: str, sweep: str, run: str | None, storage_path: str, storage_filesystem=None,
                 write: bool = True):  # fmt: skip
    """Run a parallel trial as a Ray Train run from inside a Tune trial (or any Ray driver) and return its
    `ray.train.Result`: a TorchTrainer over `resources.workers` workers (`worker_resources` each; they reserve their
    own placement group), named by the trial id under `storage_path`, so a later run of the same trial (a killed
    driver, a retry) restores its latest checkpoint; metrics reach Tune through `TuneReportCallback` when called in a
    Tune trial. Raises Ray Train's error when a worker fails."""
    from ray import train
    from ray.train.torch import TorchTrainer

    callbacks = []
    from ray.tune.trainable.trainable_fn_utils import _in_tune_session

    if _in_tune_session():
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"config": config, "store": store, "sweep": sweep, "run": run, "write": write},
        scaling_config=train.ScalingConfig(num_workers=int(config["resources"]["workers"]),
                                           use_gpu=worker_resources(config)["GPU"] > 0,
                                           resources_per_worker=worker_resources(config)),  # fmt: skip
        run_config=train.RunConfig(
            name=config["trial_id"],
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            checkpoint_config=train.CheckpointConfig(num_to_keep=1),
            # A failed worker fails the run; the Tune trial retries it (FailureConfig there), restoring by name.
            failure_config=train.FailureConfig(max_failures=0),
            callbacks=callbacks,
        ),
    )
    return trainer.fit()
