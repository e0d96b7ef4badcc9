"""Benchmark of the analysis at the scale of a study: `python -m analysis.bench`.

    python -m analysis.bench --scale mol --runs 3            # 3,780 trials x 120 epochs (More-or-Less, issue 23)
    python -m analysis.bench --scale mol10 --runs 1          # 10x: 37,800 trials, 4.5M epoch rows
    python -m analysis.bench --scale mol --store /tmp/mol    # reuse (or keep) the synthetic store

It writes a synthetic store in the store's layout (one Parquet file per trial and table, as the harness writes it):
the More-or-Less grid of 3 data sets x 3 families x `budgets` budgets x {single, deq, weq} x k in {4, 6, 8} x `seeds`
seeds x 120 epochs ("mol": 20 budgets, 3 seeds; "mol10": 50 budgets, 12 seeds, 10x the trials). Accuracy curves are
smooth in budget and epoch with seed noise, so the cells hold wins, ties and single-network wins and the EST falls
inside the grid. Then it runs `python -m analysis report` and `python -m analysis explore` on it, each in a fresh
process (`--runs` times, interleaved), and prints per command and step (load, EST, tables, figures, page) the wall
time (s) and the process's peak resident memory so far (MB, ru_maxrss), the page's size (MB), and per command the CPU
time (s) of its process and figure workers, which other jobs on the machine inflate less than the wall time.
`--json` writes all runs to a file (benchmarks/ keeps the ones quoted). Timings are wall-clock on a possibly shared
machine: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# scale -> (budgets, seeds, epochs); "mol" is the study's grid, "mol10" ten times its trials (2.5x budgets, 4x seeds).
SCALES = {"mol": (20, 3, 120), "mol10": (50, 12, 120), "small": (5, 3, 10)}
DATASETS = ("cifar10", "cifar100", "tinyimagenet")
FAMILIES = ("resnet", "wrn", "densenet")
KS = (4, 6, 8)


def _accuracy(cls: str, k: int, budget: float, epochs: np.ndarray, seed: int, rng: np.random.Generator) -> np.ndarray:
    """Return test_acc (fraction) per epoch of one synthetic trial: a saturating curve whose ceiling rises with the
    budget; ensembles start lower (smaller members) and end higher above a budget that grows with k."""
    size = np.log10(budget)  # budgets 1e5..1e7 -> 5..7
    ceiling = 0.55 + 0.05 * (size - 5.0)
    if cls != "single":
        gain = 0.012 * (size - 5.0 - 0.25 * (k - 4) / 2) - 0.008 + (0.002 if cls == "deq" else 0.0)
        ceiling += gain
    speed = 20.0 if cls == "single" else 26.0
    curve = ceiling * (1.0 - np.exp(-epochs / speed))
    return np.clip(curve + rng.normal(0.0, 0.004, size=len(epochs)), 0.0, 1.0)


def write_synthetic_store(root: Path, scale: str = "mol", sweep: str = "mol") -> dict:
    """Write the synthetic study store of `scale` (see SCALES) under `root`; return its counts (trials, epoch rows,
    files, seconds to write)."""
    from tests.analysis.synth import make_trial

    n_budgets, n_seeds, n_epochs = SCALES[scale]
    t0 = time.perf_counter()
    budgets = np.unique(np.round(np.logspace(5, 7, n_budgets)).astype(int))
    epochs = np.arange(1, n_epochs + 1)
    rng = np.random.default_rng(23)
    trial_rows, accs, identities = [], [], []
    for dataset in DATASETS:
        for family in FAMILIES:
            designs = [("single", 1)] + [(c, k) for c in ("deq", "weq") for k in KS]
            for cls, k in designs:
                for b in budgets:
                    for seed in range(n_seeds):
                        acc = _accuracy(cls, k, float(b), epochs, seed, rng)
                        trial, _ = make_trial(cls, int(b), seed, [float(acc[-1])], members=k, dataset=dataset,
                                              family=family, epochs=n_epochs, budget_deviation_pct=-2.0)  # fmt: skip
                        ep_time = trial["epoch_time_s_mean"]
                        trial.update(epochs_done=n_epochs, final_acc=float(acc[-1]), best_acc=float(acc.max()),
                                     best_epoch=int(acc.argmax() + 1), train_time_s=ep_time * n_epochs)  # fmt: skip
                        trial_rows.append(trial)
                        accs.append(acc)
                        identities.append(trial)
    trials = pd.DataFrame(trial_rows)
    n = len(trials)
    acc = np.concatenate(accs)
    ident_cols = ["schema_version", "trial_id", "point_id", "dataset", "split", "seed", "design_class", "family",
                  "depth", "width", "members", "budget", "fit", "epochs", "budget_depth", "budget_width"]  # fmt: skip
    rep = np.repeat(np.arange(n), n_epochs)
    ep = pd.DataFrame({c: trials[c].to_numpy()[rep] for c in ident_cols})
    e = np.tile(epochs, n)
    members = ep["members"].to_numpy()
    ep_time = trials["epoch_time_s_mean"].to_numpy()[rep]
    member_mean = acc - 0.03
    ep["epoch"] = e
    ep["test_acc"] = acc
    table = pa.Table.from_pandas(ep, preserve_index=False)
    offsets = np.concatenate([[0], np.cumsum(members)]).astype(np.int32)
    member_acc = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.repeat(member_mean, members)))
    for name, col in (("member_acc", member_acc), ("member_acc_mean", member_mean), ("train_loss", 1.0 / e),
                      ("test_loss", 1.2 / e), ("epoch_time_s", ep_time), ("cum_time_s", ep_time * e),
                      ("lr", np.full(len(e), 0.1)), ("lambda_cot", np.zeros(len(e)))):  # fmt: skip
        table = table.append_column(name, col if isinstance(col, pa.Array) else pa.array(col))
    trials_table = pa.Table.from_pandas(trials, preserve_index=False)
    for sub in ("trials", "epochs"):
        (root / sub / f"sweep={sweep}").mkdir(parents=True, exist_ok=True)
    for i, tid in enumerate(trials["trial_id"]):
        pq.write_table(trials_table.slice(i, 1), root / "trials" / f"sweep={sweep}" / f"{tid}.parquet")
        pq.write_table(table.slice(i * n_epochs, n_epochs), root / "epochs" / f"sweep={sweep}" / f"{tid}.parquet")
    return {"trials": n, "epoch_rows": len(e), "files": 2 * n, "budgets": len(budgets), "seeds": n_seeds,
            "epochs": n_epochs, "write_s": round(time.perf_counter() - t0, 1)}  # fmt: skip


def _peak_mb() -> float:
    """Return this process's peak resident memory so far (MB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(cmd: str, store: str, sweep: str, out: str) -> dict:
    """Run one command in this (fresh) process with step timings; return {steps, wall_s, peak_mb, page_mb?}."""
    steps: dict = {}
    t0 = time.perf_counter()
    if cmd == "report":
        from analysis.report import write_report

        write_report(store, sweep, out, steps=steps)
    else:
        from analysis.explore import write_explorer

        page = write_explorer(store, sweep, out, steps=steps)
        steps["page_mb"] = round(page.stat().st_size / 1e6, 2)
    wall = time.perf_counter() - t0
    files = sum(1 for p in Path(out).rglob("*") if p.is_file())
    # The figure workers' peak too (forked: it counts the pages they share with this process).
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    # CPU time (user + system) of this process and its figure workers: what the command costs whatever else shares
    # the cores (the wall time is not).
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(r.ru_utime + r.ru_stime for r in usage)
    return {"steps": steps, "wall_s": round(wall, 2), "cpu_s": round(cpu, 1), "peak_mb": round(_peak_mb(), 1),
            "workers_peak_mb": round(children, 1), "files": files}  # fmt: skip


def _run_one(cmd: str, store: Path, sweep: str, work: Path, run: int) -> dict:
    out = work / f"{cmd}_{run}"
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "analysis.bench", "--child", cmd, "--store", str(store),
                           "--sweep", sweep, "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(cmd=cmd, run=run, process_s=round(time.perf_counter() - t0, 2), load_before=[round(x, 2) for x in load],
               load_after=[round(x, 2) for x in os.getloadavg()])  # fmt: skip
    return res


def _table(results: list[dict]) -> str:
    lines = ["| command | run | process wall (s) | CPU (s) | steps: load / EST / tables / figures / page (s) | "
             "peak RSS (MB; figure workers') | page (MB) | files | load avg 1 min before / after |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        s = r["steps"]
        parts = " / ".join(f"{s[k]['s']:.1f}" if k in s else "-" for k in ("load", "est", "tables", "figures", "page"))
        peak = f"{r['peak_mb']:.0f}" + (f" ({r['workers_peak_mb']:.0f})" if r.get("workers_peak_mb") else "")
        lines.append(f"| {r['cmd']} | {r['run']} | {r['process_s']:.1f} | {r.get('cpu_s', '')} | {parts} | {peak} | "
                     f"{s.get('page_mb', '')} | {r['files']} | {r['load_before'][0]} / {r['load_after'][0]} |")
    for cmd in ("report", "explore"):
        walls = sorted(r["process_s"] for r in results if r["cmd"] == cmd)
        peaks = sorted(r["peak_mb"] for r in results if r["cmd"] == cmd)
        if walls:
            lines.append(f"\n{cmd}: median wall {walls[len(walls) // 2]:.1f} s over {len(walls)} run(s), "
                         f"median peak RSS {peaks[len(peaks) // 2]:.0f} MB")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --child, one timed command); return the exit code."""
    p = argparse.ArgumentParser(prog="python -m analysis.bench", description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="mol")
    p.add_argument("--runs", type=int, default=3, help="runs of each command, interleaved (default 3)")
    p.add_argument("--store", default=None, help="store folder: reused when it holds the sweep, else written there")
    p.add_argument("--sweep", default="mol")
    p.add_argument("--commands", default="report,explore")
    p.add_argument("--json", default=None, help="write every run's figures to this JSON file")
    p.add_argument("--child", choices=("report", "explore"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.store, args.sweep, args.out)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="analysis_bench_"))
    store = Path(args.store) if args.store else work / "store"
    if (store / "trials" / f"sweep={args.sweep}").is_dir():
        info = {"reused": str(store)}
    else:
        info = write_synthetic_store(store, args.scale, args.sweep)
    print(f"store {store}: {info}; outputs in {work}", flush=True)
    results = []
    for run in range(1, args.runs + 1):
        for cmd in args.commands.split(","):
            results.append(_run_one(cmd, store, args.sweep, work, run))
            r = results[-1]
            print(f"{cmd} run {run}: {r['process_s']} s, peak {r['peak_mb']} MB, steps {r['steps']}, "
                  f"load {r['load_before']} -> {r['load_after']}", flush=True)  # fmt: skip
    print(_table(results))
    if args.json:
        meta = {"scale": args.scale, "store": info, "machine": platform.platform(), "cpus": os.cpu_count(),
                "processor": _cpu_name(), "python": platform.python_version(),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
        Path(args.json).write_text(json.dumps({"meta": meta, "runs": results}, indent=1), encoding="utf-8")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
