"""Execution modes of a trial: members one after another (`sequential`) or as one vmapped computation (`fused`).

`fused` stacks the k members' parameters and buffers along a new leading dimension
(`torch.func.stack_module_state`) and runs `functional_call` of one member under `torch.func.vmap`, so one step
launches each layer once for all members (a grouped convolution) instead of k times. Choices that matter:

- The member modules stay the source of truth for everything outside the training step: after stacking, every
  member's parameters and buffers are re-pointed at its slice of the stacked tensors (views, no copies). The optimizer
  steps the stacked leaves in place and the members see the new weights at once, so evaluation, latency, FLOP counts
  and checkpoints (`state_dict` / `load_state_dict`) use the modules unchanged, with no write-back step.
- Buffers are passed batched (`in_dims=0`), so BatchNorm's in-place running-stat updates in training mode land in
  each member's own slice (`batched.add_(batched)` is allowed under vmap; `regular.add_(batched)` is not).
- `randomness="different"`: dropout draws an independent mask per member, as k separate modules would (the masks are
  not the ones sequential execution would draw; without dropout the two modes compute the same function).
- A shared view (member_views off) enters unbatched (`in_dims=None`): the first convolution then folds the members
  into its output channels instead of copying the input k times. Member views enter as one [k, B, C, H, W] batch.
- Families whose layers are custom `autograd.Function`s without a vmap rule (ShakeDrop, Shake-Shake) are refused.
- Fused runs in the contiguous memory format (channels_last is a sequential-only option).

`auto` picks the mode measured fastest for the device (see `resolve_execution`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

EXECUTIONS = ("sequential", "fused", "auto")

# Families whose training-mode forward calls a custom autograd.Function that has no vmap rule.
FUSED_UNSUPPORTED = {
    "pyramidnet": "ShakeDrop is a custom autograd.Function without a vmap rule",
    "shake_shake": "Shake-Shake is a custom autograd.Function without a vmap rule",
}


def check_fused_supported(family: str) -> None:
    """Return None when `family` can run fused; raise ValueError (one line, naming the family) when it cannot."""
    if family in FUSED_UNSUPPORTED:
        raise ValueError(
            f'execution "fused" does not support family {family!r} ({FUSED_UNSUPPORTED[family]}); '
            f'use execution = "sequential"'
        )


def resolve_execution(requested: str, device: torch.device, family: str, members: int) -> str:
    """Return the concrete execution mode ('sequential' or 'fused') for a requested one ('sequential'|'fused'|'auto').

    `auto` is the mode measured fastest on the device type (`python -m harness.bench`, figure P4, written to
    results/bench/bench_trial.json): on a 2-core CPU vmap-fused training steps of a k = 4 resnet ran 1.9-2.4x
    slower than sequential ones (the grouped convolutions it produces are slow on CPU), so `auto` is `sequential`
    there; on CUDA one launch per layer for all members is expected to win (not yet measured here: no GPU), so
    `auto` is `fused` -- unless there is a single member or the family cannot run fused.
    """
    if requested not in EXECUTIONS:
        raise ValueError(f"unknown execution {requested!r}; allowed: {', '.join(EXECUTIONS)}")
    if requested == "fused":
        check_fused_supported(family)
        return "fused"
    if requested == "auto" and device.type == "cuda" and members > 1 and family not in FUSED_UNSUPPORTED:
        return "fused"
    return "sequential"


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    prefix, _, leaf = name.rpartition(".")
    return (model.get_submodule(prefix) if prefix else model), leaf


class FusedMembers:
    """The members of an ensemble as one vmapped computation over their stacked parameters and buffers.

    `params` / `buffers` map each member parameter / buffer name to a tensor with a leading member dimension k;
    `params` are the leaves to optimize. Calling the object returns the members' outputs stacked, (k, B, classes).
    """

    def __init__(self, members: list[nn.Module]):
        self.params, self.buffers = stack_module_state(members)
        for i, model in enumerate(members):
            for name, stacked in self.params.items():
                module, leaf = _owner(model, name)
                setattr(module, leaf, nn.Parameter(stacked.detach()[i], requires_grad=stacked.requires_grad))
            for name, stacked in self.buffers.items():
                module, leaf = _owner(model, name)
                module._buffers[leaf] = stacked[i]
        # The first member's module is the stateless template: functional_call swaps the stacked slices in for the
        # call and puts its own tensors back after, and its train/eval mode is the mode of the call.
        self.template = members[0]
        self.k = len(members)

    def _one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Return the stacked member outputs (k, B, classes).

        x: one (B, C, H, W) batch shared by all members, or a list of k member views, or a stacked (k, B, C, H, W).
        """
        if isinstance(x, list | tuple):
            shared = all(v is x[0] for v in x)
            x = x[0] if shared else torch.stack(x)
        else:
            shared = x.dim() == 4
        in_x = None if shared else 0
        return vmap(self._one, in_dims=(0, 0, in_x), randomness="different")(self.params, self.buffers, x)
