"""Slimmable layers: a sub-network is exactly the smaller network built from the first channels' weights."""

from __future__ import annotations

import pytest
import torch

from spaces.families import create_model
from spaces.families.slimmable import (
    active_channels,
    executed_params,
    make_slimmable,
    reset_bn_stats,
    set_width,
    slim_channels,
)
from spaces.families.wrn import WideResNet


def _randomize_bn(model: torch.nn.Module, seed: int) -> None:
    """Give every BN non-trivial affine parameters and running statistics, so that slicing them matters."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) + 0.5
            m.bias.data = torch.randn(n, generator=gen)
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def _copy_first_channels(full: torch.nn.Module, small: torch.nn.Module) -> None:
    """Load into `small` the leading slice of every tensor of `full` (the first-k-channel weights)."""
    sd = full.state_dict()
    small.load_state_dict({k: sd[k][tuple(slice(0, s) for s in v.shape)] for k, v in small.state_dict().items()})


@pytest.mark.parametrize(("channels", "width", "kept"), [(16, 1.0, 16), (160, 0.9, 144), (64, 0.25, 16),
                                                          (16, 0.25, 8), (4, 0.5, 4), (640, 0.95, 608)])  # fmt: skip
def test_slim_channels_rounds_to_a_multiple_of_8_within_8_and_the_layer(channels, width, kept):
    assert slim_channels(channels, width) == kept


def test_resnet_subnetwork_equals_the_separately_built_half_width_resnet():
    torch.manual_seed(0)
    full = create_model("resnet", 8, 32, num_classes=10, in_chans=3)  # stages 32, 64, 128
    _randomize_bn(full, 1)
    small = create_model("resnet", 8, 16, num_classes=10, in_chans=3)  # stages 16, 32, 64
    _copy_first_channels(full, small)
    make_slimmable(full)
    set_width(full, 0.5)
    x = torch.randn(4, 3, 24, 24)
    full.eval(), small.eval()
    torch.testing.assert_close(full(x), small(x), rtol=1e-5, atol=1e-5)


def test_wrn_subnetwork_equals_the_separately_built_narrower_wrn():
    torch.manual_seed(0)
    full = WideResNet(depth=10, widen_factor=8, num_classes=100, in_chans=3)  # stem 16, stages 128, 256, 512
    _randomize_bn(full, 2)
    # Width 0.875 keeps stem 16 (14 rounds to 16) and stages 112, 224, 448: exactly WRN-10-7.
    small = WideResNet(depth=10, widen_factor=7, num_classes=100, in_chans=3)
    _copy_first_channels(full, small)
    make_slimmable(full)
    set_width(full, 0.875)
    x = torch.randn(2, 3, 20, 20)
    full.eval(), small.eval()
    torch.testing.assert_close(full(x), small(x), rtol=1e-5, atol=1e-5)


def test_full_width_slimmable_model_is_the_original_model_and_keeps_its_state_dict():
    torch.manual_seed(0)
    model = create_model("resnet", 8, 16, num_classes=10, in_chans=1)
    keys = list(model.state_dict())
    x = torch.randn(3, 1, 16, 16)
    model.eval()
    before = model(x)
    make_slimmable(model)
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(model(x), before)


def test_training_a_subnetwork_updates_only_the_first_channels_of_the_shared_weights():
    torch.manual_seed(0)
    model = make_slimmable(create_model("resnet", 8, 32, num_classes=10, in_chans=1))
    set_width(model, 0.5)
    model(torch.randn(4, 1, 16, 16)).sum().backward()
    grad = model.layers[0].conv1.weight.grad  # 32 -> 32 channels, the sub-network uses 16 x 16
    assert grad[:16, :16].abs().sum() > 0
    assert grad[16:].abs().sum() == 0 and grad[:, 16:].abs().sum() == 0


def test_executed_params_counts_the_sliced_layers_only():
    model = make_slimmable(create_model("resnet", 8, 16, num_classes=10, in_chans=1))
    sample = torch.zeros(1, 1, 16, 16)
    full = sum(p.numel() for p in model.parameters())
    assert executed_params(model, 1.0, sample) == full
    small = sum(p.numel() for p in create_model("resnet", 8, 8, num_classes=10, in_chans=1).parameters())
    assert executed_params(model, 0.5, sample) == small


def test_bn_recalibration_sets_running_stats_to_the_mean_over_the_batches_seen():
    model = make_slimmable(create_model("resnet", 8, 16, num_classes=10, in_chans=1))
    set_width(model, 0.5)
    reset_bn_stats(model)
    model.train()
    batches = [torch.randn(8, 1, 16, 16) + i for i in range(3)]
    with torch.no_grad():
        for x in batches:
            model(x)
    stem_bn = model.stem[1]  # first BN sees the stem conv's output: 8 of its 16 channels
    with torch.no_grad():
        means = [model.stem[0](x).mean((0, 2, 3)) for x in batches]
    torch.testing.assert_close(stem_bn.running_mean[:8], torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)
    assert torch.all(stem_bn.running_mean[8:] == 0)


def test_active_channels_identify_equal_subnetworks():
    model = make_slimmable(create_model("resnet", 8, 16, num_classes=10, in_chans=1))  # channels 16, 32, 64
    assert active_channels(model, 0.95) == active_channels(model, 1.0)
    assert active_channels(model, 0.5) != active_channels(model, 1.0)
