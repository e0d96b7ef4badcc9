"""The store on failure paths: error rows never erase measurements, unreadable files make their trial run again,
a store that cannot be listed says so (no Ray, no training)."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import pytest

from analysis.store import load_epochs, load_trials
from harness.store import (
    StoreListingError,
    rows_from_result,
    scan_sweep,
    set_aside,
    store_path,
    write_error_row,
    write_trial,
)
from tests.sweep.conftest import tiny_spec
from tests.sweep.test_store import fake_result, write


@pytest.fixture(scope="module")
def configs():
    from spaces.spec import trial_configs

    return trial_configs(tiny_spec())  # two widths


def test_an_error_row_leaves_the_trials_epoch_rows_in_place(store, configs):
    config = configs[0]
    write(store, config)  # the trial trained: epochs file and trials row
    epochs_file = store_path(store, "epochs", "tiny", config["trial_id"])
    before = Path(epochs_file).read_bytes()
    row, _ = rows_from_result(config, None, error="OSError: [Errno 30] Read-only file system")
    write_error_row(store, "tiny", row)
    assert Path(epochs_file).read_bytes() == before
    assert list(load_epochs(store, sweep="tiny")["epoch"]) == [1, 2]
    assert load_trials(store, sweep="tiny").iloc[0]["status"] == "error"


class FailedTrial:
    """What Tune hands `SweepProgress.on_trial_error`: a trial's config, last result and error (Tune's Trial has
    these attributes; a real one needs a running experiment)."""

    def __init__(self, config):
        self.config, self.last_result, self.num_failures, self.error_file = {"trial": config}, {"epoch": 2}, 3, None

    def get_error(self):
        return OSError("trials row could not be written")


def test_the_sweeps_error_path_records_the_failure_without_touching_the_epoch_rows(store, configs):
    from harness.sweep import SweepProgress

    config = configs[0]
    row, epochs = rows_from_result(config, fake_result(config))
    write_trial(store, "tiny", row, epochs)
    os.remove(store_path(store, "trials", "tiny", config["trial_id"]))  # as when the trials row failed to write
    SweepProgress(store, "tiny", total=1, skipped=0, enabled=False).on_trial_error(0, [], FailedTrial(config))
    assert list(load_epochs(store, sweep="tiny")["epoch"]) == [1, 2]
    got = load_trials(store, sweep="tiny").iloc[0]
    assert got["status"] == "error" and got["epochs_done"] == 2 and "could not be written" in got["error"]


def test_a_trial_whose_epochs_file_does_not_read_is_not_done_and_the_file_is_named(store, configs):
    for config in configs[:2]:
        write(store, config)
    bad = store_path(store, "epochs", "tiny", configs[1]["trial_id"])
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) // 2)
    scan = scan_sweep(store, "tiny")
    assert scan.done() == {configs[0]["trial_id"]}
    assert [path for path, _ in scan.broken[configs[1]["trial_id"]]] == [bad]


def test_an_ok_trials_row_without_its_epochs_file_is_not_done(store, configs):
    write(store, configs[0])
    os.remove(store_path(store, "epochs", "tiny", configs[0]["trial_id"]))
    assert scan_sweep(store, "tiny").done() == set()


def test_a_file_set_aside_is_hidden_from_the_tables_readers(store, configs):
    for config in configs[:2]:
        write(store, config)
    bad = store_path(store, "epochs", "tiny", configs[1]["trial_id"])
    with open(bad, "r+b") as f:
        f.truncate(10)
    new = set_aside(store, bad)
    assert os.path.basename(new).startswith(".") and os.path.exists(new) and not os.path.exists(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipping unreadable file" any more
        assert set(load_epochs(store, sweep="tiny")["trial_id"]) == {configs[0]["trial_id"]}


def test_a_store_that_cannot_be_listed_raises_instead_of_looking_empty(monkeypatch):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(StoreListingError, match=r"store error: cannot list bucket/store/trials/sweep=tiny: .*"):
        scan_sweep(f"s3://bucket/store?endpoint_override=127.0.0.1:{port}&scheme=http", "tiny")
