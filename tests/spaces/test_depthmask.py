"""Depth-adaptive sub-networks: a masked CIFAR ResNet equals the plain network built from its selected blocks."""

from __future__ import annotations

import pytest
import torch

from spaces.families import create_model
from spaces.families.depthmask import (
    DepthMaskedNet,
    executed_params,
    gumbel_topk_mask,
    hard_topk_mask,
    keep_count,
    masked_forward,
    skippable_blocks,
    truncated_copy,
)


def _masked(family="resnet", depth=20, seed=0) -> DepthMaskedNet:
    torch.manual_seed(seed)
    net = DepthMaskedNet(create_model(family, depth, 8, num_classes=10, in_chans=3))
    with torch.no_grad():
        net.mask_logits.copy_(torch.randn(len(net.blocks)))
    # Non-trivial BN statistics, so the comparison covers the running buffers too.
    net.train()
    net.net(torch.randn(8, 3, 16, 16))
    return net.eval()


def test_only_identity_shortcut_blocks_are_skippable():
    model = create_model("resnet", 20, 8)  # 3 blocks per stage; the first of stages 2 and 3 project
    assert skippable_blocks(model) == [0, 1, 2, 4, 5, 7, 8]
    bottleneck = create_model("resnet_bottleneck", 29, 8)  # 3 blocks per stage; every first block projects
    assert skippable_blocks(bottleneck) == [1, 2, 4, 5, 7, 8]


def test_keep_count_rounds_the_scale_and_keeps_at_least_one_block():
    assert [keep_count(s, 7) for s in (0.01, 0.2, 0.4, 0.6, 0.8, 1.0)] == [1, 1, 3, 4, 6, 7]
    assert keep_count(0.5, 0) == 0


@pytest.mark.parametrize("family", ["resnet", "resnet_bottleneck", "se_resnet"])
@pytest.mark.parametrize("scale", [0.2, 0.6, 1.0])
def test_masked_forward_equals_the_explicitly_truncated_network(family, scale):
    net = _masked(family, 20 if family != "resnet_bottleneck" else 29)
    net.scale = scale
    x = torch.randn(4, 3, 16, 16)
    truncated = truncated_copy(net, scale).eval()
    assert len(truncated.layers) == len(net.net.layers) - len(net.blocks) + keep_count(scale, len(net.blocks))
    with torch.no_grad():
        torch.testing.assert_close(net(x), truncated(x), rtol=0, atol=0)
        mask = net.inference_mask(scale)
        torch.testing.assert_close(masked_forward(net.net, x, mask, hard=False), truncated(x), rtol=1e-5, atol=1e-5)


def test_the_selected_blocks_are_those_with_the_largest_logits():
    net = _masked()
    with torch.no_grad():
        net.mask_logits.copy_(torch.tensor([0.0, 5.0, -1.0, 4.0, 1.0, -2.0, 3.0]))
    # Skippable blocks are [0, 1, 2, 4, 5, 7, 8]; scale 0.4 keeps 3 of them: logits 5, 4, 3 -> blocks 1, 4, 8.
    assert net.executed_blocks(0.4) == [1, 3, 4, 6, 8]


def test_executed_params_grow_with_scale_and_the_full_scale_is_the_whole_network():
    net = _masked()
    counts = [executed_params(net, s) for s in (0.2, 0.6, 1.0)]
    assert counts[0] < counts[1] < counts[2] == sum(p.numel() for p in net.net.parameters())


def test_gumbel_topk_is_hard_forward_and_passes_a_gradient_to_every_logit():
    logits = torch.zeros(6, requires_grad=True)
    mask = gumbel_topk_mask(logits, 2, tau=1.0, gen=torch.Generator().manual_seed(0))
    assert sorted(mask.detach().tolist()) == [0.0] * 4 + [1.0] * 2
    (mask * torch.arange(6.0)).sum().backward()
    assert logits.grad is not None and bool((logits.grad != 0).all())


def test_hard_topk_breaks_ties_toward_the_earlier_block():
    assert hard_topk_mask(torch.zeros(4), 2).tolist() == [1.0, 1.0, 0.0, 0.0]
