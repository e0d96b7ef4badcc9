"""Fused execution: the same function as sequential members (outputs, gradients, BN running stats, a whole trial),
run by every family (the shake functions batch exactly), and `auto` resolved per device and recorded as the mode
that ran."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from harness.fused import FusedMembers, resolve_execution
from harness.losses import cotraining_loss
from harness.networks import make_optimizer
from harness.store import rows_from_result
from harness.trial import run_trial
from spaces.families import create_model, get_family, list_families
from spaces.families.pyramidnet import ShakeDropFunction
from spaces.families.shake_shake import ShakeShakeFunction
from spaces.spec import load_spec, trial_configs
from tests.harness.conftest import RECIPE, curve_of, dct_config, design_point, kill_and_resume, make_config

# Small members of three families whose layers differ (post-activation basic blocks, pre-activation wide blocks,
# dense concatenation), k = 2 or 3; (depth, width) are family knobs.
FAMILIES = {"resnet": (8, 8, 3), "wrn": (10, 1, 2), "densenet_bc": (10, 6, 2)}
# float32 tolerances: fused convolutions are grouped ones, summed in another order than k separate ones.
OUT_TOL = {"rtol": 1e-4, "atol": 1e-5}
GRAD_TOL = {"rtol": 1e-3, "atol": 1e-5}
# How far float32 rounding differences may move a 2-epoch digits trial's accuracies (see the trial test).
FP32_ACC_DRIFT = 0.08


def members_of(family: str, device: str = "cpu") -> list[torch.nn.Module]:
    depth, width, k = FAMILIES[family]
    models = []
    for i in range(k):
        torch.manual_seed(100 + i)
        models.append(create_model(family, depth, width, num_classes=10, in_chans=1).to(device).train())
    return models


def one_step(family: str, fused: bool, device: str = "cpu") -> dict:
    """Run one co-training SGD step on member views; return outputs, gradients and the state after the step."""
    models = members_of(family, device)
    engine = FusedMembers(models) if fused else None
    optimizer = make_optimizer(models, RECIPE, engine.params if engine else None)
    gen = torch.Generator(device=device).manual_seed(0)
    views = [torch.randn(32, 1, 16, 16, generator=gen, device=device) for _ in models]
    labels = torch.randint(0, 10, (32,), generator=gen, device=device)
    logits = list(engine(views).unbind(0)) if engine else [m(x) for m, x in zip(models, views, strict=True)]
    loss, _ = cotraining_loss(logits, labels, lambda_cot=0.5)
    optimizer.zero_grad()
    loss.backward()
    if engine:
        grads = [{n: p.grad[i].clone() for n, p in engine.params.items()} for i in range(len(models))]
    else:
        grads = [{n: p.grad.clone() for n, p in m.named_parameters()} for m in models]
    optimizer.step()
    return {
        "logits": torch.stack(logits).detach(),
        "grads": grads,
        "state": [{n: t.detach().clone() for n, t in m.state_dict().items()} for m in models],
    }


def assert_steps_match(seq: dict, fus: dict) -> None:
    torch.testing.assert_close(fus["logits"], seq["logits"], **OUT_TOL)
    for g_fus, g_seq in zip(fus["grads"], seq["grads"], strict=True):
        assert g_fus.keys() == g_seq.keys()
        for name in g_seq:
            torch.testing.assert_close(g_fus[name], g_seq[name], **GRAD_TOL, msg=lambda m, n=name: f"{n}: {m}")
    for s_fus, s_seq in zip(fus["state"], seq["state"], strict=True):
        assert s_fus.keys() == s_seq.keys()
        for name in s_seq:  # weights after the step and BN running stats (and num_batches_tracked)
            torch.testing.assert_close(s_fus[name], s_seq[name], **OUT_TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.fixture(scope="module")
def steps():
    """One step of each family, sequential and fused: {family: (sequential, fused)}."""
    return {family: (one_step(family, False), one_step(family, True)) for family in FAMILIES}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fused_step_matches_sequential_outputs_gradients_and_state(steps, family):
    assert_steps_match(*steps[family])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fused_step_updates_each_members_own_batchnorm_running_stats(steps, family):
    _, fus = steps[family]
    fresh = members_of(family)[0].state_dict()
    for state in fus["state"]:
        assert all(int(t) == 1 for n, t in state.items() if n.endswith("num_batches_tracked"))
    means = [n for n in fresh if n.endswith("running_mean")]
    # Every member saw its own view, so its running means moved away from the fresh zeros, and differently.
    for name in means:
        assert all(not torch.equal(state[name], fresh[name]) for state in fus["state"])
    assert not torch.equal(fus["state"][0][means[0]], fus["state"][1][means[0]])


def test_member_modules_are_views_of_the_stacked_weights_the_optimizer_steps():
    models = members_of("resnet")
    engine = FusedMembers(models)
    name, stacked = next(iter(engine.params.items()))
    with torch.no_grad():
        stacked[1].add_(1.0)
    assert torch.equal(models[1].get_parameter(name), stacked[1])
    assert torch.equal(models[0].get_parameter(name), stacked[0])


def small_members(family: str, k: int = 2) -> tuple[list[torch.nn.Module], torch.Tensor]:
    """Return k of the smallest valid models of `family` (seeded) and an input batch for them."""
    spec = get_family(family)
    in_chans, size = (3, 32) if family.endswith("_imagenet") else (1, 16)
    models = []
    for i in range(k):
        torch.manual_seed(200 + i)
        models.append(
            create_model(family, min(spec.valid_depths(60)), spec.min_width, num_classes=10, in_chans=in_chans)
        )
    return models, torch.randn(4, in_chans, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family", list_families())
def test_every_family_runs_fused_and_computes_the_members_outputs_in_eval_mode(family):
    models, x = small_members(family)
    engine = FusedMembers(models)
    for model in models:
        model.eval()
    with torch.no_grad():
        fused = engine([x, x + 0.1])
        sequential = torch.stack([models[0](x), models[1](x + 0.1)])
    torch.testing.assert_close(fused, sequential, **OUT_TOL)


@pytest.mark.parametrize("family", list_families())
def test_every_family_trains_fused_with_a_finite_gradient_for_every_weight(family):
    models, x = small_members(family)
    engine = FusedMembers(models)
    engine([x, x + 0.1]).logsumexp(-1).sum().backward()
    grads = {name: p.grad for name, p in engine.params.items() if p.requires_grad}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize(("function", "tensor_inputs"), [(ShakeDropFunction, 1), (ShakeShakeFunction, 2)])
def test_the_shake_functions_batch_over_members_exactly_as_a_loop(function, tensor_inputs):
    # 3 members, each with its own forward and gradient weights per image: vmap must keep the members apart.
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 4, 2, 5, 5, generator=g, requires_grad=True) for _ in range(tensor_inputs)]
    forward_scale, backward_scale = (torch.rand(3, 4, 1, 1, 1, generator=g) for _ in range(2))
    weights = torch.randn(3, 4, 2, 5, 5, generator=g)
    batched = vmap(function.apply)(*xs, forward_scale, backward_scale)
    (batched * weights).sum().backward()
    batched_grads = [x.grad.clone() for x in xs]
    for x in xs:
        x.grad = None
    looped = torch.stack([function.apply(*(x[i] for x in xs), forward_scale[i], backward_scale[i]) for i in range(3)])
    (looped * weights).sum().backward()
    torch.testing.assert_close(batched, looped, rtol=0, atol=0)
    for got, want in zip(batched_grads, (x.grad for x in xs), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("requested", "device", "members", "expected"),
    [
        ("auto", "cpu", 4, "sequential"),  # measured: vmap-fused steps are slower on CPU
        ("auto", "cuda", 4, "fused"),
        ("auto", "cuda", 1, "sequential"),  # nothing to fuse
        ("fused", "cpu", 4, "fused"),  # an explicit request is honoured on any device
        ("sequential", "cuda", 4, "sequential"),
    ],
)
def test_execution_resolves_to_a_concrete_mode(requested, device, members, expected):
    assert resolve_execution(requested, torch.device(device), members) == expected


def test_unknown_execution_is_rejected_listing_the_modes():
    with pytest.raises(ValueError, match="unknown execution 'parallel'; allowed: sequential, fused, auto"):
        resolve_execution("parallel", torch.device("cpu"), 2)


def test_spec_accepts_fused_and_auto_executions():
    for mode in ("fused", "auto"):
        configs = trial_configs(load_spec("digits", ["epochs=1", f"recipe.execution={mode!r}"]))
        assert {c["recipe"]["execution"] for c in configs} == {mode}


@pytest.fixture(scope="module")
def dct_trials():
    """The dct trial run sequential and fused: {mode: result}."""
    return {mode: run_trial(dct_config(mode), lambda r: None) for mode in ("sequential", "fused")}


def test_fused_trial_trains_digits_to_the_sequential_accuracies_within_float32_drift(dct_trials):
    seq, fus = dct_trials["sequential"], dct_trials["fused"]
    assert fus["final"]["status"] == "ok" and len(fus["epochs"]) == 2
    assert fus["epochs"][-1]["test_acc"] > 0.5  # chance is 0.1
    # Fused and sequential differ by float32 rounding only (grouped vs separate convolutions: ~1e-7 per step), but
    # SGD at lr 0.1 amplifies that to ~1e-2 in the weights within ~20 steps, as it amplifies any 1-ulp change of
    # the initial weights; near-chance early accuracies then move by a few % (measured <= 0.047 here). The float64
    # test below shows the two modes compute the same trial exactly.
    for s, f in zip(seq["epochs"], fus["epochs"], strict=True):
        assert f["test_acc"] == pytest.approx(s["test_acc"], abs=FP32_ACC_DRIFT)
        assert f["train_loss"] == pytest.approx(s["train_loss"], rel=5e-3)


def test_fused_trial_equals_sequential_epoch_by_epoch_in_float64(float64_members):
    runs = {mode: run_trial(dct_config(mode), lambda r: None)["epochs"] for mode in ("sequential", "fused")}
    for s, f in zip(runs["sequential"], runs["fused"], strict=True):
        assert (f["test_acc"], f["member_acc"]) == (s["test_acc"], s["member_acc"])
        assert f["train_loss"] == pytest.approx(s["train_loss"], rel=1e-9)
        assert f["test_loss"] == pytest.approx(s["test_loss"], rel=1e-9)


def test_trial_records_the_execution_that_ran(dct_trials):
    assert dct_trials["fused"]["final"]["execution"] == "fused"
    assert dct_trials["sequential"]["final"]["execution"] == "sequential"


def test_auto_on_cpu_runs_sequential_and_the_store_row_shows_it():
    config = make_config(design_point("deq"), epochs=1, execution="auto")
    result = run_trial(config, lambda r: None)
    row, _ = rows_from_result(config, result)
    assert result["final"]["execution"] == "sequential" and row["execution"] == "sequential"


def test_a_killed_fused_trial_resumes_to_the_uninterrupted_result(dct_trials, tmp_path):
    resumed, _ = kill_and_resume(dct_config("fused"), tmp_path, after_epoch=1)
    assert curve_of(resumed) == curve_of(dct_trials["fused"])
    assert resumed["final"]["execution"] == "fused"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fused_step_matches_sequential_on_cuda_in_fp32(family):
    # No autocast: fp32 on both sides; TF32 off so that both sides use full-precision convolutions.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        assert_steps_match(one_step(family, False, "cuda"), one_step(family, True, "cuda"))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
