"""Data loading: the digits split and clear errors for missing data sets."""

from __future__ import annotations

import os

import numpy as np
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


def _tiny_image_folder(root, size=40):
    """Write a 2-class ImageFolder (train: 4 images per class, val: 1) of random RGB images; return root."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, count in (("train", 4), ("val", 1)):
        for cls in ("n01", "n02"):
            (root / part / cls).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / part / cls / f"{i}.png")
    return root


def test_folder_data_applies_autoaugment_and_random_erasing_in_the_loader_workers(tmp_path):
    import torchvision.transforms.v2 as T

    root = _tiny_image_folder(tmp_path / "imagenet")
    augment = {"autoaugment": True, "randaugment": False, "random_erasing": 1.0}
    dataset = {"name": "imagenet", "root": str(root), "image_size": 32, "workers": 1}
    data = load_data(dataset, member_views=2, batch_size=4, eval_batch_size=2, augment=augment)
    steps = data.train_loader.dataset.transform.transform.transforms
    policy = next(t for t in steps if isinstance(t, T.AutoAugment))
    assert policy.policy == T.AutoAugmentPolicy.IMAGENET
    views, labels = next(iter(data.train_loader))  # drawn by a worker process
    assert [v.shape for v in views] == [(4, 3, 32, 32)] * 2 and labels.shape == (4,)
    # p = 1: every image has an erased patch, zeros after normalization (random pixels are never exactly the mean).
    assert all(bool((v[i] == 0).all(0).any()) for v in views for i in range(4))


def test_folder_data_without_augmentations_has_no_policy_and_no_erasing(tmp_path):
    import torchvision.transforms.v2 as T

    root = _tiny_image_folder(tmp_path / "imagenet")
    data = load_data({"name": "imagenet", "root": str(root), "image_size": 32, "workers": 0}, batch_size=4)
    steps = data.train_loader.dataset.transform.transform.transforms
    assert not any(isinstance(t, T.AutoAugment | T.RandAugment | T.RandomErasing) for t in steps)
