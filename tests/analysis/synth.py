"""Synthetic results stores for the analysis tests, written in the contract's layout with pandas/pyarrow.

<store>/trials/sweep=<name>/<trial_id>.parquet (one row) and <store>/epochs/sweep=<name>/<trial_id>.parquet (one row
per epoch). Accuracy curves come from a function, so each test states the answer it expects.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

# Relative costs per class, so the figures and the advisor see plausible, distinct numbers.
LATENCY_MS = {"single": 2.0, "deq": 3.0, "weq": 2.2, "dct": 2.5}
MEM_FACTOR = {"single": 1.0, "deq": 0.8, "weq": 0.9, "dct": 0.85}


def trial_id(**identity) -> str:
    """Return a 16-hex-char id from the identity fields (like the harness, a sha1 of canonical JSON)."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def make_trial(
    design_class: str,
    budget: int,
    seed: int,
    accs: list[float],
    *,
    members: int | None = None,
    dataset: str = "digits",
    family: str = "resnet",
    fit: str = "floor",
    epochs: int | None = None,
    status: str = "ok",
    member_gap: float = 0.03,
    epoch_time_s: float | None = None,
    with_trial_row: bool = True,
    **overrides,
) -> tuple[dict | None, list[dict]]:
    """Return (trials row or None, epoch rows) for one synthetic trial whose test_acc per epoch is `accs`."""
    members = members if members is not None else (1 if design_class == "single" else 2)
    epochs = epochs if epochs is not None else len(accs)
    tid = trial_id(dc=design_class, b=budget, s=seed, m=members, d=dataset, f=family, fit=fit, o=str(overrides))
    pid = trial_id(dc=design_class, b=budget, m=members, d=dataset, f=family, fit=fit, o=str(overrides))
    identity = {
        "schema_version": 1,
        "trial_id": tid,
        "point_id": pid,
        "dataset": dataset,
        "split": "test",
        "seed": seed,
        "design_class": design_class,
        "family": family,
        "depth": 20 if design_class != "weq" else 14,
        "width": 16,
        "members": members,
        "budget": budget,
        "fit": fit,
        "epochs": epochs,
        "budget_depth": 20,
        "budget_width": 16,
    }
    ep_time = epoch_time_s if epoch_time_s is not None else 0.5 + budget / 1e5 * (1.0 if members == 1 else 0.8)
    rows, cum = [], 0.0
    for e, acc in enumerate(accs, start=1):
        cum += ep_time
        member = [acc - member_gap] * members
        rows.append(
            {
                **identity,
                "epoch": e,
                "test_acc": float(acc),
                "member_acc": member,
                "member_acc_mean": float(acc - member_gap),
                "train_loss": 1.0 / e,
                "test_loss": 1.2 / e,
                "epoch_time_s": ep_time,
                "cum_time_s": cum,
                "lr": 0.1,
                "lambda_cot": 0.0,
            }
        )
    if not with_trial_row:
        return None, rows
    params_total = int(budget * 0.98)
    finite = [a for a in accs if a == a]
    trial = {
        **identity,
        "status": status,
        "error": None if status == "ok" else f"synthetic {status}",
        "epochs_done": len(accs),
        "params_member": params_total // members,
        "params_total": params_total,
        "budget_deviation_pct": -2.0,
        "macs": params_total * 50,
        "family_args": "{}",
        "lr": 0.1,
        "weight_decay": 5e-4,
        "wd_policy": "none",
        "schedule": "cosine",
        "batch_size": 128,
        "lambda_cot": 0.5 if design_class == "dct" else 0.0,
        "member_views": design_class == "dct",
        "precision": "fp32",
        "combine": "logits",
        "execution": "sequential",
        "recipe_json": "{}",
        "final_acc": float(finite[-1]) if finite else float("nan"),
        "best_acc": float(max(finite)) if finite else float("nan"),
        "best_epoch": int(accs.index(max(finite)) + 1) if finite else 0,
        "train_time_s": cum,
        "epoch_time_s_mean": ep_time,
        "macs_fvcore": params_total * 50,
        "macs_fvcore_error": None,
        "flops_torch": params_total * 100,
        "flops_torch_error": None,
        "peak_mem_mb": 100.0 + budget / 1e4 * MEM_FACTOR[design_class],
        "peak_mem_reserved_mb": None,
        "nvml_mem_mb": None,
        "mem_source": "rss",
        "latency_ms_p50": LATENCY_MS[design_class] * (1 + budget / 1e6) * (members if design_class == "deq" else 1),
        "latency_ms_p90": 1.2 * LATENCY_MS[design_class],
        "throughput_sps": 1000.0,
        "throughput_batch": 256,
        "device_name": "cpu",
        "device_shared": False,
        "torch_version": "2.15",
        "cuda_version": None,
        "num_threads": 2,
        "hostname": "test",
        "split_id": "abc",
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:01:00Z",
    }
    trial.update(overrides)
    return trial, rows


def _write(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name)
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def write_store(root: Path, sweep: str, trials: list[tuple[dict | None, list[dict]]]) -> Path:
    """Write (trial row, epoch rows) pairs into `root` in the hive layout; return `root`."""
    for trial, rows in trials:
        tid = rows[0]["trial_id"] if rows else trial["trial_id"]
        if trial is not None:
            _write(root / "trials" / f"sweep={sweep}" / f"{tid}.parquet", pd.DataFrame([trial]))
        if rows:
            _write(root / "epochs" / f"sweep={sweep}" / f"{tid}.parquet", pd.DataFrame(rows))
    return root


def grid_trials(
    acc: Callable[[str, int, int, int], float],
    budgets: list[int],
    classes: tuple[str, ...] = ("single", "deq", "weq"),
    seeds: tuple[int, ...] = (0, 1, 2),
    epochs: int = 4,
    k: int = 2,
    **kw,
) -> list[tuple[dict | None, list[dict]]]:
    """Return synthetic trials for every class x budget x seed; test_acc at epoch e is acc(class, budget, e, seed)."""
    out = []
    for c in classes:
        for b in budgets:
            for s in seeds:
                accs = [acc(c, b, e, s) for e in range(1, epochs + 1)]
                out.append(make_trial(c, b, s, accs, members=1 if c == "single" else k, **kw))
    return out


def frames(trials: list[tuple[dict | None, list[dict]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (trials table, epochs table) DataFrames of synthetic trials, as a loader would (sweep column added)."""
    t = pd.DataFrame([tr for tr, _ in trials if tr is not None]).assign(sweep="s")
    e = pd.DataFrame([r for _, rows in trials for r in rows]).assign(sweep="s")
    return t, e


def assign(trials: pd.DataFrame) -> pd.DataFrame:
    """Return the trials rows with the EST group columns (k, role) as the report adds them."""
    from analysis.est import assign_groups

    return assign_groups(trials)[0]
