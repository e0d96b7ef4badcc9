"""The GPU check (scripts/gpu_check.py): its no-CUDA path, its Ray-less sweep and summary from a real store, and an
output folder a device machine returns whole."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

SWEEP = "rehearsal"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real store: the first 2 trials of the digits spec (2 epochs, one seed), 2 processes at once, no Ray."""
    root = tmp_path_factory.mktemp("gpu_check") / "store"
    logged = []
    counts = gpu_check.rayless_sweep(
        "digits", ["epochs=2", "seeds=[0]", f"name={SWEEP}", "resources.gpus=0"], str(root), SWEEP, 2, None,
        time.monotonic() + 300, logged.append, max_trials=2,
    )  # fmt: skip
    return {"root": str(root), "counts": counts, "log": "".join(logged)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path")
def test_without_cuda_the_check_says_so_in_one_line_exits_0_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing run"
    ]
    assert not out.exists()


def test_rayless_sweep_runs_each_trial_in_its_process_and_writes_its_row(store):
    assert store["counts"]["trials"] == 2 and store["counts"]["ok"] == 2 and store["counts"]["failed"] == 0
    df = gpu_check.read_trials(store["root"], SWEEP)
    assert sorted(df["design_class"]) == ["deq", "single"]
    assert set(df["status"]) == {"ok"} and (df["epochs_done"] == 2).all()
    assert store["log"].count("rc=0") == 2


def test_summary_lists_each_trial_with_its_epoch_time_memory_and_latency_from_the_store(store):
    df = gpu_check.read_trials(store["root"], SWEEP)
    text = gpu_check.summary_markdown(store["root"], [SWEEP], {}, [], {SWEEP: "without Ray"}, "CPU", rehearsal=True)
    single = df[df["design_class"] == "single"].iloc[0]
    line = next(ln for ln in text.splitlines() if ln.startswith("| single | 1 | resnet | 14 | 8 | 0 | ok |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = [h for _, h in gpu_check.TRIAL_COLUMNS]
    assert float(cells[header.index("epoch_time_s_steady")]) == pytest.approx(single["epoch_time_s_steady"], abs=5e-4)
    mem = cells[header.index("peak_mem_mb (allocator)")]
    assert mem == ("-" if single["peak_mem_mb"] is None else f"{single['peak_mem_mb']:.2f}")
    assert cells[header.index("nvml_mem_mb")] == "-"  # no NVML on a CPU: null, never a made-up reading
    assert float(cells[header.index("latency_ms_p50")]) == pytest.approx(single["latency_ms_p50"], abs=5e-4)
    assert "CPU rehearsal" in text and "## Sweep rehearsal: without Ray" in text


def test_summary_quotes_the_bench_ratios_p4_fused_over_sequential_and_p5_ensemble_over_single():
    # bench.json's shape as harness.bench writes it (figures made up for the test: no GPU here)
    figures = {
        "device_name": "NVIDIA H100 80GB HBM3",
        "p4_fused_vs_sequential": {"auto_resolves_to": "fused",
                                   "member_views": {"fused_over_sequential": 0.41, "auto_over_sequential": 0.42},
                                   "shared_view": {"fused_over_sequential": 0.38, "auto_over_sequential": 0.39}},
        "p5_ensemble_vs_single": [{"family": "resnet", "depth": 14, "budget": 175000, "members": 4, "execution":
                                   "fused", "ensemble_over_single": 1.25, "ensemble_epoch_time_s": 0.5,
                                   "single_epoch_time_s": 0.4}],
    }  # fmt: skip
    lines = gpu_check.bench_lines({"bench_main": {"args": ["--parts", "p4,p5"], "rc": 0, "figures": figures}})
    assert "- P4 resnet deq k=4 (member_views): fused/sequential 0.410, auto (fused)/sequential 0.420" in lines
    assert any(ln.startswith("- P5 resnet-14 budget 175000: deq k=4 (fused) ensemble/single 1.250") for ln in lines)
    assert lines[0].startswith("bench device: NVIDIA H100 80GB HBM3")


def test_summary_says_a_part_was_not_measured_when_the_bench_timed_out():
    lines = gpu_check.bench_lines({"bench_main": {"args": ["--parts", "p4,p5"], "rc": 124}})
    assert "- P4: not measured" in lines and "- P5: not measured" in lines


def test_the_checks_output_files_are_few_and_plainly_named_so_they_all_come_back(tmp_path):
    assert len(gpu_check.OUTPUT_FILES) <= gpu_check.MAX_FILES
    for name in gpu_check.OUTPUT_FILES:
        (tmp_path / name).write_text("x")
    assert gpu_check.check_output_folder(tmp_path) == []
    (tmp_path / "extra one.txt").write_text("x")
    (tmp_path / "more.txt").write_text("x")
    problems = gpu_check.check_output_folder(tmp_path)
    assert problems[0] == "9 files (at most 8)" and "extra one.txt: name" in problems


def test_pytest_summary_line_is_read_from_the_log(tmp_path):
    log = tmp_path / "pytest_gpu.log"
    log.write_text("...\n===== 12 passed, 3 skipped, 400 deselected in 41.2s =====\n")
    assert gpu_check.pytest_summary_line(log) == "12 passed, 3 skipped, 400 deselected in 41.2s"


def test_a_step_past_its_timeout_is_killed_with_its_children_and_recorded_as_124(tmp_path):
    steps = gpu_check.Steps(tmp_path, budget_s=60)
    # the step starts a grandchild that holds the output pipe: only killing the group ends the step in time
    child = ("import subprocess, sys, time; "
             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")  # fmt: skip
    rc = steps.run("sleeper", [sys.executable, "-c", child], timeout_s=6)
    assert rc == 124 and steps.rows[-1]["rc"] == 124 and steps.rows[-1]["seconds"] < 30
    assert "its process group was killed" in (tmp_path / "steps.log").read_text()
    assert (tmp_path / "steps.tsv").read_text().splitlines()[1].startswith("sleeper\t124\t")


@pytest.fixture(scope="module")
def costed(store, tmp_path_factory):
    """The store after the check's `costs` step: its cost pass, and each seed's network measured alone (JSON)."""
    per_seed = tmp_path_factory.mktemp("gpu_check_costs") / "per_seed.json"
    sets = ["epochs=2", "seeds=[0]", f"name={SWEEP}", "resources.gpus=0"]
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "costs", "--store", store["root"], "--sweep", SWEEP,
           "--per-seed-out", str(per_seed), *[x for s in sets for x in ("--set", s)]]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return {"stdout": done.stdout, "per_seed": per_seed}


def test_the_costs_step_measures_each_design_point_alone_and_each_seed_apart(store, costed):
    costs = gpu_check.read_costs(store["root"], SWEEP)
    trials = gpu_check.read_trials(store["root"], SWEEP)
    assert sorted(costs["point_id"]) == sorted(trials["point_id"])  # one row per design point
    assert (costs["epoch_time_s"] > 0).all() and (costs["peak_mem_mb"] > 0).all()
    assert "cost pass: 2 design points measured" in costed["stdout"]
    rows = __import__("json").loads(costed["per_seed"].read_text())
    assert sorted(r["trial_id"] for r in rows) == sorted(trials["trial_id"])
    assert all(r["epoch_time_s"] > 0 and r["peak_mem_mb"] > 0 and r["mem_source"] == "rss" for r in rows)


def test_summary_shows_each_points_cost_pass_beside_its_in_run_figures_and_the_seeds_agreement(store, costed):
    text = gpu_check.summary_markdown(store["root"], [SWEEP], {}, [], {SWEEP: "without Ray"}, "CPU", rehearsal=True,
                                      per_seed={SWEEP: costed["per_seed"]})  # fmt: skip
    costs = gpu_check.read_costs(store["root"], SWEEP)
    single = costs[costs["design_class"] == "single"].iloc[0]
    section = text.split("### Costs of rehearsal")[1]
    line = next(ln for ln in section.splitlines() if ln.startswith("| single | 1 | 8 | 14 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[5]) == pytest.approx(single["epoch_time_s"], abs=5e-4)  # the cost pass's epoch time, s
    assert float(cells[7]) == pytest.approx(single["peak_mem_mb"], abs=5e-3) and cells[8] == "rss"
    assert "### Seeds of rehearsal, each measured alone by the cost pass" in text


def test_seed_agreement_is_max_over_min_of_the_seeds_of_each_point():
    rows = [{"point_id": "p", "design_class": "deq", "members": 2, "width": 5.62, "depth": 14, "seed": s,
             "epoch_time_s": t, "peak_mem_mb": m} for s, t, m in ((0, 1.0, 40.0), (1, 1.04, 41.0))]  # fmt: skip
    (line,) = gpu_check.seed_agreement_table(rows)[2:]
    assert line == "| deq | 2 | 5.62 | 14 | 1.0000 / 1.0400 | 1.040 | 40.00 / 41.00 | 1.025 |"
