"""Pre-flight checks and the deterministic/transient split, without Ray: one line each, naming the thing and the fix."""

from __future__ import annotations

import multiprocessing
import os
import socket

import pytest

from harness.errors import DatasetMissingError, InjectedTransientError, is_deterministic
from harness.preflight import PreflightError, check_address, check_dataset
from harness.store import check_store_writable


def test_a_store_that_can_be_written_is_left_exactly_as_it_was(tmp_path):
    check_store_writable(str(tmp_path / "new" / "store"))
    assert os.listdir(tmp_path) == []
    (tmp_path / "old" / "trials").mkdir(parents=True)
    check_store_writable(str(tmp_path / "old"))
    assert sorted(os.listdir(tmp_path / "old")) == ["trials"] and os.listdir(tmp_path / "old" / "trials") == []


def _probe_together(store: str, barrier, answers) -> None:
    barrier.wait()  # both drivers' checks start at the same moment
    try:
        check_store_writable(store)
        answers.put("ok")
    except PermissionError as err:
        answers.put(str(err))


def test_two_drivers_probing_one_empty_store_together_both_pass_and_leave_it_empty(tmp_path):
    # Before: each check made the table folders and deleted them after, with the other driver's probe inside; about 9
    # in 10 of these rounds failed with "Cannot delete file .../.probe-...".
    ctx = multiprocessing.get_context("fork")
    for n in range(20):
        store, barrier, answers = str(tmp_path / f"twin{n}"), ctx.Barrier(2), ctx.Queue()
        drivers = [ctx.Process(target=_probe_together, args=(store, barrier, answers)) for _ in range(2)]
        for d in drivers:
            d.start()
        for d in drivers:
            d.join(timeout=60)
        assert [answers.get(timeout=5), answers.get(timeout=5)] == ["ok", "ok"]
    assert os.listdir(tmp_path) == []


def test_a_store_that_cannot_be_written_is_one_line_naming_the_table_folder(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(PermissionError) as err:
        check_store_writable(str(tmp_path / "afile" / "store"))
    text = str(err.value)
    assert text.startswith(f"store error: cannot write to {tmp_path}/afile/store/trials (") and "\n" not in text
    assert text.endswith("pass --store a folder you can write to, or fix its permissions")


def test_a_missing_cifar_folder_is_named_with_how_to_get_it(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        check_dataset({"name": "cifar10", "root": str(tmp_path)})
    assert str(err.value).startswith(f"cifar10 not found at {tmp_path}/cifar-10-batches-py. To get it: torchvision")


def test_cifar_with_all_its_files_passes_and_a_missing_file_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"x")
    check_dataset({"name": "cifar10", "root": str(tmp_path)})
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetMissingError, match=f"cifar10 not found at {folder}/test_batch"):
        check_dataset({"name": "cifar10", "root": str(tmp_path)})


def test_an_image_folder_set_needs_train_and_val(tmp_path):
    (tmp_path / "train" / "n01").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match=f"imagenet not found at {tmp_path}/val"):
        check_dataset({"name": "imagenet", "root": str(tmp_path)})


def test_download_needs_only_a_writable_root_and_digits_needs_nothing(tmp_path):
    check_dataset({"name": "cifar100", "root": str(tmp_path / "to-be-made"), "download": True})
    check_dataset({"name": "digits"})


def test_an_address_where_nothing_listens_is_one_line_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PreflightError) as err:
        check_address(f"127.0.0.1:{port}", source="RAY_ADDRESS", timeout_s=5)
    assert str(err.value).startswith(f"address error: nothing answers at RAY_ADDRESS=127.0.0.1:{port} (connection")


@pytest.mark.parametrize(
    "err",
    [
        DatasetMissingError("cifar10 not found at /x"),
        ValueError("unknown combiner 'x'"),
        KeyError("lr"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (64x10 and 16x10)"),
        RuntimeError("Given groups=1, weight of size [16, 3, 3, 3], expected input[64, 1, 16, 16] to have 3 channels"),
    ],
)
def test_errors_that_recur_are_deterministic(err):
    assert is_deterministic(err)


@pytest.mark.parametrize(
    "err",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        OSError("Stale file handle"),
        ConnectionError("node lost"),
        InjectedTransientError("injected failure on the first attempt (test only)"),
    ],
)
def test_errors_that_may_pass_are_transient(err):
    assert not is_deterministic(err)
