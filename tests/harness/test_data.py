"""Data loading: the digits split and clear errors for missing data sets."""

from __future__ import annotations

import os

import pytest
import torch

from harness.data import DatasetMissingError, load_data

DIGITS = {"name": "digits", "root": "", "download": False, "test_fraction": 0.25, "split_seed": 0, "image_size": 16}


def test_digits_split_is_stratified_scaled_and_upsampled():
    data = load_data(DIGITS)
    assert data.train_x.shape == (1347, 1, 16, 16) and data.test_x.shape == (450, 1, 16, 16)
    assert data.train_x.min() >= 0.0 and data.train_x.max() <= 1.0
    counts = torch.bincount(data.test_y, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # ~45 per class: stratified
    # Test pixels are normalized with the train statistics, so they are about zero-mean, unit-variance.
    assert abs(data.test_x.mean().item()) < 0.1 and abs(data.test_x.std().item() - 1) < 0.1


def test_split_id_depends_on_the_split_seed_only():
    assert load_data(DIGITS).split_id == load_data(DIGITS).split_id
    assert load_data({**DIGITS, "split_seed": 1}).split_id != load_data(DIGITS).split_id


def test_missing_cifar_root_names_the_expected_path_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        load_data({"name": "cifar10", "root": str(tmp_path), "download": False})
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert "download" in str(err.value)


def test_relative_root_is_resolved_to_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetMissingError) as err:
        load_data({"name": "imagenet", "root": "data/imagenet", "download": False, "image_size": 224})
    assert os.path.join(str(tmp_path), "data", "imagenet", "train") in str(err.value)
