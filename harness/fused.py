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
- Every family runs fused: the custom `autograd.Function`s (ShakeDrop, Shake-Shake) set `generate_vmap_rule`.
- Fused runs in the contiguous memory format (channels_last is a sequential-only option).
- `compile` wraps the vmapped call in `torch.compile`; whether the members' inputs are shared is decided outside
  it, so the compiled graph sees one tensor and a constant flag.

`auto` picks the mode measured fastest for the device (see `resolve_execution`).

Either mode can be compiled (recipe `compile`, `compile_backend`; see `compile_args`): sequential members each go
through `torch.compile`, fused ones as one vmapped call. Compilation happens inside the first epoch (and again
when a new input shape or train/eval mode first appears), so that epoch's time includes it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from harness.compile_probe import check_inductor_cpu_works
from spaces.spec import RECIPE_KEYS, inductor_cpu_refusal

# The allowed values are the spec's (recipe keys execution, compile, compile_backend).
EXECUTIONS = RECIPE_KEYS["execution"].allowed
COMPILE_MODES = RECIPE_KEYS["compile"].allowed
COMPILE_BACKENDS = RECIPE_KEYS["compile_backend"].allowed


def resolve_execution(requested: str, device: torch.device, members: int) -> str:
    """Return the concrete execution mode ('sequential' or 'fused') for a requested one ('sequential'|'fused'|'auto').

    `auto` is the mode measured fastest on the device type (`python -m harness.bench`, figure P4, written to
    results/bench/bench_trial.json): on a 2-core CPU vmap-fused training steps of a k = 4 resnet ran 1.9-2.4x
    slower than sequential ones (the grouped convolutions it produces are slow on CPU), so `auto` is `sequential`
    there; on CUDA one launch per layer for all members is expected to win (not yet measured here: no GPU), so
    `auto` is `fused` -- unless there is a single member.
    """
    if requested not in EXECUTIONS:
        raise ValueError(f"unknown execution {requested!r}; allowed: {', '.join(EXECUTIONS)}")
    if requested == "fused":
        return "fused"
    if requested == "auto" and device.type == "cuda" and members > 1:
        return "fused"
    return "sequential"


def compile_args(mode: str, backend: str = "inductor") -> dict | None:
    """Return the keyword arguments of `torch.compile` for a recipe's (`compile`, `compile_backend`), or None for
    eager ("off"). Only inductor has modes: another backend takes mode "default"."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; allowed: {', '.join(COMPILE_MODES)}")
    if backend not in COMPILE_BACKENDS:
        raise ValueError(f"unknown compile backend {backend!r}; allowed: {', '.join(COMPILE_BACKENDS)}")
    if mode == "off":
        return None
    if backend != "inductor":
        if mode != "default":
            raise ValueError(f'compile mode {mode!r} is an inductor mode; backend {backend!r} takes "default"')
        return {"backend": backend}
    return {"backend": "inductor", "mode": mode}


def check_compile_supported(compile_kwargs: dict | None, device: torch.device, inductor_cpu: bool = False) -> None:
    """Return None when the compile settings can run on `device` with this process's torch threads; raise ValueError
    (one line) when they cannot: inductor on a CPU without the recipe's `inductor_cpu` opt-in, with 1 thread, or on
    a torch build whose compile probe crashed (`harness.compile_probe`; the first call per torch version and thread
    count takes the probe's minute)."""
    if not (compile_kwargs and compile_kwargs["backend"] == "inductor" and device.type == "cpu"):
        return
    if not inductor_cpu:
        # Refused rather than probed: on an AVX-512 Xeon (torch 2.14.1, 2 threads) the probe passed and the compiled
        # trial then aborted. Heap corruption shows or not with the process's history, so no probe clears a host; the
        # spec refuses this too (spaces.spec), this covers configs that reach the trial another way.
        mode = compile_kwargs.get("mode", "default")
        raise ValueError(f"recipe.compile = {mode!r}: {inductor_cpu_refusal('recipe.')}")
    if torch.get_num_threads() < 2:
        # Seen with torch 2.15: inductor's C++ backward kernels of a CIFAR ResNet on 16x16 inputs corrupted the heap
        # and aborted the process with one thread (with two they ran), which would take a Ray worker down with it.
        raise ValueError(
            "compile with backend inductor on a CPU needs >= 2 torch threads (with 1, inductor's CPU kernels aborted"
            " the process here); set measure.threads >= 2 with resources.cpus to match, or compile_backend ="
            ' "aot_eager", or compile = "off"'
        )
    # Opted in: a probe in a child process, cached per torch version and thread count, still refuses a build that
    # aborts every time before anything compiles here.
    check_inductor_cpu_works(torch.get_num_threads())


def member_forward(
    members: list[nn.Module], fused: FusedMembers | None, fmt: torch.memory_format, compile_kwargs: dict | None = None
) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """Return forward(inputs) -> the k members' logits (a list of k tensors) for a list of k member inputs (the same
    tensor k times for a shared view): through `fused` when given, else member by member in memory format `fmt`;
    compiled with `torch.compile(**compile_kwargs)` unless that is None. The members stay the modules that own the
    weights (state_dict, optimizer, measurements); compiled wrappers only run them."""
    if fused is not None:
        if compile_kwargs is not None:
            fused.compile(**compile_kwargs)

        def run_all(inputs):
            return list(fused(inputs).unbind(0))
    else:
        runners = member_runners(members, compile_kwargs)

        def run_all(inputs):
            return [run(x.contiguous(memory_format=fmt)) for run, x in zip(runners, inputs, strict=True)]

    if not uses_cuda_graphs(compile_kwargs):
        return run_all

    def run_all_graphed(inputs):
        # A CUDA-graph replay reuses its output memory: one step per call, and outputs copied out of the graph's pool
        # so that k members' logits (and the loss built from them) stay valid together.
        torch.compiler.cudagraph_mark_step_begin()
        return [z.clone() for z in run_all(inputs)]

    return run_all_graphed


def member_runners(members: list[nn.Module], compile_kwargs: dict | None = None) -> list[Callable]:
    """Return one callable per member that runs its forward: the module itself, or `torch.compile(module,
    **compile_kwargs)`. A runner that replays CUDA graphs needs `torch.compiler.cudagraph_mark_step_begin()` before
    each call whose outputs must not overwrite an earlier call's (see `member_forward`)."""
    return members if compile_kwargs is None else [torch.compile(m, **compile_kwargs) for m in members]


def uses_cuda_graphs(compile_kwargs: dict | None) -> bool:
    """Return True when `torch.compile(**compile_kwargs)` records CUDA graphs (on a CUDA device)."""
    if compile_kwargs is None:
        return False
    graphed_modes = ("reduce-overhead", "max-autotune")
    return compile_kwargs["backend"] == "cudagraphs" or compile_kwargs.get("mode") in graphed_modes


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

    def _run(self, params: dict, buffers: dict, x: torch.Tensor, shared: bool) -> torch.Tensor:
        in_x = None if shared else 0
        return vmap(self._one, in_dims=(0, 0, in_x), randomness="different")(params, buffers, x)

    def compile(self, **compile_args) -> None:
        """Compile the vmapped call with `torch.compile(**compile_args)` (e.g. backend, mode); returns None."""
        # The stacked tensors are plain leaves, not nn.Parameters: marked static, a CUDA graph reads them in place
        # instead of copying every weight into its own input buffers on each replay.
        for tensor in (*self.params.values(), *self.buffers.values()):
            torch._dynamo.mark_static_address(tensor)
        self._run = torch.compile(self._run, **compile_args)

    def __call__(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Return the stacked member outputs (k, B, classes).

        x: one (B, C, H, W) batch shared by all members, or a list of k member views, or a stacked (k, B, C, H, W).
        """
        if isinstance(x, list | tuple):
            shared = all(v is x[0] for v in x)
            x = x[0] if shared else torch.stack(x)
        else:
            shared = x.dim() == 4
        return self._run(self.params, self.buffers, x, shared)
