"""Benchmarks: trial vs bare loop (P1), fused vs sequential members (P4), ensembles vs singles (P5).

`python -m harness.bench` runs them in ONE process on whatever device is present.

P1 -- harness vs bare loop. Both train the same model (a single CIFAR ResNet from `spaces.families`) on the same
device-resident digits data through the same data path (`harness.loop.train_batches`: same views, same batch order)
with the same batch size and SGD, in ONE process. Each round runs trial A, bare A, trial B, bare B in a rotating
order; the first epoch of every run is a warm-up and is dropped. Figures are medians over rounds of per-round ratios,
with their spread: trial / bare (goal 0.95-1.05) and the A/A ratios trial A / trial B and bare A / bare B (goal
0.97-1.03), which show what the method cannot resolve. The bare loop is what a person would write by hand: no trial
kind, no co-training loss, no records.

P4 -- fused vs sequential. The train-step time (forward, co-training loss, backward, SGD step; views made
beforehand) of a k = 4 deq resnet ensemble run `sequential`, `fused` and `auto` (resolved for this device), on
member views (one [k, B, C, H, W] batch) and on one shared view, interleaved in rounds; figures are medians over
rounds of the mean step time. `auto_over_sequential` <= 1.02 is the check that `auto` is never slower than
sequential here (on CPU `auto` is `sequential`, so this measures the noise floor). This is where the `auto` rule in
`harness.fused.resolve_execution` comes from.

P5 -- ensemble vs single. Trial epoch time (`run_trial`, execution `auto`) of deq ensembles of k in {2, 4, 8}
sized by `spaces.designs.ensemble_for` under the budget of a single network, for two families, over the single's
epoch time (first epoch dropped). The budget deviation of each ensemble is in the JSON (WRN's integer widen factor
fits budgets coarsely).

P6 -- speed options. Trial epoch time of a single resnet and its k = 4 deq ensemble (execution `auto`) with each
option that means something on the device -- torch.compile on any device; on CUDA also CUDA graphs (compile mode
reduce-overhead), bf16 autocast, channels_last and bf16 + compile -- over the same trial eager in fp32. Steady
epoch times are medians after the first epoch; the first epoch's time, which includes compilation, is given beside.

P8 -- trials on 2 devices (`--parts p8`, on a local Ray it starts: Ray Train workers, `harness.parallel`). Steady
epoch time (median after the first epoch) of a dct ensemble of S = 2 trained members-parallel on 2 workers, and of
the single network of the same budget trained data-parallel (sync BN) on the same 2 workers, each over its own
one-device epoch time (the trial alone in this process, same threads per process), and the one over the other.
On a CPU the workers are processes on the machine's cores (2 here), not devices: the figures say what splitting a
trial over processes costs or saves there; on a GPU machine with 2 devices the workers are the devices.

This is a benchmark, not a test: it prints the ratio and writes its figures as JSON (default
results/bench/bench_trial.json; results/ is the untracked run-output folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime

import torch
import torch.nn.functional as F

from harness import measure
from harness.data import load_data
from harness.fused import FusedMembers, resolve_execution
from harness.loop import make_views, run_trial, train_batches
from harness.losses import cotraining_loss
from harness.networks import build_members, derived_seed, make_optimizer
from harness.views import ViewMaker
from spaces.designs import DesignPoint, Shape, ensemble_for, single_at
from spaces.families import create_model

DEFAULT_OUT = os.path.join("results", "bench", "bench_trial.json")
DIGITS = Shape(10, 1, 16)


def bench_config(
    depth: int,
    width: int,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    design: DesignPoint | None = None,
    execution: str = "sequential",
) -> dict:
    """Return a trial config (contract shape) on digits with cheap once-per-trial measures: a single resnet of
    (depth, width), or `design` when given. Its `measure.threads` is torch's thread count now (what `--threads` set),
    so the trial runs with the bare loop's threads instead of resetting them to the process default."""
    design = design or single_at("resnet", depth, width, DIGITS, {}, "floor")
    recipe = {
        "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "wd_policy": "none", "schedule": "cosine", "warmup_epochs": 0, "milestones": [], "gamma": 0.1,
        "batch_size": batch_size, "eval_batch_size": 512, "label_smoothing": 0.0, "lambda_cot": 0.0,
        "cot_warmup_epochs": 0, "cot_floor": 0.005, "member_views": False, "crop_padding": 2, "flip": False,
        "autoaugment": False, "randaugment": False, "random_erasing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
        "precision": "fp32", "channels_last": False, "combine": "logits", "execution": execution,
        "compile": "off", "compile_backend": "inductor", "inductor_cpu": False, "cudnn_benchmark": True,
    }  # fmt: skip
    return {
        "trial_id": f"bench-{design.family}-{design.members}x{design.depth}-{design.width}-{seed}",
        "sweep": "bench", "seed": seed, "epochs": epochs,
        "dataset": {"name": "digits", "root": "", "download": False, "num_classes": 10, "in_chans": 1,
                    "image_size": 16, "test_fraction": 0.25, "split_seed": 0},
        "design": design.as_dict(), "recipe": recipe,
        "measure": {"latency_warmup": 1, "latency_runs": 3, "throughput_batch": 8,
                    "threads": torch.get_num_threads()},
        "resources": {"cpus": 1, "gpus": 0, "fractional_gpu": False},
    }  # fmt: skip


def bare_epoch_times(config: dict, device: torch.device) -> list[float]:
    """Train the config's model with a hand-written loop on the trial's data path; return each epoch's training time
    in seconds.

    The data path is the trial's own (`harness.loop.train_batches` on the device-resident tensors, the recipe's
    views, a generator seeded as the trial seeds it), so the batches, their order and the augmentation cost are the
    same; what differs is the loop: no trial kind, no per-iteration lr bookkeeping beyond a scheduler, no records."""
    design, recipe = config["design"], config["recipe"]
    data = load_data(config["dataset"], device)
    views = make_views(recipe, data)
    gen = torch.Generator(device=device).manual_seed(derived_seed(config["seed"], "views"))
    torch.manual_seed(derived_seed(config["seed"], "member", 0))
    model = create_model(design["family"], design["depth"], design["width"], num_classes=10, in_chans=1).to(device)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": recipe["weight_decay"]}, {"params": rest}],
                          lr=recipe["lr"], momentum=0.9, nesterov=True)  # fmt: skip
    epochs, bs = config["epochs"], recipe["batch_size"]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((data.num_train + bs - 1) // bs))
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as the trial does (recipe cudnn_benchmark)
    times = []
    for _ in range(epochs):
        model.train()
        measure.sync(device)
        start = time.perf_counter()
        for inputs, y in train_batches(data, views, 1, False, bs, gen, device):
            loss = F.cross_entropy(model(inputs[0]), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        measure.sync(device)
        times.append(time.perf_counter() - start)
    return times


def _spread(ratios: list[float]) -> dict:
    """Return the median of per-round ratios with their spread (min, max, interquartile range)."""
    ordered = sorted(ratios)
    q = lambda f: ordered[int(round(f * (len(ordered) - 1)))]  # noqa: E731
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "iqr": q(0.75) - q(0.25),
            "per_round": ratios}  # fmt: skip


def step_time_figures(
    family: str, depth: int, width: int, k: int, batch_size: int, rounds: int, steps: int, device: torch.device
) -> dict:
    """P4: return median train-step times (s) of a k-member deq ensemble per execution and view kind, and ratios."""
    design = ensemble_for(single_at(family, depth, width, DIGITS, {}, "floor"), "deq", k).as_dict()
    recipe = bench_config(depth, width, 1, batch_size)["recipe"]
    data = load_data(bench_config(depth, width, 1, batch_size)["dataset"], device)
    views = ViewMaker(padding=2, flip=False, normalize=data.normalize)
    gen = torch.Generator(device=device).manual_seed(0)
    raw, labels = data.train_x[:batch_size], data.train_y[:batch_size]
    batches = {"member_views": views.views(raw, k, True, gen), "shared_view": views.views(raw, k, False, gen)}
    modes = {"sequential": "sequential", "fused": "fused", "auto": resolve_execution("auto", device, k)}
    figures = {"family": family, "members": k, "member_width": design["width"], "depth": depth,
               "batch_size": batch_size, "rounds": rounds, "steps_per_round": steps,
               "auto_resolves_to": modes["auto"]}  # fmt: skip
    engines = {}
    for mode, execution in modes.items():  # each mode its own members, so that no mode warms another's caches
        members = build_members(design, 0, device, channels_last=False)
        fused = FusedMembers(members) if execution == "fused" else None
        engines[mode] = (members, fused, make_optimizer(members, recipe, fused.params if fused else None))

    def step(mode: str, inputs: list[torch.Tensor]) -> None:
        members, fused, optimizer = engines[mode]
        logits = list(fused(inputs).unbind(0)) if fused else [m(x) for m, x in zip(members, inputs, strict=True)]
        loss, _ = cotraining_loss(logits, labels, lambda_cot=0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for kind, inputs in batches.items():
        for mode in engines:
            for _ in range(2):  # warm-up: allocator, algorithm selection
                step(mode, inputs)
        # Modes alternate step by step, in a rotating order, so that load from other processes hits all of them.
        times = {mode: [] for mode in engines}
        order = list(engines)
        for r in range(rounds):
            for mode in order[r % len(order) :] + order[: r % len(order)]:
                measure.sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    step(mode, inputs)
                measure.sync(device)
                times[mode].append((time.perf_counter() - start) / steps)
        med = {mode: statistics.median(t) for mode, t in times.items()}
        figures[kind] = {
            **{f"{mode}_step_time_s": med[mode] for mode in engines},
            "fused_over_sequential": med["fused"] / med["sequential"],
            "auto_over_sequential": med["auto"] / med["sequential"],
        }
    figures["auto_never_slower"] = all(figures[kind]["auto_over_sequential"] <= 1.02 for kind in batches)
    return figures


def ensemble_epoch_figures(
    families: list[tuple[str, int, int]], ks: list[int], epochs: int, batch_size: int, device: torch.device
) -> list[dict]:
    """P5: return one row per (family, k): trial epoch times (s, median after the first epoch) of the deq ensemble
    and of the single network that sets its budget, their ratio, and the ensemble's budget deviation (percent)."""
    rows = []
    for family, depth, width in families:
        single = single_at(family, depth, width, DIGITS, {}, "floor")
        designs = [single] + [ensemble_for(single, "deq", k) for k in ks]
        times = {}
        for design in designs:
            config = bench_config(depth, width, epochs, batch_size, design=design, execution="auto")
            if device.type == "cuda":
                config["resources"]["gpus"] = 1
            result = run_trial(config, report=lambda record: None)
            times[design.members] = (
                statistics.median(r["epoch_time_s"] for r in result["epochs"][1:]),
                result["final"]["execution"],
            )
        for design in designs[1:]:
            rows.append({
                "family": family, "depth": depth, "single_width": width, "members": design.members,
                "member_width": design.width, "budget": design.budget, "params_total": design.params_total,
                "budget_deviation_pct": design.budget_deviation, "execution": times[design.members][1],
                "single_epoch_time_s": times[1][0], "ensemble_epoch_time_s": times[design.members][0],
                "ensemble_over_single": times[design.members][0] / times[1][0],
            })  # fmt: skip
    return rows


def parallel_figures(depth: int, width: int, epochs: int, batch_size: int, device: torch.device) -> dict:
    """P8: return the steady epoch times (s, median after the first epoch) of a dct S = 2 ensemble trained
    members-parallel and of the single network of its budget trained data-parallel (sync BN), each on 2 Ray Train
    workers, and of both on one device (this process), with the ratios. The parallel runs go through
    `harness.parallel_trial.fit_parallel` into a temporary store (the sweep's path); a local Ray is started when none
    is running (2 CPUs per trial's workers on a CPU, 2 GPUs on CUDA)."""
    import tempfile

    import pandas as pd
    import ray

    from harness.parallel_trial import fit_parallel, train_storage

    single = single_at("resnet", depth, width, DIGITS, {}, "floor")
    dct = ensemble_for(single, "dct", 2)
    cotrain = {"lambda_cot": 0.5, "member_views": True, "cot_warmup_epochs": 0}
    one = {"dct": bench_config(depth, width, epochs, batch_size, design=dct), "single": bench_config(
        depth, width, epochs, batch_size, design=single)}  # fmt: skip
    one["dct"]["recipe"].update(cotrain)
    one["single"]["recipe"]["sync_bn"] = True  # no effect on one device; part of the data-parallel recipe
    cuda = device.type == "cuda"
    times = {}
    for name, config in one.items():
        if cuda:
            config["resources"]["gpus"] = 1
        result = run_trial(config, report=lambda record: None)
        times[f"{name}_one_device"] = statistics.median(r["epoch_time_s"] for r in result["epochs"][1:])
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False)  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as store:
            fs, path = train_storage(store)
            for name, mode in (("dct", "members"), ("single", "data")):
                config = {**one[name], "trial_id": f"{one[name]['trial_id']}-{mode}2",
                          "resources": {**one[name]["resources"], "parallel": mode, "workers": 2,
                                        "gpus": 2 if cuda else 0}}  # fmt: skip
                fit_parallel(config, store, "bench", None, path)
                epochs_rows = pd.read_parquet(f"{store}/epochs/sweep=bench/{config['trial_id']}.parquet")
                key = f"{name}_{'members' if mode == 'members' else 'data'}_parallel"
                times[key] = float(epochs_rows.sort_values("epoch")["epoch_time_s"].iloc[1:].median())
    finally:
        if started:
            ray.shutdown()
    return {
        "depth": depth, "width": width, "budget": single.budget, "dct_params_total": dct.params_total,
        "workers_are": "CUDA devices" if cuda else "processes on the CPU cores",
        **{f"{k}_epoch_time_s": v for k, v in times.items()},
        "dct_members_parallel_over_one_device": times["dct_members_parallel"] / times["dct_one_device"],
        "single_data_parallel_over_one_device": times["single_data_parallel"] / times["single_one_device"],
        "dct_members_over_single_data": times["dct_members_parallel"] / times["single_data_parallel"],
        "dct_over_single_one_device": times["dct_one_device"] / times["single_one_device"],
    }  # fmt: skip


def speed_option_variants(device: torch.device) -> dict[str, dict]:
    """Return the P6 variants (name -> recipe overrides) that mean something on `device`: autocast and channels_last
    are CUDA-only (a CPU trial would run fp32, contiguous, and time the same thing twice)."""
    # On a CPU the bench opts in to inductor's C++ kernels (what P6 measures); the compile probe still guards it.
    compile_cpu = {} if device.type == "cuda" else {"inductor_cpu": True}
    variants = {"eager_fp32": {}, "compile": {"compile": "default", **compile_cpu}}
    if device.type == "cuda":
        variants.update({
            "compile_cuda_graphs": {"compile": "reduce-overhead"},
            "bf16": {"precision": "bf16"},
            "bf16_channels_last": {"precision": "bf16", "channels_last": True},
            "bf16_compile": {"precision": "bf16", "compile": "default"},
        })  # fmt: skip
    return variants


def speed_option_figures(
    family: str, depth: int, width: int, k: int, epochs: int, batch_size: int, device: torch.device
) -> list[dict]:
    """P6: return one row per (design, variant): trial epoch times (s) of the single network and of its k-member deq
    ensemble (execution auto) under each speed option of `speed_option_variants` -- the steady epoch time (median
    after the first epoch), the first epoch's (which includes compilation), and the steady time over eager fp32's."""
    single = single_at(family, depth, width, DIGITS, {}, "floor")
    rows = []
    for design in (single, ensemble_for(single, "deq", k)):
        baseline = None
        for name, overrides in speed_option_variants(device).items():
            config = bench_config(depth, width, epochs, batch_size, design=design, execution="auto")
            config["recipe"].update(overrides)
            if device.type == "cuda":
                config["resources"]["gpus"] = 1
            try:
                result = run_trial(config, report=lambda record: None)
            except ValueError as err:  # an option this device cannot run (see harness.fused.check_compile_supported)
                rows.append({"family": family, "depth": depth, "members": design.members, "variant": name,
                             **overrides, "refused": str(err)})  # fmt: skip
                continue
            times = [r["epoch_time_s"] for r in result["epochs"]]
            steady = statistics.median(times[1:])
            baseline = baseline or steady
            rows.append({
                "family": family, "depth": depth, "members": design.members, "member_width": design.width,
                "variant": name, **overrides, "execution": result["final"]["execution"],
                "precision_ran": result["final"]["precision"], "epoch_time_s_steady": steady,
                "first_epoch_time_s": times[0], "over_eager_fp32": steady / baseline,
                "final_acc": result["final"]["final_acc"],
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmarks, print a summary and write the JSON figures; return them."""
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is dropped as warm-up")
    parser.add_argument("--repeats", type=int, default=5, help="P1 rounds of interleaved trial/bare A/B runs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    parser.add_argument("--parts", default="p1,p4,p5,p6",
                        help="comma-separated parts to run: p1, p4, p5, p6, p8 (p8 starts a local Ray)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the bench, ~1 min on CPU)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parts = {p.strip().lower() for p in args.parts.split(",") if p.strip()}
    if args.quick:
        args.epochs, args.repeats = 3, 2
    figures = {
        "device": str(device), "device_name": measure.device_name(device), "num_threads": torch.get_num_threads(),
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda if device.type == "cuda" else None,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    if "p1" in parts:
        figures.update(harness_vs_bare(args, device))
    if "p4" in parts:
        rounds, steps = (6, 1) if args.quick else (12, 1)
        p4 = step_time_figures("resnet", 20, 16, 4, args.batch_size, rounds, steps, device)
        figures["p4_fused_vs_sequential"] = p4
        for kind in ("member_views", "shared_view"):
            r = p4[kind]
            print(
                f"P4 resnet deq k=4 ({kind}): sequential {r['sequential_step_time_s'] * 1e3:.1f} ms/step, fused"
                f" {r['fused_step_time_s'] * 1e3:.1f} ms/step, fused/sequential {r['fused_over_sequential']:.2f},"
                f" auto ({p4['auto_resolves_to']})/sequential {r['auto_over_sequential']:.3f}"
            )
        print(f"P4 auto never slower than sequential (<= 1.02): {p4['auto_never_slower']}")
    if "p5" in parts:
        # wrn-10-3 is the smallest WRN whose budget fits 8 members of widen factor 1.
        families = [("resnet", 8, 16)] if args.quick else [("resnet", 14, 16), ("wrn", 10, 3)]
        rows = ensemble_epoch_figures(families, [2, 4, 8], 2, args.batch_size, device)
        figures["p5_ensemble_vs_single"] = rows
        for r in rows:
            print(
                f"P5 {r['family']}-{r['depth']} budget {r['budget']:,}: deq k={r['members']} (width"
                f" {r['member_width']}, {r['budget_deviation_pct']:+.1f}%, {r['execution']})"
                f" {r['ensemble_epoch_time_s']:.2f} s/epoch vs single {r['single_epoch_time_s']:.2f},"
                f" ratio {r['ensemble_over_single']:.2f}"
            )
    if "p6" in parts:
        depth, width = (8, 16) if args.quick else (20, 16)
        rows = speed_option_figures("resnet", depth, width, 4, args.epochs, args.batch_size, device)
        figures["p6_speed_options"] = rows
        for r in rows:
            design = "single" if r["members"] == 1 else f"deq k={r['members']}"
            if "refused" in r:
                print(f"P6 resnet-{depth} {design} {r['variant']}: refused: {r['refused']}")
                continue
            print(
                f"P6 resnet-{depth} {design} {r['variant']} ({r['execution']}, {r['precision_ran']}):"
                f" {r['epoch_time_s_steady']:.3f} s/epoch steady, first epoch {r['first_epoch_time_s']:.2f} s,"
                f" over eager fp32 {r['over_eager_fp32']:.2f}"
            )
    if "p8" in parts:
        depth, width = (8, 16) if args.quick else (14, 16)
        p8 = parallel_figures(depth, width, args.epochs, args.batch_size, device)
        figures["p8_two_workers"] = p8
        print(f"P8 resnet-{depth} w={width} on 2 {p8['workers_are']}: dct S=2 members-parallel"
              f" {p8['dct_members_parallel_epoch_time_s']:.2f} s/epoch (one device"
              f" {p8['dct_one_device_epoch_time_s']:.2f}, ratio {p8['dct_members_parallel_over_one_device']:.2f});"
              f" single data-parallel {p8['single_data_parallel_epoch_time_s']:.2f} s/epoch (one device"
              f" {p8['single_one_device_epoch_time_s']:.2f}, ratio {p8['single_data_parallel_over_one_device']:.2f});"
              f" dct members-parallel / single data-parallel {p8['dct_members_over_single_data']:.2f}"
              f" (one device: dct / single {p8['dct_over_single_one_device']:.2f})")  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"wrote {args.out}")
    return figures


def harness_vs_bare(args: argparse.Namespace, device: torch.device) -> dict:
    """P1: return the trial-vs-bare-loop figures and the A/A checks, and print the summary lines.

    Each round runs four runs of `epochs` epochs -- trial A, bare A, trial B, bare B (A and B identical) -- in an
    order that rotates from round to round (after one untimed trial and bare run), so that load drifts hit every kind
    alike; a run's time is the median of
    its epochs after the first (the warm-up). Per round: trial / bare (P1, the mean of the A and B ratios), trial A /
    trial B and bare A / bare B (A/A: what the method cannot tell apart). Figures are medians over rounds with their
    spread. Goals on this 2-core CPU: P1 within 0.95-1.05, every A/A within 0.97-1.03."""
    config = bench_config(args.depth, args.width, args.epochs, args.batch_size)
    if device.type == "cuda":
        config["resources"]["gpus"] = 1

    def trial_run() -> float:
        result = run_trial(config, report=lambda record: None)
        return statistics.median(r["epoch_time_s"] for r in result["epochs"][1:])

    def bare_run() -> float:
        return statistics.median(bare_epoch_times(config, device)[1:])

    kinds = {"trial_a": trial_run, "bare_a": bare_run, "trial_b": trial_run, "bare_b": bare_run}
    order = list(kinds)
    runs: dict[str, list[float]] = {k: [] for k in kinds}
    trial_run(), bare_run()  # an untimed warm-up pair: the process's first runs pay one-off costs (kernels, allocator)
    for r in range(args.repeats):
        for kind in order[r % len(order) :] + order[: r % len(order)]:
            runs[kind].append(kinds[kind]())
    rounds = range(args.repeats)
    p1 = [0.5 * (runs["trial_a"][i] / runs["bare_a"][i] + runs["trial_b"][i] / runs["bare_b"][i]) for i in rounds]
    figures = {
        "ratio_trial_over_bare": _spread(p1)["median"], "goal": [0.95, 1.05], "aa_goal": [0.97, 1.03],
        "trial_over_bare": _spread(p1),
        "aa_trial": _spread([runs["trial_a"][i] / runs["trial_b"][i] for i in rounds]),
        "aa_bare": _spread([runs["bare_a"][i] / runs["bare_b"][i] for i in rounds]),
        "run_epoch_time_s": runs,
        "model": f"resnet-{args.depth} width {args.width}", "params": config["design"]["params_total"],
        "dataset": "digits 16x16, 1347 train", "batch_size": args.batch_size, "epochs_per_run": args.epochs,
        "rounds": args.repeats,
    }  # fmt: skip
    for name, key in (("P1 trial / bare", "trial_over_bare"), ("A/A trial / trial", "aa_trial"),
                      ("A/A bare / bare", "aa_bare")):  # fmt: skip
        f = figures[key]
        print(f"{name}: median {f['median']:.3f} (min {f['min']:.3f}, max {f['max']:.3f}, IQR {f['iqr']:.3f}) over"
              f" {args.repeats} interleaved rounds on {device}, {torch.get_num_threads()} thread(s)")  # fmt: skip
    return figures


if __name__ == "__main__":
    main()
