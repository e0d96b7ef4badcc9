"""Exact parameter counts and forward MACs, from instantiated models on the `meta` device (no memory used)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from spaces.families import create_model


class _SkipMetaInit(TorchFunctionMode):
    """Turn in-place initialisers on meta tensors into no-ops: meta tensors hold no values, and torch's
    Python reference implementations of normal_/uniform_ on meta cost milliseconds per layer."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("_") and args and getattr(args[0], "is_meta", False):
            return args[0]
        return func(*args, **(kwargs or {}))


def _meta_model(family: str, depth: int, width: int, num_classes: int, in_chans: int, options: tuple):
    with torch.device("meta"), _SkipMetaInit():
        return create_model(family, depth, width, num_classes=num_classes, in_chans=in_chans, **dict(options))


def _frozen(options: dict) -> tuple:
    return tuple(sorted(options.items()))


@lru_cache(maxsize=65536)
def _count(family: str, depth: int, width: int, num_classes: int, in_chans: int, options: tuple) -> int:
    model = _meta_model(family, depth, width, num_classes, in_chans, options)
    return sum(p.numel() for p in model.parameters())


def count_params(
    family: str, depth: int, width: int, num_classes: int, in_chans: int = 3, options: dict | None = None
) -> int:
    """Return the exact number of parameters (a count) of one model, cached per configuration."""
    return _count(family, depth, width, num_classes, in_chans, _frozen(options or {}))


@lru_cache(maxsize=4096)
def _macs(family: str, depth: int, width: int, num_classes: int, in_chans: int, image_size: int, options: tuple) -> int:
    # Meta kernels run in Python and are slower than a real CPU forward, so the meta model gets uninitialised CPU
    # storage (values are irrelevant to the count) and runs one real batch-1 forward.
    model = _meta_model(family, depth, width, num_classes, in_chans, options).eval().to_empty(device="cpu")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_chans, image_size, image_size))
    return counter.get_total_flops() // 2


def forward_macs(
    family: str, depth: int, width: int, num_classes: int, in_chans: int, image_size: int, options: dict | None = None
) -> int:
    """Return forward multiply-accumulates per sample (torch FlopCounterMode FLOPs / 2) of one model."""
    return _macs(family, depth, width, num_classes, in_chans, image_size, _frozen(options or {}))
