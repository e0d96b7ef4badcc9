"""What the design space needs to know about each data set: classes, channels and image size (no loading here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Shape facts of a data set as the models see it."""

    name: str
    num_classes: int
    in_chans: int
    image_size: int  # side in pixels of the (square) training input
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        # scikit-learn's bundled 8x8 digits, upsampled x2 so three CIFAR-style stages still see 4x4 at the end.
        DatasetInfo("digits", 10, 1, 16, "bundled with scikit-learn; nothing to download"),
        DatasetInfo("cifar10", 10, 3, 32, "torchvision.datasets.CIFAR10(root, download=True), or set dataset.download"),
        DatasetInfo(
            "cifar100", 100, 3, 32, "torchvision.datasets.CIFAR100(root, download=True), or set dataset.download"
        ),
        DatasetInfo(
            "svhn", 10, 3, 32, "torchvision.datasets.SVHN(root, split=..., download=True), or dataset.download"
        ),
        DatasetInfo(
            "tinyimagenet",
            200,
            3,
            64,
            "unpack tiny-imagenet-200 so that ROOT/train/<class>/ and ROOT/val/<class>/ exist",
        ),
        DatasetInfo(
            "imagenet", 1000, 3, 224, "ImageFolder layout: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG"
        ),
    )
}
