"""Benchmark: the trial function's epoch time against a bare PyTorch training loop (`python -m harness.bench`).

Both train the same model (a single CIFAR ResNet from `spaces.families`) on the same device-resident digits data
with the same batch size, SGD and crop augmentation, in ONE process. The runs are interleaved (trial, bare, trial,
bare, ...) so that drifts in machine load hit both; the first epoch of every run is a warm-up and is dropped. The
figure of merit is median(trial epoch_time_s) / median(bare epoch time); the goal is <= 1.05. The bare loop is
what a person would write by hand: no views abstraction, no co-training loss, no records.

This is a benchmark, not a test: it prints the ratio and writes its figures as JSON (default
results/bench/bench_trial.json; results/ is the untracked run-output folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from harness.data import load_data
from harness.trial import derived_seed, run_trial
from spaces.designs import Shape, single_at
from spaces.families import create_model

DEFAULT_OUT = os.path.join("results", "bench", "bench_trial.json")


def bench_config(depth: int, width: int, epochs: int, batch_size: int, seed: int = 0) -> dict:
    """Return a trial config (contract shape) for a single resnet on digits with cheap once-per-trial measures."""
    design = single_at("resnet", depth, width, Shape(10, 1, 16), {}, "floor")
    recipe = {
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "wd_policy": "none", "schedule": "cosine", "warmup_epochs": 0, "milestones": [], "gamma": 0.1,
        "batch_size": batch_size, "eval_batch_size": 512, "label_smoothing": 0.0, "lambda_cot": 0.0,
        "cot_warmup_epochs": 0, "cot_floor": 0.005, "member_views": False, "crop_padding": 2, "flip": False,
        "autoaugment": False, "randaugment": False, "random_erasing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
        "precision": "fp32", "channels_last": False, "combine": "logits", "execution": "sequential",
    }  # fmt: skip
    return {
        "trial_id": f"bench-{depth}-{width}-{seed}", "sweep": "bench", "seed": seed, "epochs": epochs,
        "dataset": {"name": "digits", "root": "", "download": False, "num_classes": 10, "in_chans": 1,
                    "image_size": 16, "test_fraction": 0.25, "split_seed": 0},
        "design": design.as_dict(), "recipe": recipe,
        "measure": {"latency_warmup": 1, "latency_runs": 3, "throughput_batch": 8, "threads": 0},
        "resources": {"cpus": 1, "gpus": 0, "fractional_gpu": False},
    }  # fmt: skip


def bare_epoch_times(config: dict, device: torch.device) -> list[float]:
    """Train the config's model with a hand-written loop; return each epoch's training time in seconds."""
    design, recipe = config["design"], config["recipe"]
    data = load_data(config["dataset"], device)
    torch.manual_seed(derived_seed(config["seed"], "member", 0))
    model = create_model(design["family"], design["depth"], design["width"], num_classes=10, in_chans=1).to(device)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": recipe["weight_decay"]}, {"params": rest}],
                          lr=recipe["lr"], momentum=0.9, nesterov=True)  # fmt: skip
    epochs, bs, pad = config["epochs"], recipe["batch_size"], recipe["crop_padding"]
    n, size = data.num_train, data.image_size
    steps = epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    grid = torch.arange(size, device=device)
    times = []
    for _ in range(epochs):
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(n, device=device)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            x = F.pad(data.train_x[idx], (pad,) * 4, mode="reflect")
            dy = torch.randint(0, 2 * pad + 1, (len(idx), 1, 1, 1), device=device)
            dx = torch.randint(0, 2 * pad + 1, (len(idx), 1, 1, 1), device=device)
            b = torch.arange(len(idx), device=device)[:, None, None, None]
            x = x[b, 0, dy + grid[None, None, :, None], dx + grid[None, None, None, :]]
            loss = F.cross_entropy(model(data.normalize(x)), data.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print a summary and write the JSON figures; return them."""
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is dropped as warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved (trial, bare) pairs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = bench_config(args.depth, args.width, args.epochs, args.batch_size)
    if device.type == "cuda":
        config["resources"]["gpus"] = 1
    trial_times, bare_times = [], []
    for _ in range(args.repeats):
        result = run_trial(config, report=lambda record: None)
        trial_times += [r["epoch_time_s"] for r in result["epochs"][1:]]
        bare_times += bare_epoch_times(config, device)[1:]
    ratio = statistics.median(trial_times) / statistics.median(bare_times)
    figures = {
        "ratio_trial_over_bare": ratio, "goal": 1.05,
        "trial_epoch_time_s_median": statistics.median(trial_times),
        "bare_epoch_time_s_median": statistics.median(bare_times),
        "trial_epoch_time_s": trial_times, "bare_epoch_time_s": bare_times,
        "model": f"resnet-{args.depth} width {args.width}", "params": config["design"]["params_total"],
        "dataset": "digits 16x16, 1347 train", "batch_size": args.batch_size, "epochs_per_run": args.epochs,
        "repeats": args.repeats, "device": str(device), "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }  # fmt: skip
    print(
        f"trial {figures['trial_epoch_time_s_median']:.3f} s/epoch, bare {figures['bare_epoch_time_s_median']:.3f}"
        f" s/epoch, ratio {ratio:.3f} (goal <= 1.05) on {device}, {torch.get_num_threads()} thread(s)"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"wrote {args.out}")
    return figures


if __name__ == "__main__":
    main()
