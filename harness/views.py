"""Augmented views of a batch, one per ensemble member (Divide-and-Co-train) or one shared by all.

Everything random draws from an explicit `torch.Generator` (seeded from the trial seed) so that CPU training is
deterministic and no global RNG is touched:

- Random crop with padding is batched: the batch is padded once with **reflect** padding (the image's own border
  mirrored, as airbench does; zero padding would add black frames that normalization turns into strong edges), then
  each sample is cropped at its own random offset with one gather. Horizontal flip is a batched `torch.where`.
- AutoAugment / RandAugment / RandomErasing come from `torchvision.transforms.v2`, which applies *one* random op to a
  whole tensor, so they run per sample (a Python loop over the batch, on the device). That costs roughly 0.1-0.5 ms
  per sample per view on a CPU, i.e. tens of ms per 128-batch per member -- often more than a tiny model's step.
  torchvision draws their randomness from the global RNG, so each call runs inside `torch.random.fork_rng` seeded
  from our generator: deterministic, and the global state is left as it was.
- RandomErasing is the Divide-and-Co-train reference's cutout-like setting on CIFAR: an erased area of 6.25-10% of
  the image, aspect ratio 0.99-1.0 (a square), filled with 0 after normalization (the mean colour).
- Mixup / cutmix draw ONE lambda and ONE permutation per batch, shared by all views, so members see the same mixed
  pairs and their soft targets are identical (the co-training loss compares like with like).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# RandomErasing as the DCT reference uses it on CIFAR (dataset/factory.py): cutout-like squares, zero fill.
ERASING_SCALE = (0.0625, 0.1)
ERASING_RATIO = (0.99, 1.0)


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Return a batch (N, C, H, W) randomly cropped after reflect padding by `padding` pixels and, when `flip`,
    horizontally flipped with probability 1/2 per sample. Same dtype and device as `x`."""
    n, c, h, w = x.shape
    if padding > 0:
        xp = F.pad(x, (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        # All four indices advanced: the result is a fresh (N, C, H, W) tensor with standard strides. (A permuted
        # (N, H, W, 1) result is "contiguous" with odd strides, and CPU conv backward corrupted the heap on it.)
        x = xp[batch, chans, rows, cols]
    if flip:
        mask = torch.rand(n, generator=gen, device=x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def _seed_from(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())


def per_sample(transform, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Return `transform` applied to each sample of x separately, its randomness seeded from `gen`."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_seed_from(gen))
        return torch.stack([transform(sample) for sample in x])


@dataclass
class ViewMaker:
    """Makes the member views of a raw batch and normalizes them.

    `autoaugment_policy` is the torchvision policy name ('cifar10', 'svhn' or 'imagenet'). `normalize` maps raw
    pixels to normalized float32 (see `harness.data.TrialData.normalize`).
    """

    padding: int
    flip: bool
    normalize: object
    autoaugment: bool = False
    randaugment: bool = False
    random_erasing: float = 0.0
    autoaugment_policy: str = "cifar10"

    def __post_init__(self):
        import torchvision.transforms.v2 as T

        self._policy = None
        if self.autoaugment:
            self._policy = T.AutoAugment(T.AutoAugmentPolicy(self.autoaugment_policy))
        elif self.randaugment:
            self._policy = T.RandAugment()
        self._erase = None
        if self.random_erasing > 0:
            self._erase = T.RandomErasing(p=self.random_erasing, scale=ERASING_SCALE, ratio=ERASING_RATIO, value=0)

    def view(self, raw: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Return one augmented, normalized float32 view of the raw batch."""
        x = random_crop_flip(raw, self.padding, self.flip, gen)
        if self._policy is not None:
            x = per_sample(self._policy, x, gen)
        x = self.normalize(x)
        if self._erase is not None:
            x = per_sample(self._erase, x, gen)
        return x

    def views(self, raw: torch.Tensor, count: int, member_views: bool, gen: torch.Generator) -> list[torch.Tensor]:
        """Return `count` views: independent draws when `member_views`, else the same tensor `count` times."""
        if member_views:
            return [self.view(raw, gen) for _ in range(count)]
        return [self.view(raw, gen)] * count


@dataclass
class MixPlan:
    """One mixup or cutmix draw for a batch: partner permutation, mixing weight, and cutmix box (or None)."""

    perm: torch.Tensor
    lam: float
    box: tuple[int, int, int, int] | None = None  # y0, y1, x0, x1


def draw_mix(n: int, h: int, w: int, mixup_alpha: float, cutmix_alpha: float, gen: torch.Generator) -> MixPlan | None:
    """Return a MixPlan for a batch of n (H x W) images, or None when both alphas are 0.

    With both alphas > 0 one of the two is chosen with probability 1/2 (as timm does). Cutmix's lambda is the
    kept-area fraction after clipping the box to the image.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand(1, generator=gen, device=gen.device).item() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    # Beta(a, a) from two Gammas, drawn with our generator.
    g = torch._standard_gamma(torch.full((2,), float(alpha), device=gen.device), generator=gen)
    lam = float(g[0] / g.sum())
    perm = torch.randperm(n, generator=gen, device=gen.device)
    if not use_cutmix:
        return MixPlan(perm, lam)
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=gen, device=gen.device).item())
    cx = int(torch.randint(0, w, (1,), generator=gen, device=gen.device).item())
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return MixPlan(perm, lam, (y0, y1, x0, x1))


def apply_mix(x: torch.Tensor, plan: MixPlan | None) -> torch.Tensor:
    """Return the view x mixed with its permuted partner by `plan` (x itself when plan is None)."""
    if plan is None:
        return x
    if plan.box is None:
        return x.mul(plan.lam).add_(x[plan.perm], alpha=1.0 - plan.lam)
    y0, y1, x0, x1 = plan.box
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[plan.perm][:, :, y0:y1, x0:x1]
    return out


def soft_targets(y: torch.Tensor, num_classes: int, plan: MixPlan | None, label_smoothing: float) -> torch.Tensor:
    """Return (N, num_classes) target probabilities: smoothed one-hot of y, mixed by `plan` when given."""
    off = label_smoothing / num_classes
    t = torch.full((len(y), num_classes), off, device=y.device)
    t.scatter_(1, y[:, None], 1.0 - label_smoothing + off)
    if plan is not None:
        t = t.mul(plan.lam).add_(t[plan.perm], alpha=1.0 - plan.lam)
    return t


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """Return the batch `x` resized to side x side pixels (bilinear, antialiased); `x` itself when already so."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
