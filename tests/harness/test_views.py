"""Member views, batched crop/flip, and mixup/cutmix shared across views."""

from __future__ import annotations

import torch

from harness.views import ViewMaker, apply_mix, draw_mix, random_crop_flip, soft_targets


def _maker(**kw) -> ViewMaker:
    return ViewMaker(padding=2, flip=True, normalize=lambda x: x.float(), **kw)


def test_each_member_gets_a_different_view_when_member_views():
    raw = torch.rand(32, 1, 16, 16)
    views = _maker().views(raw, 3, member_views=True, gen=torch.Generator().manual_seed(0))
    assert len(views) == 3
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])


def test_members_share_one_view_when_not_member_views():
    raw = torch.rand(32, 1, 16, 16)
    views = _maker().views(raw, 3, member_views=False, gen=torch.Generator().manual_seed(0))
    assert torch.equal(views[0], views[1]) and torch.equal(views[0], views[2])
    assert not torch.equal(views[0], raw)  # it is still augmented


def test_same_generator_seed_gives_the_same_views():
    raw = torch.rand(8, 3, 16, 16)
    a = _maker().views(raw, 2, True, torch.Generator().manual_seed(7))
    b = _maker().views(raw, 2, True, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_crop_uses_reflect_padding_and_keeps_shape_and_dtype():
    raw = torch.randint(1, 255, (64, 3, 8, 8), dtype=torch.uint8)  # no zeros: zero padding would show
    out = random_crop_flip(raw, 4, flip=False, gen=torch.Generator().manual_seed(0))
    assert out.shape == raw.shape and out.dtype == torch.uint8 and out.is_contiguous()
    assert out.min() > 0
    # Every crop is a window of the reflect-padded image.
    padded = torch.nn.functional.pad(raw.float(), (4,) * 4, mode="reflect")
    windows = padded.unfold(2, 8, 1).unfold(3, 8, 1)  # (N, C, 9, 9, 8, 8)
    hits = (windows == out.float()[:, :, None, None]).all(-1).all(-1).all(1)  # (N, 9, 9)
    assert hits.flatten(1).any(1).all()


def test_randaugment_and_erasing_run_per_sample_deterministically():
    raw = torch.randint(0, 255, (6, 3, 16, 16), dtype=torch.uint8)
    maker = ViewMaker(2, True, lambda x: x.float() / 255, randaugment=True, random_erasing=0.5)
    a = maker.view(raw, torch.Generator().manual_seed(1))
    b = maker.view(raw, torch.Generator().manual_seed(1))
    assert a.shape == (6, 3, 16, 16) and torch.equal(a, b)


def test_mixup_draws_one_lambda_and_permutation_shared_by_all_views():
    gen = torch.Generator().manual_seed(0)
    plan = draw_mix(16, 8, 8, mixup_alpha=1.0, cutmix_alpha=0.0, gen=gen)
    v1, v2 = torch.rand(16, 1, 8, 8), torch.rand(16, 1, 8, 8)
    for v in (v1, v2):
        assert torch.allclose(apply_mix(v, plan), plan.lam * v + (1 - plan.lam) * v[plan.perm])
    targets = soft_targets(torch.arange(16) % 10, 10, plan, 0.0)
    assert torch.allclose(targets.sum(1), torch.ones(16))


def test_cutmix_lambda_is_the_kept_area():
    plan = draw_mix(16, 8, 8, mixup_alpha=0.0, cutmix_alpha=1.0, gen=torch.Generator().manual_seed(3))
    y0, y1, x0, x1 = plan.box
    assert plan.lam == 1 - (y1 - y0) * (x1 - x0) / 64
    x = torch.rand(16, 1, 8, 8)
    mixed = apply_mix(x, plan)
    assert torch.equal(mixed[:, :, y0:y1, x0:x1], x[plan.perm][:, :, y0:y1, x0:x1])


def test_no_mixing_plan_when_both_alphas_are_zero():
    assert draw_mix(16, 8, 8, 0.0, 0.0, torch.Generator()) is None


def test_random_erasing_is_the_dct_references_cutout_like_square_of_6_to_10_percent_filled_with_zero():
    # DCT reference, dataset/factory.py (CIFAR-100): RandomErasing(scale=(0.0625, 0.1), ratio=(0.99, 1.0), value=0).
    maker = ViewMaker(padding=0, flip=False, normalize=lambda x: x, random_erasing=1.0)
    out = maker.view(torch.ones(64, 3, 32, 32), torch.Generator().manual_seed(0))
    erased = (out == 0).all(1)  # (N, H, W)
    area = erased.flatten(1).float().mean(1)
    rows, cols = erased.any(2).sum(1), erased.any(1).sum(1)
    assert bool(((area >= 0.0625 - 1 / 1024) & (area <= 0.1 + 1 / 1024)).all())
    assert bool(((rows - cols).abs() <= 1).all())
    assert bool((area * 1024 == rows * cols).all())  # one solid rectangle per image
