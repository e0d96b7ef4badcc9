"""Trials on 2 Ray Train workers (gloo, CPU) compute the one-device training step, in float64 (issue 25).

(a) data-parallel with `sync_bn`: the recipe's batch is the global batch, split over the workers (unevenly here:
63 = 32 + 31); after 3 steps every weight and BatchNorm statistic equals one-process training on the same batches.
(b) members-parallel dct: each worker trains its member with its own optimizer, exchanging logits for the JS term;
each step's gradient of each member equals the joint step's, and after 3 steps the weights are equal.

(c) the workers pause together for a latency measurement on the node (`JointTrainingShare`), where a worker waiting
on the lock inside a batch's collective would deadlock.

All run in one Ray Train run (2 workers of 1 CPU on the session's local Ray), each worker training the reference
one-process trial beside its parallel one and reporting the largest differences.
"""

from __future__ import annotations

import fcntl
import tempfile

import pytest
import torch

from tests.harness.conftest import dct_config, design_point, make_config

STEPS = 3


def _float64(fixed_module):
    """Make the fixed kind build float64 members (inputs cast on entry), in this worker process."""
    from tests.harness.conftest import building_float64

    fixed_module.build_members = building_float64(fixed_module.build_members)


def _kind(config: dict, workers):
    from harness import loop
    from harness.kinds import fixed

    setup = loop.prologue(config, None, torch.device("cpu"), 1, workers)
    kind = fixed.FixedKind(setup)
    kind.start_epoch(0)
    count, member_views = kind.views_per_batch()
    batches = loop.train_batches(setup.data, setup.views, count, member_views, config["recipe"]["batch_size"],
                                 setup.gen, setup.device)  # fmt: skip
    return kind, batches


def _compare(config: dict, workers) -> dict:
    """Train the one-process trial and this worker's part of the parallel one for STEPS steps; return the largest
    differences of gradients (every step), weights and buffers (at the end), over this worker's members."""
    from harness.loop import optimizer_step

    ref, ref_batches = _kind(config, None)
    par, par_batches = _kind(config, workers)
    own = par.own or list(range(len(ref.models)))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    grad_diff = 0.0
    for _ in range(STEPS):
        (x_ref, y_ref), (x_par, y_par) = next(ref_batches), next(par_batches)
        ref.train_batch(x_ref, y_ref, lambda t: t)
        par.train_batch(x_par, y_par, lambda t: t)
        for i, model in zip(own, par.models, strict=True):
            for p, q in zip(model.parameters(), ref.models[i].parameters(), strict=True):
                grad_diff = max(grad_diff, float((p.grad - q.grad).abs().max()))
        optimizer_step(ref.optimizer, scaler)
        optimizer_step(par.optimizer, scaler)
    weight_diff = buffer_diff = 0.0
    for i, model in zip(own, par.models, strict=True):
        want = ref.models[i].state_dict()
        for name, value in model.state_dict().items():
            diff = float((value.double() - want[name].double()).abs().max())
            if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
                buffer_diff = max(buffer_diff, diff)
            else:
                weight_diff = max(weight_diff, diff)
    moved = float((par.models[0].state_dict()["fc.weight"] - _initial_fc(config, own[0])).abs().max())
    return {"grad": grad_diff, "weight": weight_diff, "buffer": buffer_diff, "moved": moved,
            "dtype": str(par.models[0].fc.weight.dtype), "lambda_cot": par.lambda_cot}  # fmt: skip


def _initial_fc(config: dict, member: int) -> torch.Tensor:
    from harness.kinds import fixed

    models = fixed.build_members(config["design"], config["seed"], torch.device("cpu"), False, [member])
    return models[0].state_dict()["fc.weight"]


def _two_workers(loop_config: dict) -> None:
    import ray.train
    import torch.distributed as dist

    from harness.kinds import fixed
    from harness.parallel import Workers

    _float64(fixed)
    lock_path = loop_config.pop("lock")
    out = {}
    for mode, config in loop_config.items():
        workers = Workers.join(mode, torch.device("cpu"))
        got = _compare(config, workers)
        for key in ("grad", "weight", "buffer"):  # the largest difference on any worker
            t = torch.tensor([got[key]], dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            out[f"{mode}_{key}"] = float(t)
        out[f"{mode}_moved"], out[f"{mode}_dtype"] = got["moved"], got["dtype"]
        out[f"{mode}_lambda_cot"] = got["lambda_cot"]
    out.update(_measured_while_training(Workers.join("data", torch.device("cpu")), lock_path))
    metrics = {k: v for k, v in out.items() if not isinstance(v, list)}
    # Ray Train's Result carries the metrics reported with its last checkpoint: rank 0 reports one (empty).
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if dist.get_rank() == 0 else None
        ray.train.report(metrics, checkpoint=checkpoint)


BATCHES = 6


def _measured_while_training(workers, lock_path: str) -> dict:
    """Train BATCHES stand-in batches (a collective inside each, as DDP's gradient all-reduce) under the workers'
    JointTrainingShare while, on rank 1, a latency measurement of the node (`one_measurement_per_node`, another open
    of the lock files) becomes pending just before batch 2; return whether every batch ended within 120 s and whether
    any batch ran while the measurement held the node."""
    import threading
    import time

    from harness import measure
    from harness.parallel import JointTrainingShare

    share = JointTrainingShare(workers, lock_path)
    pending, held = threading.Event(), []

    def measurement():
        with measure.one_measurement_per_node(lock_path):
            start = time.monotonic()
            time.sleep(0.3)
            held.append((start, time.monotonic()))

    def measure_pending():  # the intent file taken: the measurement is pending
        thread = threading.Thread(target=measurement, daemon=True)
        thread.start()
        while not pending.is_set():
            with open(lock_path + ".intent", "a") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(probe, fcntl.LOCK_UN)
                except BlockingIOError:
                    pending.set()
            time.sleep(0.001)
        return thread

    batches, thread = [], None

    def train():
        nonlocal thread
        for i in range(BATCHES):
            if i == 2 and workers.rank == 1:
                thread = measure_pending()
            with share:
                start = time.monotonic()
                workers.all_reduce(1.0)
                time.sleep(0.02)
                batches.append((start, time.monotonic()))

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    trainer.join(timeout=120)
    if trainer.is_alive():  # deadlocked: report it rather than hang the test (the process ends with the run)
        return {"share_batches": len(batches), "share_overlap": -1.0, "share_measured": 0.0}
    if thread is not None:
        thread.join()
    every = [b for part in workers.gather_objects(batches) for b in part]
    window = [w for part in workers.gather_objects(held) for w in part]
    overlap = sum(max(0.0, min(e, we) - max(s, ws)) for s, e in every for ws, we in window)
    share.close()
    return {"share_batches": int(workers.all_reduce(len(batches))), "share_overlap": overlap,
            "share_measured": float(len(window))}  # fmt: skip


@pytest.fixture(scope="module")
def two_worker_run(ray_local, tmp_path_factory):
    """Return the metrics of one Ray Train run of 2 workers that trained both comparisons."""
    from ray import train
    from ray.train.torch import TorchTrainer

    data = make_config(design_point("single"), epochs=1, batch_size=63, sync_bn=True)
    members = dct_config(epochs=1, cot_warmup_epochs=0)
    for config, mode in ((data, "data"), (members, "members")):
        config["resources"].update(parallel=mode, workers=2)
    lock = str(tmp_path_factory.mktemp("lock") / "node.lock")  # this test's own measurement lock, not the node's
    trainer = TorchTrainer(
        _two_workers,
        train_loop_config={"data": data, "members": members, "lock": lock},
        scaling_config=train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=train.RunConfig(name="parallel-math", storage_path=str(tmp_path_factory.mktemp("train"))),
    )
    return trainer.fit().metrics


def test_data_parallel_with_sync_bn_equals_one_process_training_after_three_steps(two_worker_run):
    got = two_worker_run
    assert got["data_dtype"] == "torch.float64"
    assert got["data_moved"] > 1e-3  # the weights did move
    assert got["data_grad"] < 1e-12 and got["data_weight"] < 1e-12
    assert got["data_buffer"] < 1e-12  # BatchNorm running statistics of the global batch


def test_members_parallel_dct_equals_the_joint_step_with_its_js_term(two_worker_run):
    got = two_worker_run
    assert got["members_dtype"] == "torch.float64"
    assert got["members_lambda_cot"] == 0.5  # the co-training term is on
    assert got["members_moved"] > 1e-3
    assert got["members_grad"] < 1e-12  # each member's gradient, every step, JS term included
    assert got["members_weight"] < 1e-12 and got["members_buffer"] < 1e-12


def test_a_parallel_trials_workers_pause_together_for_a_measurement_on_the_node_without_deadlock(two_worker_run):
    # A worker waiting on the lock while the other held its share inside a batch's collective would deadlock with
    # the measurement (it waits for that share); the workers take their shares together instead.
    got = two_worker_run
    assert got["share_batches"] == 2 * BATCHES  # every batch on both workers ended
    assert got["share_measured"] == 1.0  # the measurement ran
    assert got["share_overlap"] == 0.0  # and no batch of either worker ran while it held the node
