"""The co-training loss, its lambda schedule, and the ensemble combiners."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.losses import cot_weight, cotraining_loss, ensemble_log_probs, js_divergence, leader_loss
from spaces.families import create_model


def test_js_is_zero_for_one_member_and_for_identical_members():
    z = torch.randn(8, 10)
    assert js_divergence([z]).item() == 0.0
    assert js_divergence([z, z.clone(), z.clone()]).item() == pytest.approx(0.0, abs=1e-6)


def test_js_equals_entropy_of_mean_minus_mean_entropy():
    # Two members, one sample, certain of different classes: H(mean) = log 2, mean H = 0.
    a = torch.tensor([[50.0, 0.0]])
    b = torch.tensor([[0.0, 50.0]])
    assert js_divergence([a, b]).item() == pytest.approx(math.log(2), rel=1e-4)


def test_loss_is_sum_of_member_cross_entropies_when_lambda_is_zero():
    logits, y = [torch.randn(16, 10) for _ in range(3)], torch.randint(0, 10, (16,))
    total, js = cotraining_loss(logits, y, lambda_cot=0.0)
    assert total.item() == pytest.approx(sum(F.cross_entropy(z, y).item() for z in logits), rel=1e-6)
    assert js.item() == 0.0


def test_soft_targets_give_the_same_loss_as_labels_with_label_smoothing():
    z, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    soft = torch.full((16, 10), 0.01).scatter_(1, y[:, None], 0.91)
    hard, _ = cotraining_loss([z], y, 0.0, label_smoothing=0.1)
    assert cotraining_loss([z], soft, 0.0)[0].item() == pytest.approx(hard.item(), rel=1e-5)


def _member0_grads(models, x, y, lambda_cot):
    for m in models:
        m.zero_grad()
    loss, _ = cotraining_loss([m(x) for m in models], y, lambda_cot)
    loss.backward()
    return [p.grad.clone() for p in models[0].parameters()]


@pytest.mark.parametrize("lambda_cot, independent", [(0.0, True), (0.5, False)])
def test_member_gradients_depend_on_other_members_only_through_the_cotraining_term(lambda_cot, independent):
    torch.manual_seed(0)
    models = [create_model("resnet", 8, 4, num_classes=10, in_chans=1) for _ in range(2)]
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,))
    before = _member0_grads(models, x, y, lambda_cot)
    with torch.no_grad():
        for p in models[1].parameters():
            p.add_(torch.randn_like(p))
    after = _member0_grads(models, x, y, lambda_cot)
    same = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert same is independent


def test_cot_weight_warms_up_linearly_per_epoch_with_a_floor():
    values = [cot_weight(e, 0.5, warmup_epochs=4, floor=0.005) for e in range(6)]
    assert values == pytest.approx([0.005, 0.125, 0.25, 0.375, 0.5, 0.5])
    assert cot_weight(0, 0.0, 4, 0.005) == 0.0  # no floor when co-training is off
    assert cot_weight(0, 0.5, 0, 0.005) == 0.5


def test_combiners_return_normalized_log_probabilities_and_logit_average_by_default():
    logits = [torch.randn(5, 10) for _ in range(3)]
    for how in ("logits", "softmax", "geometric", "max"):
        assert ensemble_log_probs(logits, how).exp().sum(1) == pytest.approx(torch.ones(5), rel=1e-5)
    expected = F.log_softmax(torch.stack(logits).mean(0), 1)
    assert torch.allclose(ensemble_log_probs(logits), expected)
    softmax_avg = torch.stack([F.softmax(z, 1) for z in logits]).mean(0)
    assert torch.allclose(ensemble_log_probs(logits, "softmax").exp(), softmax_avg, atol=1e-6)
    with pytest.raises(ValueError, match="unknown combiner"):
        ensemble_log_probs(logits, "vote")


# Cooperative learning, Eq. 18: L = CE(leader, y) + sum_i KLDiv(teammate_i(x, 1.0), leader), the leader's output a
# detached target ("we stop the gradients of the outputs produced by networks when we use them as labels").


def _leader_case():
    torch.manual_seed(0)
    leader = torch.randn(6, 5, requires_grad=True)
    mates = [torch.randn(6, 5, requires_grad=True) for _ in range(2)]
    return leader, mates, torch.tensor([0, 1, 2, 3, 4, 0])


def test_leader_gradient_equals_its_gradient_under_cross_entropy_alone():
    leader, mates, y = _leader_case()
    leader_loss(leader, mates, y).backward()
    alone = leader.detach().clone().requires_grad_(True)
    F.cross_entropy(alone, y).backward()
    assert torch.allclose(leader.grad, alone.grad, atol=1e-7)


def test_teammate_gradient_is_the_kl_toward_the_detached_leader():
    leader, mates, y = _leader_case()
    leader_loss(leader, mates, y).backward()
    # d/dz KL(q || softmax(z)) batch-mean = (softmax(z) - q) / N, q = softmax(leader).
    for mate in mates:
        expected = (F.softmax(mate.detach(), 1) - F.softmax(leader.detach(), 1)) / len(y)
        assert torch.allclose(mate.grad, expected, atol=1e-7)
        assert mate.grad.abs().sum() > 0


def test_leader_loss_is_cross_entropy_plus_the_teammates_kl_values():
    leader, mates, y = _leader_case()
    q = F.softmax(leader.detach(), 1)
    kl = sum((q * (q.log() - F.log_softmax(m.detach(), 1))).sum(1).mean() for m in mates)
    assert leader_loss(leader, mates, y).item() == pytest.approx((F.cross_entropy(leader, y) + kl).item(), rel=1e-6)
