"""Exact parameter counts and forward MACs, from instantiated models on the `meta` device (no memory used)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from spaces.families import create_model, get_family


class _SkipMetaInit(TorchFunctionMode):
    """Turn in-place initialisers on meta tensors into no-ops: meta tensors hold no values, and torch's
    Python reference implementations of normal_/uniform_ on meta cost milliseconds per layer."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("_") and args and getattr(args[0], "is_meta", False):
            return args[0]
        return func(*args, **(kwargs or {}))


@lru_cache(maxsize=512)
def _meta_model(family: str, depth: int, width: int, num_classes: int, in_chans: int, options: tuple):
    # Cached: the member a fit picks was already built during the search, and its MAC count reuses that build.
    # Meta models hold no storage, only module objects.
    with torch.device("meta"), _SkipMetaInit():
        return create_model(family, depth, width, num_classes=num_classes, in_chans=in_chans, **dict(options))


def _frozen(options: dict) -> tuple:
    return tuple(sorted(options.items()))


def _built_count(family: str, depth: int, width: float, num_classes: int, in_chans: int, options: tuple) -> int:
    model = _meta_model(family, depth, width, num_classes, in_chans, options)
    return sum(p.numel() for p in model.parameters())


@lru_cache(maxsize=65536)
def _count(family: str, depth: int, width: float, num_classes: int, in_chans: int, options: tuple) -> int:
    fam = get_family(family)
    if fam.param_count is not None:  # the family's count from the builder's arguments: the same number, no build
        merged = {**fam.options, **dict(options)}
        return fam.param_count(depth, width, num_classes=num_classes, in_chans=in_chans, **merged)
    return _built_count(family, depth, width, num_classes, in_chans, options)


def built_count(family: str, depth: int, width: float, num_classes: int, in_chans: int = 3,
                options: dict | None = None) -> int:  # fmt: skip
    """Return the number of parameters of the model built (on the meta device), ignoring a family's `param_count`: what
    that count must equal."""
    return _built_count(family, depth, width, num_classes, in_chans, _frozen(options or {}))


def count_params(
    family: str, depth: int, width: int, num_classes: int, in_chans: int = 3, options: dict | None = None
) -> int:
    """Return the exact number of parameters (a count) of one model, cached per configuration."""
    return _count(family, depth, width, num_classes, in_chans, _frozen(options or {}))


# Functions whose output has the shape of their first argument. Their meta kernels are Python references costing
# milliseconds per call, and a shape-only forward needs none of their work.
_SHAPE_PRESERVING = {
    F.relu, F.relu6, F.gelu, F.silu, F.dropout, F.batch_norm,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.dropout, torch.batch_norm,
    torch.Tensor.relu, torch.Tensor.relu_, torch.Tensor.sigmoid, torch.Tensor.tanh,
}  # fmt: skip


class _ShapeOnly(TorchFunctionMode):
    """Skip shape-preserving ops on meta tensors during a forward whose only purpose is output shapes."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _SHAPE_PRESERVING and args and getattr(args[0], "is_meta", False):
            return args[0]
        return func(*args, **(kwargs or {}))


def _conv_linear_macs(model: torch.nn.Module, image_size: int, in_chans: int) -> int:
    """Return multiply-accumulates per sample of every Conv2d and Linear layer in one forward at batch 1.

    Only output shapes matter, so the forward runs on the meta device: it costs the same for a 36M-parameter model as
    for a small one. These layers are what torch's FlopCounterMode and fvcore count for these families (a test
    checks the agreement on every family).
    """
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        per_sample_outputs = output.numel() // output.shape[0]
        if isinstance(module, torch.nn.Conv2d):
            k_h, k_w = module.kernel_size
            total += per_sample_outputs * (module.in_channels // module.groups) * k_h * k_w
        else:
            total += per_sample_outputs * module.in_features

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    handles = [m.register_forward_hook(count) for m in layers]
    try:
        with torch.no_grad(), _ShapeOnly():
            model(torch.empty(1, in_chans, image_size, image_size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total


@lru_cache(maxsize=65536)
def _macs(family: str, depth: int, width: int, num_classes: int, in_chans: int, image_size: int, options: tuple) -> int:
    model = _meta_model(family, depth, width, num_classes, in_chans, options)
    return _conv_linear_macs(model.eval(), image_size, in_chans)


def forward_macs(
    family: str, depth: int, width: int, num_classes: int, in_chans: int, image_size: int, options: dict | None = None
) -> int:
    """Return forward multiply-accumulates per sample (conv and linear layers) of one model, cached."""
    return _macs(family, depth, width, num_classes, in_chans, image_size, _frozen(options or {}))
