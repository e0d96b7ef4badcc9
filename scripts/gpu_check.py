"""One prepared GPU check: `scripts/gpu_check.sh` (or `python scripts/gpu_check.py --out DIR`).

On a machine with a CUDA device it runs, each step under its own timeout and all within `--budget-s` (480 s), in the
order of what matters most if time runs out:
  1. env: `nvidia-smi -q`, Python/torch/CUDA/cuDNN versions, the devices;
  2. `python -m harness.bench` on CUDA: P4 fused vs sequential and P5 ensembles vs singles (P1/P6 --quick come last);
  3. `pytest -m gpu` over the test files that hold GPU tests;
  4. a short real sweep of the default spec (one seed) with `resources.gpus = 1` (one trial at a time on the GPU),
     then the same with two seeds packed 4 to the GPU (`resources.trials_per_gpu = 4`), each sweep followed by its
     cost pass (design points measured alone; for the packed sweep also each seed alone: do the seeds agree?);
  5. a one-page summary (summary.md) from the sweep's store and the bench JSON.
The sweeps go through `run_sweep.py` when Ray is importable; else each trial runs in its own process
(`harness.trial.run_trial`, rows written with `harness.store.write_trial`) with 1 or 4 processes at once, and the
latency pass runs after the trials. The summary says which way ran.

The output folder holds at most 8 files with plain names (a device machine returns no more): summary.md, steps.tsv,
env.txt, pytest_gpu.log, bench.json, steps.log, store.tar.gz.

Without CUDA it prints one line and exits 0, running nothing. `--rehearse-on-cpu` runs every step's command on the
CPU with tiny settings, so that the first run on a GPU is the real one.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere: the repo's packages come first
    sys.path.insert(0, str(REPO))

# What comes back from a device machine: at most 8 files, names of letters, digits, '.', '_' and '-'.
MAX_FILES = 8
ALLOWED_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
OUTPUT_FILES = ("summary.md", "steps.tsv", "env.txt", "pytest_gpu.log", "bench.json", "steps.log", "store.tar.gz")
BUDGET_S = 480  # our choice: 8 of the machine's 15 minutes, leaving its start and one rerun
PACKED = 4  # trials at once on one GPU in the packed sweep (resources.trials_per_gpu)
SWEEP_WHOLE, SWEEP_PACKED = "gpu_whole", "gpu_packed"


# ---------------------------------------------------------------------------------------------------------------
# the Ray-less sweep: one process per trial


def run_trial_to_store(config: dict, store: str, sweep: str, share: str | None) -> str:
    """Run one trial in this process and write its rows (trials, epochs, subnets) to `store` under `sweep`; return
    its status ("ok" or "error"). `share` names the device share ("0.25 of a GPU") when trials share the device."""
    from harness.errors import one_line
    from harness.store import build_subnet_rows, rows_from_result, write_error_row, write_trial
    from harness.trial import run_trial

    try:
        result = run_trial(config, lambda rec: None, None)
    except Exception as err:  # a failing trial is recorded and the sweep goes on
        row, _ = rows_from_result(config, None, error=one_line(err))
        write_error_row(store, sweep, row)
        return "error"
    result["final"]["device_shared"], result["final"]["device_share"] = bool(share), share
    trial_row, epoch_rows = rows_from_result(config, result)
    write_trial(store, sweep, trial_row, epoch_rows, build_subnet_rows(config, result))
    return trial_row["status"]


def _trial_main(argv: list[str]) -> int:
    """`gpu_check.py trial ...`: run trial --index of the spec into the store; exit 0 when it is ok."""
    p = argparse.ArgumentParser(prog="gpu_check.py trial")
    p.add_argument("--spec", default="digits")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--sweep", required=True)
    p.add_argument("--share", default=None)
    a = p.parse_args(argv)
    from spaces.spec import load_spec, trial_configs

    config = trial_configs(load_spec(a.spec, a.set))[a.index]
    status = run_trial_to_store(config, a.store, a.sweep, a.share)
    print(f"trial {a.index} ({config['design']['design_class']} k={config['design']['members']}): {status}", flush=True)
    return 0 if status == "ok" else 1


def _costs_main(argv: list[str]) -> int:
    """`gpu_check.py costs ...`: run the cost pass (`harness.cost_pass.cost_pass`) over the sweep's design points; with
    --per-seed-out, also measure every ok trial's network on its own (each seed apart, as the pass measures a point)
    and write those figures as JSON: how the seeds' agreement is checked (issue 26). Exit 0 when it ran."""
    p = argparse.ArgumentParser(prog="gpu_check.py costs")
    p.add_argument("--spec", default="digits")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--store", required=True)
    p.add_argument("--sweep", required=True)
    p.add_argument("--per-seed-out", default=None)
    a = p.parse_args(argv)
    from harness.cost_pass import cost_pass, seed_costs
    from spaces.spec import load_spec, trial_configs

    configs = trial_configs(load_spec(a.spec, a.set))
    print(f"cost pass: {cost_pass(a.store, a.sweep, configs)} design points measured", flush=True)
    if a.per_seed_out:
        rows = seed_costs(a.store, a.sweep, configs)
        Path(a.per_seed_out).write_text(json.dumps(rows, indent=1), encoding="utf-8")
        print(f"per-seed costs: {len(rows)} trials measured", flush=True)
    return 0


def rayless_sweep(
    spec: str,
    sets: list[str],
    store: str,
    sweep: str,
    at_once: int,
    share: str | None,
    deadline: float,
    say,
    max_trials: int | None = None,
) -> dict:
    """Run the spec's trials, `at_once` processes at a time, each writing its rows to `store`; start no trial after
    `deadline` (time.monotonic()) and kill those still running then; `say(text)` logs each trial's output. Then run
    the latency pass over the ok rows.
    Return {"trials": n, "ok": n, "failed": n, "not_started": n, "latency_pass": text}."""
    from spaces.spec import load_spec, trial_configs

    configs = trial_configs(load_spec(spec, sets))
    indices = list(range(len(configs)))[:max_trials]
    counts = {"trials": len(indices), "ok": 0, "failed": 0, "not_started": 0}
    lock = threading.Lock()

    def one(i: int) -> None:
        left = deadline - time.monotonic()
        if left < 5:
            with lock:
                counts["not_started"] += 1
            return
        cmd = [sys.executable, str(Path(__file__).resolve()), "trial", "--spec", spec, "--index", str(i),
               "--store", store, "--sweep", sweep] + [x for s in sets for x in ("--set", s)]  # fmt: skip
        if share:
            cmd += ["--share", share]
        rc, text = run_command(cmd, left)
        with lock:
            counts["ok" if rc == 0 else "failed"] += 1
            say(f"[{sweep}] trial {i} rc={rc}\n{text[-3000:]}\n")

    with ThreadPoolExecutor(max_workers=at_once) as pool:
        list(pool.map(one, indices))
    try:
        from harness.latency_pass import latency_pass

        counts["latency_pass"] = f"{latency_pass(store, sweep, [configs[i] for i in indices])} trials timed"
    except Exception as err:  # the trials' own latencies stand
        counts["latency_pass"] = f"failed: {type(err).__name__}: {err}"
    say(f"[{sweep}] {json.dumps(counts)}\n")
    return counts


# ---------------------------------------------------------------------------------------------------------------
# steps


def run_command(cmd: list[str], timeout_s: float) -> tuple[int, str]:
    """Run `cmd` in the repo in its own process group; return (exit status, stdout + stderr). On timeout the whole
    group is killed (a test's child process must not keep the GPU) and the status is 124."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=_env(),
                          start_new_session=True) as proc:  # fmt: skip
        try:
            text, _ = proc.communicate(timeout=timeout_s)
            return proc.returncode, text
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            text, _ = proc.communicate()
            return 124, (text or "") + f"\n[timed out after {timeout_s:.0f} s; its process group was killed]\n"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


class Steps:
    """Runs the check's commands under timeouts within one deadline; records each in steps.tsv and steps.log."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.start = out, time.monotonic()
        self.deadline = self.start + budget_s
        self.rows: list[dict] = []

    def write(self, text: str, path: Path | None = None) -> None:
        """Append `text` to steps.log (or to `path`)."""
        with open(path or self.out / "steps.log", "a", encoding="utf-8") as f:
            f.write(text)

    def left(self, reserve: float = 20.0) -> float:
        """Return the seconds left before the deadline, less `reserve` for the summary and the archive."""
        return self.deadline - time.monotonic() - reserve

    def run(self, name: str, cmd: list[str], timeout_s: float, log_to: Path | None = None) -> int:
        """Run `cmd` in the repo with at most `timeout_s` (and never past the deadline); return its exit status
        (124 when it timed out, -1 when no time was left to start it)."""
        timeout = min(timeout_s, self.left())
        t0 = time.monotonic()
        if timeout < 5:
            rc, text = -1, "not run: the check's time budget was spent\n"
        else:
            rc, text = run_command(cmd, timeout)
        self.record(name, " ".join(cmd), rc, time.monotonic() - t0)
        self.write(f"===== {name}: {' '.join(cmd)} (rc {rc})\n{text}\n", log_to)
        return rc

    def record(self, name: str, command: str, rc: int, seconds: float) -> None:
        self.rows.append({"step": name, "rc": rc, "seconds": round(seconds, 1), "command": command})
        with open(self.out / "steps.tsv", "w", encoding="utf-8") as f:
            f.write("step\trc\tseconds\tcommand\n")
            f.writelines(f"{r['step']}\t{r['rc']}\t{r['seconds']}\t{r['command']}\n" for r in self.rows)


def env_text() -> str:
    """Return the machine's description: nvidia-smi -q, versions of Python and the packages, torch's devices."""
    import torch

    lines = [f"python {platform.python_version()} ({sys.executable})", f"platform {platform.platform()}",
             f"cpus {os.cpu_count()}", f"torch {torch.__version__}", f"torch.version.cuda {torch.version.cuda}",
             f"cudnn {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}",
             f"cuda available {torch.cuda.is_available()}, devices {torch.cuda.device_count()}"]  # fmt: skip
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        lines.append(f"device {i}: {props.name}, {props.total_memory / 2**20:.0f} MiB, capability "
                     f"{props.major}.{props.minor}")  # fmt: skip
    for pkg in (
        "ray",
        "fvcore",
        "pandas",
        "pyarrow",
        "numpy",
        "scipy",
        "scikit-learn",
        "nvidia-ml-py",
        "pytest",
        "torchvision",
        "duckdb",
    ):
        try:
            lines.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{pkg} not installed")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "-q"], capture_output=True, text=True, timeout=30)
            lines += ["", "===== nvidia-smi -q", done.stdout + done.stderr]
        except subprocess.TimeoutExpired:
            lines.append("nvidia-smi -q timed out after 30 s")
    else:
        lines.append("nvidia-smi: not found")
    return "\n".join(lines) + "\n"


def gpu_test_files() -> list[str]:
    """Return the test files (repo-relative) that mark tests with `gpu`; pytest collects only these, so a test module
    that needs a package the GPU machine lacks (ray, duckdb) cannot stop the GPU tests."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                  if re.search(r"mark\.gpu\b", p.read_text(encoding="utf-8")))  # fmt: skip


def ray_available() -> bool:
    """Return True when Ray can be imported here (then the sweeps go through run_sweep.py)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def plan(rehearse: bool) -> dict:
    """Return the check's settings: the real ones on a GPU, tiny ones for a rehearsal on the CPU. `bench` lists
    (name, arguments, timeout s): P4 and P5 run apart so that one timing out keeps the other's figures. The packed
    sweep trains two seeds so that the cost pass's per-seed figures show whether the seeds of a design agree."""
    if rehearse:
        return {"gpus_whole": "0", "gpus_packed": "0", "sets": ["epochs=2"], "seeds_whole": "[0]",
                "seeds_packed": "[0,1]", "max_trials": 4,
                "bench": [("bench_p4", ["--quick", "--parts", "p4"], 120), ("bench_p5", ["--quick", "--parts", "p5"],
                          120), ("bench_p1_p6", ["--quick", "--parts", "p1,p6"], 150)],
                "t_pytest": 120, "t_whole": 150, "t_packed": 150, "t_costs": 150}  # fmt: skip
    # The default spec (8 design points of 8 epochs): real epochs, within the budget. The timeouts are our choice, in
    # the order of what the issues ask: the ratios (P4, P5), the GPU tests, the sweeps and their cost passes, then
    # P1/P6 (--quick) with what is left.
    return {"gpus_whole": "1", "gpus_packed": "1", "sets": [], "seeds_whole": "[0]",
            "seeds_packed": "[0,1]", "max_trials": None,
            "bench": [("bench_p4", ["--parts", "p4"], 60), ("bench_p5", ["--parts", "p5"], 100),
                      ("bench_p1_p6", ["--quick", "--parts", "p1,p6"], 60)],
            "t_pytest": 150, "t_whole": 100, "t_packed": 90, "t_costs": 60}  # fmt: skip


def run_check(out: Path, rehearse: bool, budget_s: float, use_ray: bool) -> int:
    """Run every step into `out`; return 0 when every step exited 0, else 1 (the summary names the failures)."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check_{os.getpid()}"
    store = work / "store"
    store.mkdir(parents=True, exist_ok=True)
    cfg = plan(rehearse)
    steps = Steps(out, budget_s)
    t0 = time.monotonic()
    (out / "env.txt").write_text(env_text(), encoding="utf-8")
    steps.record("env", "nvidia-smi -q; versions", 0, time.monotonic() - t0)

    py = sys.executable
    bench = {}

    def run_bench(name: str, args: list[str], timeout: float) -> None:
        path = work / f"{name}.json"
        rc = steps.run(name, [py, "-m", "harness.bench", *args, "--out", str(path)], timeout)
        bench[name] = {"args": args, "rc": rc}
        if path.exists():
            bench[name]["figures"] = json.loads(path.read_text(encoding="utf-8"))
        (out / "bench.json").write_text(json.dumps(bench, indent=1), encoding="utf-8")

    for name, args, timeout in cfg["bench"][:2]:
        run_bench(name, args, timeout)
    steps.run("pytest_gpu", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                             "--continue-on-collection-errors", *gpu_test_files()],
              cfg["t_pytest"], log_to=out / "pytest_gpu.log")  # fmt: skip
    ways, per_seed = {}, {}
    for sweep, gpus, at_once in ((SWEEP_WHOLE, cfg["gpus_whole"], 1), (SWEEP_PACKED, cfg["gpus_packed"], PACKED)):
        seeds = cfg["seeds_whole" if at_once == 1 else "seeds_packed"]
        sets = [*cfg["sets"], f"seeds={seeds}", f"name={sweep}", f"resources.gpus={gpus}"]
        if at_once > 1 and float(gpus) > 0:  # issue 26's packing key: 1/PACKED of the GPU per trial
            sets.append(f"resources.trials_per_gpu={PACKED}")
        timeout = cfg["t_whole" if at_once == 1 else "t_packed"]
        if use_ray:
            ways[sweep] = "run_sweep.py (Ray; its cost pass ran at the sweep's end)"
            steps.run(f"sweep_{sweep}", [py, "run_sweep.py", "--store", str(store), "--no-report",
                                         *[x for s in sets for x in ("--set", s)]], timeout)  # fmt: skip
        else:
            ways[sweep] = f"without Ray: one process per trial, {at_once} at once; then the cost pass"
            share = f"1/{PACKED} of a GPU ({at_once} processes at once)" if at_once > 1 and float(gpus) > 0 else None
            t1 = time.monotonic()
            counts = rayless_sweep(
                "digits",
                sets,
                str(store),
                sweep,
                at_once,
                share,
                time.monotonic() + min(timeout, steps.left()),
                steps.write,
                cfg["max_trials"],
            )
            steps.record(
                f"sweep_{sweep}",
                f"rayless {sweep} {' '.join(sets)} -> {json.dumps(counts)}",
                0 if counts["failed"] == counts["not_started"] == 0 else 1,
                time.monotonic() - t1,
            )
            costs = [py, str(Path(__file__).resolve()), "costs", "--store", str(store), "--sweep", sweep,
                     *[x for s in sets for x in ("--set", s)]]  # fmt: skip
            if at_once > 1:  # the packed sweep's seeds, each measured alone: do they agree?
                per_seed[sweep] = work / f"costs_per_seed_{sweep}.json"
                costs += ["--per-seed-out", str(per_seed[sweep])]
            steps.run(f"costs_{sweep}", costs, cfg["t_costs"])

    run_bench(*cfg["bench"][2])  # P1/P6 last: the sweeps' figures matter more

    summary = summary_markdown(str(store), [SWEEP_WHOLE, SWEEP_PACKED], bench, steps.rows, ways,
                               device=_device_line(), rehearsal=rehearse,
                               pytest_line=pytest_summary_line(out / "pytest_gpu.log"),
                               per_seed={k: v for k, v in per_seed.items() if v.exists()})  # fmt: skip
    (out / "summary.md").write_text(summary, encoding="utf-8")
    with tarfile.open(out / "store.tar.gz", "w:gz") as tar:
        tar.add(store, arcname="store")
        for path in per_seed.values():
            if path.exists():
                tar.add(path, arcname=path.name)
    shutil.rmtree(work, ignore_errors=True)
    print(summary)
    return 0 if all(r["rc"] == 0 for r in steps.rows) else 1


def _device_line() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU, {os.cpu_count()} cores (torch {torch.__version__}; rehearsal)"


# ---------------------------------------------------------------------------------------------------------------
# the summary


def read_trials(store: str, sweep: str):
    """Return the sweep's trials rows as a DataFrame (empty when none were written)."""
    import pandas as pd

    folder = Path(store) / "trials" / f"sweep={sweep}"
    files = sorted(folder.glob("*.parquet")) if folder.exists() else []
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


def _fmt(value, digits: int | None = 3) -> str:
    """Return `value` as a table cell: "-" for null, `digits` decimals for a float (None: shortest, e.g. width 8)."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:g}" if digits is None else f"{value:.{digits}f}"
    return str(value)


TRIAL_COLUMNS = (("design_class", "class"), ("members", "k"), ("family", "family"), ("depth", "depth"),
                 ("width", "width"), ("seed", "seed"), ("status", "status"), ("final_acc", "final_acc"),
                 ("epoch_time_s_steady", "epoch_time_s_steady"), ("peak_mem_mb", "peak_mem_mb (allocator)"),
                 ("peak_mem_reserved_mb", "peak_mem_reserved_mb"), ("nvml_mem_mb", "nvml_mem_mb"),
                 ("mem_source", "mem_source"), ("latency_ms_p50", "latency_ms_p50"),
                 ("latency_interleaved_ms_p50", "latency_interleaved_ms_p50"))  # fmt: skip


# width is a float column (a width multiplier can be fractional); memory in MB to 2 decimals
DIGITS = {"width": None, "peak_mem_mb": 2, "peak_mem_reserved_mb": 2, "nvml_mem_mb": 2}


def trials_table(df) -> list[str]:
    """Return the markdown table of the trials rows (one line per trial, the columns of TRIAL_COLUMNS)."""
    if df.empty:
        return ["(no trials rows written)"]
    df = df.sort_values(["design_class", "members", "width", "depth", "seed"])
    lines = ["| " + " | ".join(h for _, h in TRIAL_COLUMNS) + " |", "|" + "---|" * len(TRIAL_COLUMNS)]
    for row in df.to_dict("records"):  # records keep each column's type (an iterrows row casts ints to float)
        cells = [_fmt(row.get(c), DIGITS.get(c, 3)) for c, _ in TRIAL_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    errors = df[df["status"] != "ok"].to_dict("records")
    lines += [f"- {r['status']}, {r['design_class']} k={r['members']} w={r['width']}: {r['error']}" for r in errors]
    return lines


def read_costs(store: str, sweep: str):
    """Return the sweep's costs rows (the cost pass's, one per design point and device) as a DataFrame."""
    import pandas as pd

    from harness.store import read_cost_rows

    return pd.DataFrame(read_cost_rows(store, sweep))


def _joined(values, digits: int) -> str:
    """Return the values as one cell: "a / b" (one per seed), "-" when there are none."""
    return " / ".join(_fmt(float(v), digits) for v in values) if len(values) else "-"


def costs_table(trials, costs) -> list[str]:
    """Return the markdown table of each design point's epoch time (s) and peak memory (MiB): the trials' in-run
    figures (one per seed, measured while neighbours ran where trials were packed) beside the cost pass's (alone)."""
    if trials.empty or costs.empty:
        return ["(no cost-pass rows)" if not trials.empty else "(no trials rows written)"]
    head = ["class", "k", "width", "depth", "epoch_time_s in-run", "epoch_time_s cost pass", "peak_mem_mb in-run",
            "peak_mem_mb cost pass", "mem_source"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ok = trials[trials["status"] == "ok"]
    for row in costs.sort_values(["design_class", "members", "width", "depth"]).to_dict("records"):
        seeds = ok[ok["point_id"] == row["point_id"]].sort_values("seed")
        cells = [row["design_class"], row["members"], _fmt(row["width"], None), row["depth"],
                 _joined(seeds["epoch_time_s_steady"].tolist(), 3), _fmt(row["epoch_time_s"]),
                 _joined(seeds["peak_mem_mb"].tolist(), 2), _fmt(row["peak_mem_mb"], 2), row["mem_source"]]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def seed_agreement_table(rows: list[dict]) -> list[str]:
    """Return the markdown table of each design point's seeds measured alone: epoch time (s) and peak memory (MiB) per
    seed, and max/min over the seeds (issue 26 asks for within 1.05)."""
    import pandas as pd

    if not rows:
        return ["(no per-seed rows)"]
    df = pd.DataFrame(rows).sort_values(["design_class", "members", "width", "depth", "seed"])
    head = ["class", "k", "width", "depth", "epoch_time_s per seed", "max/min", "peak_mem_mb per seed", "max/min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, g in df.groupby("point_id", sort=False):
        first = g.iloc[0]
        t, m = g["epoch_time_s"].astype(float), g["peak_mem_mb"].astype(float)
        cells = [first["design_class"], first["members"], _fmt(float(first["width"]), None), first["depth"],
                 _joined(t.tolist(), 4), _fmt(t.max() / t.min()), _joined(m.tolist(), 2),
                 _fmt(m.max() / m.min()) if m.min() > 0 else "-"]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def bench_lines(bench: dict) -> list[str]:
    """Return the bench's ratios as markdown: P4 fused/sequential per view kind, P5 ensemble/single per k, P1."""
    figs = {}
    for run in bench.values():
        figs.update(run.get("figures") or {})
    lines = [f"bench device: {figs.get('device_name', '-')}; runs: "
             + "; ".join(f"{k} {' '.join(v['args'])} rc {v['rc']}" for k, v in bench.items())]  # fmt: skip
    p4 = figs.get("p4_fused_vs_sequential")
    if p4:
        for kind in ("member_views", "shared_view"):
            r = p4.get(kind) or {}
            lines.append(
                f"- P4 resnet deq k=4 ({kind}): fused/sequential {_fmt(r.get('fused_over_sequential'))}, "
                f"auto ({p4.get('auto_resolves_to')})/sequential {_fmt(r.get('auto_over_sequential'))}"
            )
    else:
        lines.append("- P4: not measured")
    for r in figs.get("p5_ensemble_vs_single") or []:
        lines.append(
            f"- P5 {r['family']}-{r['depth']} budget {r['budget']}: deq k={r['members']} "
            f"({r['execution']}) ensemble/single {_fmt(r['ensemble_over_single'])} "
            f"({_fmt(r['ensemble_epoch_time_s'])} vs {_fmt(r['single_epoch_time_s'])} s/epoch)"
        )
    if not figs.get("p5_ensemble_vs_single"):
        lines.append("- P5: not measured")
    if "ratio_trial_over_bare" in figs:
        lines.append(f"- P1 trial/bare epoch time {_fmt(figs['ratio_trial_over_bare'])} (goal {figs.get('goal')}), "
                     f"A/A trial/trial {_fmt((figs.get('aa_trial') or {}).get('median'))}")  # fmt: skip
    for r in figs.get("p6_speed_options") or []:
        design = "single" if r["members"] == 1 else f"deq k={r['members']}"
        what = f"refused: {r['refused']}" if "refused" in r else f"over eager fp32 {_fmt(r.get('over_eager_fp32'))}"
        lines.append(f"- P6 {r['family']}-{r['depth']} {design} {r['variant']}: {what}")
    return lines


def pytest_summary_line(log: Path) -> str:
    """Return pytest's last summary line ("3 passed, 2 skipped in 4.1s") from its log, or "-" when there is none."""
    if not log.exists():
        return "-"
    found = [ln.strip("= ") for ln in log.read_text(encoding="utf-8").splitlines()
             if re.search(r"\b(passed|failed|skipped|error|errors|deselected|no tests ran)\b", ln)]  # fmt: skip
    return found[-1] if found else "-"


def summary_markdown(
    store: str,
    sweeps: list[str],
    bench: dict,
    step_rows: list[dict],
    ways: dict,
    device: str,
    rehearsal: bool,
    pytest_line: str = "-",
    per_seed: dict | None = None,
) -> str:
    """Return the one-page summary: the steps, per-design epoch time / memory (allocator and NVML) / latency for each
    sweep, its cost pass beside the trials' in-run figures, the seeds' agreement where `per_seed` ({sweep: path of
    `gpu_check.py costs --per-seed-out` JSON}) has it, and the bench ratios."""
    title = "GPU check (CPU rehearsal, tiny settings: no GPU figures)" if rehearsal else "GPU check"
    lines = [f"# {title}", "", f"device: {device}", "", "## Steps", "", "| step | rc | seconds |", "|---|---|---|"]
    lines += [f"| {r['step']} | {r['rc']} | {r['seconds']} |" for r in step_rows]
    lines += ["", f"pytest -m gpu: {pytest_line}"]
    for sweep in sweeps:
        lines += ["", f"## Sweep {sweep}: {ways.get(sweep, '-')}", ""]
        trials = read_trials(store, sweep)
        lines += trials_table(trials)
        lines += ["", f"### Costs of {sweep}: in-run (each seed) and cost pass (alone)", ""]
        lines += costs_table(trials, read_costs(store, sweep))
        if sweep in (per_seed or {}):
            lines += ["", f"### Seeds of {sweep}, each measured alone by the cost pass", ""]
            lines += seed_agreement_table(json.loads(Path(per_seed[sweep]).read_text(encoding="utf-8")))
    lines += ["", "## Bench ratios", ""] + bench_lines(bench)
    return "\n".join(lines) + "\n"


def check_output_folder(out: Path) -> list[str]:
    """Return what in `out` a device machine would not return (too many files, odd names, too deep); [] when fine."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = [f"{len(files)} files (at most {MAX_FILES})"] if len(files) > MAX_FILES else []
    for p in files:
        rel = p.relative_to(out)
        if not all(ALLOWED_NAME.match(part) for part in rel.parts):
            problems.append(f"{rel}: name")
        if len(rel.parts) > 3:
            problems.append(f"{rel}: deeper than 2 folders")
        if p.stat().st_size > 16 * 2**20:
            problems.append(f"{rel}: over 16 MiB")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the GPU check; return the exit status (0 without CUDA: nothing is run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["trial"]:
        return _trial_main(argv[1:])
    if argv[:1] == ["costs"]:
        return _costs_main(argv[1:])
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check_out", help="the output folder (at most 8 files); default: %(default)s")
    p.add_argument("--rehearse-on-cpu", action="store_true", help="run every step on the CPU with tiny settings")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="the whole check's time limit, s")
    p.add_argument("--no-ray", action="store_true", help="run the sweeps without Ray even when Ray is importable")
    a = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not a.rehearse_on_cpu:
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing run")
        return 0
    out = Path(a.out)
    rc = run_check(out, a.rehearse_on_cpu, a.budget_s, use_ray=ray_available() and not a.no_ray)
    problems = check_output_folder(out)
    if problems:
        print("gpu_check: the output folder would not come back whole: " + "; ".join(problems))
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
