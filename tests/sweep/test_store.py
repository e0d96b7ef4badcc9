"""The results store: explicit schema, atomic files, tolerant readers, seed view (no Ray, no training)."""

from __future__ import annotations

import glob
import os
import shutil
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.store import load_epochs, load_trials, seed_view
from harness.store import (
    EPOCHS_SCHEMA,
    TRIALS_SCHEMA,
    completed_trial_ids,
    rows_from_result,
    write_trial,
)
from tests.sweep.conftest import tiny_spec


@pytest.fixture(scope="module")
def configs():
    from spaces.spec import trial_configs

    return trial_configs(tiny_spec("seeds=[0,1,2]"))  # 2 widths x 3 seeds


def fake_result(config: dict, accs=(0.5, 0.7), status="ok") -> dict:
    """Return a run_trial-shaped result with the given per-epoch accuracies (no training)."""
    members = config["design"]["members"]
    epochs = [{"kind": "epoch", "trial_id": config["trial_id"], "epoch": i + 1, "test_acc": a,
               "member_acc": [a - 0.01] * members, "member_acc_mean": a - 0.01, "train_loss": 1.0 / (i + 1),
               "test_loss": 1.5, "epoch_time_s": 2.0, "cum_time_s": 2.0 * (i + 1), "lr": 0.05, "lambda_cot": 0.0}
              for i, a in enumerate(accs)]  # fmt: skip
    final = {"kind": "final", "trial_id": config["trial_id"], "status": status, "error": None,
             "epochs_done": len(accs), "final_acc": accs[-1], "best_acc": max(accs), "best_epoch": 2,
             "train_time_s": 4.0, "params_member": [config["design"]["params_member"]] * members,
             "params_total": config["design"]["params_total"], "macs_fvcore": 1000, "macs_fvcore_error": None,
             "flops_torch": 2000, "flops_torch_error": None, "peak_mem_mb": 512.5, "peak_mem_reserved_mb": None,
             "nvml_mem_mb": None, "mem_source": "rss", "latency_ms_p50": 1.25, "latency_ms_p90": 1.5,
             "throughput_sps": 900.0, "throughput_batch": 32, "device_name": "cpu", "device_shared": False,
             "torch_version": "2.x", "cuda_version": None, "precision": "fp32", "num_threads": 1,
             "hostname": "h", "split_id": "s", "started_at": "2026-01-01T00:00:00+00:00",
             "finished_at": "2026-01-01T00:00:04Z"}  # fmt: skip
    return {"epochs": epochs, "final": final}


def write(store, config, **kw):
    row, epochs = rows_from_result(config, fake_result(config, **kw))
    return write_trial(store, "tiny", row, epochs)


def test_write_trial_puts_one_file_per_trial_in_each_table_partitioned_by_sweep(store, configs):
    path = write(store, configs[0])
    tid = configs[0]["trial_id"]
    assert path == f"{store}/trials/sweep=tiny/{tid}.parquet"
    assert os.path.exists(f"{store}/epochs/sweep=tiny/{tid}.parquet")
    assert not glob.glob(f"{store}/**/.*", recursive=True)  # no temp files left behind


def test_files_carry_the_explicit_schema(store, configs):
    write(store, configs[0])
    tid = configs[0]["trial_id"]
    assert pq.read_schema(f"{store}/trials/sweep=tiny/{tid}.parquet").equals(TRIALS_SCHEMA, check_metadata=False)
    assert pq.read_schema(f"{store}/epochs/sweep=tiny/{tid}.parquet").equals(EPOCHS_SCHEMA, check_metadata=False)


def test_pandas_reads_the_store_as_is_with_the_sweep_from_the_folder(store, configs):
    for c in configs[:2]:
        write(store, c)
    trials = pd.read_parquet(f"{store}/trials")
    epochs = pd.read_parquet(f"{store}/epochs")
    assert sorted(trials["trial_id"]) == sorted(c["trial_id"] for c in configs[:2])
    assert set(trials["sweep"].astype(str)) == {"tiny"}
    assert (trials["schema_version"] == 2).all()
    assert len(epochs) == 4 and sorted(epochs["epoch"].unique()) == [1, 2]
    assert list(epochs["member_acc"].iloc[0]) == pytest.approx([0.49])


def test_duckdb_reads_the_store_with_hive_partitioning(store, configs):
    duckdb = pytest.importorskip("duckdb")
    for c in configs[:3]:
        write(store, c)
    rows = duckdb.sql(f"select sweep, count(*) n, avg(final_acc) acc from read_parquet('{store}/trials/*/*.parquet', "
                      "hive_partitioning=true) group by sweep").fetchall()  # fmt: skip
    assert rows == [("tiny", 3, pytest.approx(0.7))]


def test_trials_row_flattens_identity_design_recipe_and_final_record(store, configs):
    c = configs[0]
    write(store, c)
    row = load_trials(store).iloc[0]
    assert row["design_class"] == c["design"]["design_class"] and row["width"] == c["design"]["width"]
    assert row["params_total"] == c["design"]["params_total"] and row["macs"] == c["design"]["macs"]
    assert row["lr"] == c["recipe"]["lr"] and row["batch_size"] == c["recipe"]["batch_size"]
    assert row["final_acc"] == 0.7 and row["best_acc"] == 0.7 and row["epoch_time_s_mean"] == 2.0
    assert row["status"] == "ok" and row["started_at"] == pd.Timestamp("2026-01-01T00:00:00Z")


def test_a_trial_without_final_record_is_an_error_row_with_the_error_text(store, configs):
    c = configs[0]
    row, epochs = rows_from_result(c, None, error="ValueError: boom")
    write_trial(store, "tiny", row, epochs)
    got = load_trials(store).iloc[0]
    assert got["status"] == "error" and got["error"] == "ValueError: boom" and pd.isna(got["final_acc"])


def test_completed_trial_ids_counts_ok_diverged_and_error_rows(store, configs):
    write(store, configs[0])
    write(store, configs[1], status="diverged")
    row, epochs = rows_from_result(configs[2], None, error="x")
    write_trial(store, "tiny", row, epochs)
    assert completed_trial_ids(store, "tiny") == {c["trial_id"] for c in configs[:3]}
    assert completed_trial_ids(store, "other") == set()


def test_readers_skip_a_truncated_file_with_a_warning_naming_it(store, configs):
    for c in configs[:3]:
        write(store, c)
    bad = f"{store}/trials/sweep=tiny/{configs[1]['trial_id']}.parquet"
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) // 2)
    with pytest.warns(UserWarning, match=configs[1]["trial_id"]):
        trials = load_trials(store)
    assert sorted(trials["trial_id"]) == sorted([configs[0]["trial_id"], configs[2]["trial_id"]])
    assert configs[1]["trial_id"] not in completed_trial_ids(store, "tiny")  # so a rerun trains it again


def test_readers_ignore_dot_files_of_writes_in_progress(store, configs):
    write(store, configs[0])
    with open(f"{store}/trials/sweep=tiny/.half-written.parquet.tmp", "wb") as f:
        f.write(b"PAR1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_trials(store)) == 1


def test_load_filters_by_sweep_and_column_values(store, configs):
    for c in configs:
        write(store, c)
    row, epochs = rows_from_result(configs[0], fake_result(configs[0]))
    write_trial(store, "other", row, epochs)
    assert len(load_trials(store)) == 7 and len(load_trials(store, sweep="other")) == 1
    assert set(load_trials(store, sweep="tiny", seed=[0, 1])["seed"]) == {0, 1}
    assert len(load_epochs(store, sweep="tiny", epoch=2)) == 6


def test_seed_view_averages_over_seeds_per_design_point_and_epoch(store, configs):
    by_seed = {0: (0.5, 0.6), 1: (0.6, 0.8), 2: (0.7, 1.0)}
    for c in configs:
        write(store, c, accs=by_seed[c["seed"]])
    view = seed_view(load_epochs(store))
    assert len(view) == 2 * 2  # 2 design points x 2 epochs
    last = view[view["epoch"] == 2].iloc[0]
    assert last["n_seeds"] == 3 and last["test_acc_count"] == 3
    assert last["test_acc_mean"] == pytest.approx(0.8) and last["test_acc_std"] == pytest.approx(0.2)
    points = seed_view(load_trials(store), metrics=["final_acc"])
    assert len(points) == 2 and list(points["final_acc_mean"]) == pytest.approx([0.8, 0.8])


@pytest.fixture(scope="module")
def real_width_configs():
    """Trial configs of the digits preset's deq designs with real member widths (width_granularity = "channel")."""
    from spaces.spec import trial_configs

    return trial_configs(tiny_spec('classes=["deq"]', "width_granularity=channel"))


def test_a_real_member_width_is_stored_as_it_was_designed(store, real_width_configs):
    config = next(c for c in real_width_configs if c["design"]["width"] != int(c["design"]["width"]))
    write(store, config)
    assert load_trials(store).iloc[0]["width"] == config["design"]["width"]


def test_files_of_schema_1_with_integer_widths_read_beside_real_widths_as_doubles(store, configs, real_width_configs):
    old = configs[0]
    row, epochs = rows_from_result(old, fake_result(old))
    write_trial(store, "tiny", row, epochs)
    path = f"{store}/trials/sweep=tiny/{old['trial_id']}.parquet"
    table = pq.read_table(path)
    schema_1 = table.schema.set(table.schema.get_field_index("width"), pa.field("width", pa.int64()))
    pq.write_table(table.cast(schema_1), path)  # what a schema-1 writer left: width as int64
    real = next(c for c in real_width_configs if c["design"]["width"] != int(c["design"]["width"]))
    write(store, real)
    widths = load_trials(store).set_index("trial_id")["width"]
    assert widths.dtype == "float64"
    assert widths[old["trial_id"]] == old["design"]["width"] and widths[real["trial_id"]] == real["design"]["width"]


def test_a_trials_work_folder_is_removed_with_those_its_killed_runs_left_but_not_a_live_runs(tmp_path):
    import subprocess
    import sys

    from harness.store import trial_work_dir

    store = str(tmp_path / "store")
    with trial_work_dir(store, "t0000000000000001", rank=1) as work:
        prefix = work.rsplit("-pid", 1)[0]
    assert not os.path.exists(work)  # removed on the way out
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, live = f"{prefix}-pid{int(gone.stdout)}", f"{prefix}-pid{os.getppid()}"  # a killed run's, a live one's
    for folder in (dead, live):
        os.makedirs(os.path.join(folder, "sub"))
    other_rank = prefix.replace("-rank1", "-rank0") + f"-pid{int(gone.stdout)}"
    os.makedirs(other_rank)
    try:
        with trial_work_dir(store, "t0000000000000001", rank=1) as work:
            assert os.path.isdir(work) and os.listdir(work) == []
            assert not os.path.exists(dead) and os.path.isdir(live) and os.path.isdir(other_rank)
        with trial_work_dir(str(tmp_path / "other"), "t0000000000000001", rank=1) as elsewhere:
            assert elsewhere.rsplit("-pid", 1)[0] != prefix  # another store's trial of the same id: its own folder
    finally:
        for folder in (live, other_rank):
            shutil.rmtree(folder, ignore_errors=True)
