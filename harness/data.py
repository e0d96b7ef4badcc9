"""Data for one trial: a fixed train/test split, held on the training device where it is small.

Small-image sets (digits, CIFAR-10/100, SVHN) are loaded once into tensors on the training device: `train_x` holds
*raw* pixels (uint8 0..255 for CIFAR/SVHN, float 0..1 for digits) so that the augmentations in `harness.views` run
on whole batches on the device; `normalize` (train-set mean/std per channel) is applied after augmentation, and
`test_x` is stored already normalized. ImageFolder-style sets (Tiny ImageNet, ImageNet) are too big for that: they
come through a `DataLoader` with the standard ImageNet transforms, applied per sample in worker processes; the
recipe's AutoAugment (ImageNet policy), RandAugment and RandomErasing are applied there too.

Nothing is downloaded unless `dataset.download` is true; a missing data set raises `DatasetMissingError` naming the
path it looked at and how to get the data.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import DatasetMissingError  # defined torch-free, for the pre-flight
from spaces.datasets import DATASETS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TrialData:
    """A train/test split ready for training.

    For tensor data (`loader is False`): `train_x` raw pixels (N, C, H, W) on the device (uint8 or float in [0, 1]),
    `train_y` int64 labels, `test_x` normalized float32, `test_y`. For folder data: `train_loader`/`test_loader`
    yield normalized float batches (the train loader yields a list of views per batch, see `harness.views`).
    `mean`/`std` are per-channel statistics of the training pixels in [0, 1] units, shape (1, C, 1, 1).
    `split_id` is a short hash that identifies the split (which samples are test, and the sizes).
    """

    name: str
    num_classes: int
    in_chans: int
    image_size: int
    split_id: str
    mean: torch.Tensor
    std: torch.Tensor
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    train_loader: object | None = None
    test_loader: object | None = None

    @property
    def loader(self) -> bool:
        """Return True when batches come from DataLoaders (folder data) rather than device tensors."""
        return self.train_loader is not None

    @property
    def num_train(self) -> int:
        """Return the number of training samples."""
        return len(self.train_y) if self.train_y is not None else len(self.train_loader.dataset)

    @property
    def num_test(self) -> int:
        """Return the number of test samples."""
        return len(self.test_y) if self.test_y is not None else len(self.test_loader.dataset)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Return raw pixels (uint8 0..255 or float 0..1) as float32 normalized with the train mean/std."""
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std


def resolve_root(root: str) -> str:
    """Return `root` as an absolute path (Ray changes the working directory of trials, so resolve early)."""
    return os.path.abspath(os.path.expanduser(root)) if root else ""


def split_hash(*parts: object) -> str:
    """Return a 12-hex-character sha1 over the text of `parts` (the identity of a split)."""
    h = hashlib.sha1()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()[:12]


def load_data(
    dataset: dict,
    device: torch.device | str = "cpu",
    member_views: int = 1,
    batch_size: int = 128,
    eval_batch_size: int = 512,
    augment: dict | None = None,
) -> TrialData:
    """Return the `TrialData` for the config's `dataset` section, tensors on `device`.

    `member_views`, the batch sizes and `augment` (the recipe's `autoaugment`, `randaugment` and `random_erasing`)
    are only used by folder data, whose loaders augment and batch per sample and must produce one view per member
    per sample; tensor data is augmented on the device by `harness.views`.
    """
    name = dataset["name"]
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    root = resolve_root(dataset.get("root", ""))
    if name == "digits":
        return _load_digits(dataset, torch.device(device))
    if name in ("cifar10", "cifar100", "svhn"):
        return _load_torchvision_small(name, root, bool(dataset.get("download", False)), torch.device(device))
    return _load_image_folder(dataset, root, member_views, batch_size, eval_batch_size, augment or {})


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (shape (1, C, 1, 1), float32, [0, 1] pixel units) of raw pixels x (N, C, H, W)."""
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    xf = x.double() / scale
    mean = xf.mean(dim=(0, 2, 3), keepdim=True)
    std = xf.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return mean.float(), std.float()


def _load_digits(dataset: dict, device: torch.device) -> TrialData:
    """scikit-learn's 8x8 digits (0..16): stratified seeded split, scaled to [0, 1], bilinearly upsampled."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=dataset["test_fraction"], random_state=dataset["split_seed"], stratify=labels
    )
    size = int(dataset["image_size"])

    def tensor(idx: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images[idx]).unsqueeze(1)
        if size != x.shape[-1]:
            # Bilinear interpolation is a convex combination of pixels, so values stay in [0, 1].
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x.contiguous()

    train_x, test_x = tensor(train_idx), tensor(test_idx)
    mean, std = _channel_stats(train_x)
    split_id = split_hash("digits", sorted(test_idx.tolist()), len(train_idx), len(test_idx))
    data = TrialData(
        name="digits",
        num_classes=10,
        in_chans=1,
        image_size=size,
        split_id=split_id,
        mean=mean.to(device),
        std=std.to(device),
        train_x=train_x.to(device),
        train_y=torch.from_numpy(labels[train_idx]).to(device),
        test_y=torch.from_numpy(labels[test_idx]).to(device),
    )
    data.test_x = data.normalize(test_x.to(device))
    return data


def _missing(name: str, path: str, err: Exception | None = None) -> DatasetMissingError:
    how = DATASETS[name].how_to_get
    detail = f" ({err})" if err else ""
    return DatasetMissingError(
        f"{name} not found at {path}{detail}. To get it: {how}; or set dataset.root to the folder that holds it."
    )


def _load_torchvision_small(name: str, root: str, download: bool, device: torch.device) -> TrialData:
    """CIFAR-10/100 or SVHN from torchvision's on-disk format under `root` (official train/test split), as uint8."""
    import torchvision.datasets as tvd

    if not root:
        raise DatasetMissingError(f"{name} needs dataset.root (a local folder); to get it: {DATASETS[name].how_to_get}")
    expected = {
        "cifar10": os.path.join(root, "cifar-10-batches-py"),
        "cifar100": os.path.join(root, "cifar-100-python"),
        "svhn": os.path.join(root, "train_32x32.mat"),
    }[name]
    if not download and not os.path.exists(expected):
        raise _missing(name, expected)
    try:
        if name == "svhn":
            train, test = (tvd.SVHN(root, split=s, download=download) for s in ("train", "test"))
            # SVHN stores (N, C, H, W) uint8 and `.labels`.
            xs = [torch.from_numpy(np.asarray(d.data)) for d in (train, test)]
            ys = [torch.as_tensor(np.asarray(d.labels), dtype=torch.int64) for d in (train, test)]
        else:
            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            train, test = (cls(root, train=t, download=download) for t in (True, False))
            xs = [torch.from_numpy(np.asarray(d.data)).permute(0, 3, 1, 2).contiguous() for d in (train, test)]
            ys = [torch.as_tensor(d.targets, dtype=torch.int64) for d in (train, test)]
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise _missing(name, expected, err) from err
    info = DATASETS[name]
    mean, std = _channel_stats(xs[0])
    data = TrialData(
        name=name,
        num_classes=info.num_classes,
        in_chans=3,
        image_size=xs[0].shape[-1],
        split_id=split_hash(name, "official", len(ys[0]), len(ys[1])),
        mean=mean.to(device),
        std=std.to(device),
        train_x=xs[0].to(device),
        train_y=ys[0].to(device),
        test_y=ys[1].to(device),
    )
    data.test_x = torch.cat([data.normalize(c.to(device)) for c in xs[1].split(4096)])
    return data


class MultiView:
    """Apply a per-sample transform `views` times and return the list (one view per ensemble member)."""

    def __init__(self, transform, views: int):
        self.transform, self.views = transform, views

    def __call__(self, img):
        return [self.transform(img) for _ in range(self.views)]


def train_transform_folder(size: int, augment: dict):
    """Return the per-sample training transform of folder data: RandomResizedCrop(size) + horizontal flip, then
    AutoAugment (ImageNet policy) or RandAugment when `augment` asks, tensor + ImageNet normalization, then
    RandomErasing with probability `augment["random_erasing"]` as the DCT reference does on ImageNet (area 5-12%,
    aspect ratio 0.5-1.5, zero fill after normalization)."""
    import torchvision.transforms.v2 as T

    steps = [T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip()]
    if augment.get("autoaugment"):
        steps.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
    elif augment.get("randaugment"):
        steps.append(T.RandAugment())
    steps += [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if augment.get("random_erasing", 0) > 0:
        steps.append(T.RandomErasing(p=augment["random_erasing"], scale=(0.05, 0.12), ratio=(0.5, 1.5), value=0))
    return T.Compose(steps)


def _load_image_folder(
    dataset: dict, root: str, member_views: int, batch_size: int, eval_batch_size: int, augment: dict
) -> TrialData:
    """ImageFolder data from root/train and root/val, transformed per sample in the loader's workers.

    Train: `train_transform_folder` (crop, flip and the recipe's augmentations); test: Resize(image_size / 0.875) +
    CenterCrop. The member views are drawn here (per sample) because these images never sit on the device as one
    tensor.
    """
    import torchvision.datasets as tvd
    import torchvision.transforms.v2 as T

    name, size = dataset["name"], int(dataset["image_size"])
    for part in ("train", "val"):
        if not os.path.isdir(os.path.join(root, part)):
            raise _missing(name, os.path.join(root, part))
    norm = [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf = train_transform_folder(size, augment)
    test_tf = T.Compose([T.Resize(int(round(size / 0.875)), antialias=True), T.CenterCrop(size), *norm])
    train = tvd.ImageFolder(os.path.join(root, "train"), transform=MultiView(train_tf, max(1, member_views)))
    test = tvd.ImageFolder(os.path.join(root, "val"), transform=test_tf)
    workers = min(8, os.cpu_count() or 1)
    generator = torch.Generator().manual_seed(int(dataset.get("split_seed", 0)))
    common = {"num_workers": workers, "pin_memory": torch.cuda.is_available(), "persistent_workers": workers > 0}
    train_loader = torch.utils.data.DataLoader(
        train, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator, **common
    )
    test_loader = torch.utils.data.DataLoader(test, batch_size=eval_batch_size, shuffle=False, **common)
    test_files = sorted(os.path.relpath(p, root) for p, _ in test.samples)
    shape = (1, 3, 1, 1)
    return TrialData(
        name=name,
        num_classes=len(train.classes),
        in_chans=3,
        image_size=size,
        split_id=split_hash(name, test_files, len(train), len(test)),
        mean=torch.tensor(IMAGENET_MEAN).view(shape),
        std=torch.tensor(IMAGENET_STD).view(shape),
        train_loader=train_loader,
        test_loader=test_loader,
    )


def test_batches(data: TrialData, batch_size: int, device: torch.device):
    """Yield normalized (inputs, labels) test batches in a fixed order."""
    if data.loader:
        for x, y in data.test_loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return
    for start in range(0, data.num_test, batch_size):
        yield data.test_x[start : start + batch_size], data.test_y[start : start + batch_size]
