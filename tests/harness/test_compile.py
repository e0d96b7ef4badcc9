"""torch.compile as a trial option: the recipe keys map onto torch.compile's arguments, a compiled trial computes the
eager trial (float64, aot_eager: exactly), the first epoch carries the compilation, and rows record it.

The default run tests the compile plumbing with backend aot_eager, which generates no C++ and is deterministic on every
CPU. Inductor's C++ kernels have aborted the process on some hosts (torch 2.14.1 on an AVX-512 Xeon, issue 21), so
the product refuses inductor on a CPU unless the recipe opts in (`inductor_cpu = true`), and the tests that run those
kernels are opt-in (`pytest -m inductor_cpu`), in a child process; on a GPU machine the inductor trial runs on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from harness import compile_probe
from harness.fused import COMPILE_BACKENDS, COMPILE_MODES, compile_args, uses_cuda_graphs
from harness.store import rows_from_result
from harness.trial import run_trial
from spaces.spec import RECIPE_KEYS, SpecError, load_spec, trial_configs
from tests.harness.conftest import dct_config, design_point, make_config
from tests.isolation import in_child, skip_unless_inductor_cpu_survives


def test_compile_off_means_eager():
    assert compile_args("off") is None
    assert compile_args("off", "aot_eager") is None


def test_inductor_modes_pass_through_to_torch_compile():
    assert compile_args("default") == {"backend": "inductor", "mode": "default"}
    assert compile_args("reduce-overhead", "inductor") == {"backend": "inductor", "mode": "reduce-overhead"}


def test_other_backends_take_no_mode():
    assert compile_args("default", "cudagraphs") == {"backend": "cudagraphs"}
    with pytest.raises(ValueError, match="'max-autotune' is an inductor mode"):
        compile_args("max-autotune", "aot_eager")


def test_unknown_compile_mode_or_backend_is_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="unknown compile mode 'fast'; allowed: off, default"):
        compile_args("fast")
    with pytest.raises(ValueError, match="unknown compile backend 'tvm'; allowed: inductor, cudagraphs, aot_eager"):
        compile_args("default", "tvm")


def test_cuda_graph_modes_are_recognised():
    assert uses_cuda_graphs(compile_args("reduce-overhead"))
    assert uses_cuda_graphs(compile_args("max-autotune"))
    assert uses_cuda_graphs(compile_args("default", "cudagraphs"))
    assert not uses_cuda_graphs(compile_args("default"))
    assert not uses_cuda_graphs(compile_args("max-autotune-no-cudagraphs"))
    assert not uses_cuda_graphs(None)


def test_spec_allows_exactly_the_modes_and_backends_the_harness_runs():
    assert RECIPE_KEYS["compile"].allowed == COMPILE_MODES
    assert RECIPE_KEYS["compile_backend"].allowed == COMPILE_BACKENDS


def test_spec_default_is_eager_and_a_mode_reaches_every_trial():
    assert {c["recipe"]["compile"] for c in trial_configs(load_spec("digits", ["epochs=1"]))} == {"off"}
    configs = trial_configs(load_spec("digits", ["epochs=1", "resources.gpus=1", "recipe.compile='reduce-overhead'"]))
    assert {(c["recipe"]["compile"], c["recipe"]["compile_backend"]) for c in configs} == {
        ("reduce-overhead", "inductor")
    }


def test_spec_refuses_a_mode_for_a_backend_without_modes():
    with pytest.raises(SpecError) as info:
        load_spec("digits", ["recipe.compile='max-autotune'", "recipe.compile_backend='aot_eager'"])
    assert str(info.value).startswith("recipe.compile = 'max-autotune': backend 'aot_eager' has no modes")


@pytest.mark.parametrize("preset", ["mutual_digits", "coop_digits"])
def test_spec_refuses_compiling_the_eagerly_trained_adaptive_classes(preset):
    cls = preset.split("_")[0]
    with pytest.raises(SpecError) as info:
        load_spec(preset, ["recipe.compile='default'"])
    assert (
        str(info.value) == f"recipe.compile = 'default': {cls} trials run eagerly; set recipe.{cls}.compile = \"off\""
    )
    # Turning it off for the class alone makes the spec valid again (aot_eager: a CPU sweep, see issue 21).
    load_spec(preset, ["recipe.compile='default'", "recipe.compile_backend='aot_eager'", f"recipe.{cls}.compile='off'"])


@pytest.mark.parametrize("execution", ["sequential", "fused"])
def test_a_trial_compiled_by_aot_autograd_equals_the_eager_trial_in_float64(float64_members, execution):
    # aot_eager captures the graph (dynamo), traces forward and backward ahead of time (AOTAutograd) and runs them with
    # eager kernels: in float64 the captured trial must compute the same numbers as the eager one.
    eager = run_trial(dct_config(execution), lambda r: None)["epochs"]
    captured = run_trial(dct_config(execution, compile="default", compile_backend="aot_eager"), lambda r: None)[
        "epochs"
    ]
    for e, c in zip(eager, captured, strict=True):
        assert (c["test_acc"], c["member_acc"]) == (e["test_acc"], e["member_acc"])
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-9)
        assert c["test_loss"] == pytest.approx(e["test_loss"], rel=1e-9)


def test_a_cpu_spec_compiling_with_inductor_is_refused_in_one_line_naming_aot_eager():
    with pytest.raises(SpecError) as info:
        load_spec("digits", ["recipe.compile='default'"])
    assert str(info.value) == (
        "recipe.compile = 'default': inductor's C++ kernels on a CPU have aborted the process on some hosts; set"
        ' compile_backend = "aot_eager" (same graphs, eager kernels), or recipe.inductor_cpu = true to run them anyway'
    )


def test_a_class_scoped_inductor_compile_on_a_cpu_names_that_scope():
    with pytest.raises(SpecError, match=r"^recipe\.dct\.compile = 'default': .* or recipe\.dct\.inductor_cpu = true"):
        load_spec("digits", ["recipe.dct.compile='default'"])


def test_a_cpu_spec_may_compile_with_aot_eager_or_with_the_inductor_opt_in():
    load_spec("digits", ["recipe.compile='default'", "recipe.compile_backend='aot_eager'"])
    load_spec("digits", ["recipe.compile='default'", "recipe.inductor_cpu=true"])


def test_a_gpu_spec_compiles_with_inductor_without_the_opt_in():
    load_spec("digits", ["resources.gpus=1", "recipe.compile='default'"])


def test_inductor_on_a_cpu_without_the_opt_in_is_refused_by_the_trial_before_training():
    # A config that reaches the trial without the spec's check (a JSON config by hand, an older store).
    config = make_config(design_point("single"), epochs=1, compile="default")
    config["measure"]["threads"] = 2
    with pytest.raises(ValueError) as info:
        run_trial(config, lambda r: pytest.fail("no epoch may run"))
    assert str(info.value) == (
        "recipe.compile = 'default': inductor's C++ kernels on a CPU have aborted the process on some hosts; set"
        ' compile_backend = "aot_eager" (same graphs, eager kernels), or recipe.inductor_cpu = true to run them anyway'
    )


def test_inductor_on_a_cpu_with_one_thread_is_refused_before_training():
    config = make_config(design_point("single"), epochs=1, compile="default", inductor_cpu=True)
    assert config["measure"]["threads"] == 1
    with pytest.raises(ValueError, match="compile with backend inductor on a CPU needs >= 2 torch threads"):
        run_trial(config, lambda r: pytest.fail("no epoch may run"))


def test_an_opted_in_trial_on_a_torch_build_whose_probe_aborts_is_refused_before_training(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_probe, "PROBE_WORKLOAD", "tests.crashers:abort")  # stands in for a bad build
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    config = make_config(design_point("single"), epochs=1, compile="default", inductor_cpu=True)
    config["measure"]["threads"] = 2
    with pytest.raises(ValueError) as info:
        run_trial(config, lambda r: pytest.fail("no epoch may run"))
    assert str(info.value) == (
        "compile with backend inductor on a CPU: a probe training a compiled CIFAR ResNet with 2 torch thread(s) died"
        f' with SIGABRT on torch {torch.__version__}; set compile_backend = "aot_eager" or compile = "off" (or use'
        " another torch release)"
    )


def test_the_probe_answer_is_cached_per_torch_version_and_thread_count(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_probe, "PROBE_WORKLOAD", "tests.crashers:abort")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    first = compile_probe.inductor_cpu_probe(3)
    assert (first["ok"], first["signal"], first["torch"], first["threads"]) == (False, "SIGABRT", torch.__version__, 3)
    assert compile_probe.probe_cache_file(3) == (
        tmp_path / "harness_probe" / f"inductor-cpu_torch-{torch.__version__}_threads-3.json"
    )
    # Cached: a workload that would now succeed is not run again for the same version and thread count...
    monkeypatch.setattr(compile_probe, "PROBE_WORKLOAD", "tests.crashers:double")
    assert compile_probe.inductor_cpu_probe(3) == first
    # ...but another thread count is probed anew.
    assert compile_probe.inductor_cpu_probe(4)["ok"] is True


@pytest.fixture(scope="module")
def captured_trial():
    """A single resnet-8 (width 8) trained 2 epochs on digits with 2 threads, compiled with backend aot_eager:
    (config, result). aot_eager goes through the same plumbing as inductor (dynamo capture, AOTAutograd, graphs per
    input shape and mode) but runs eager kernels, so it is deterministic on every CPU. A fresh child process, so that
    the graph counts are this trial's alone."""
    config = make_config(design_point("single"), epochs=2, compile="default", compile_backend="aot_eager")
    config["measure"]["threads"] = 2
    return config, in_child("tests.isolation:run_trial_counting_graphs", config)


def test_a_compiled_trial_learns_digits(captured_trial):
    _, result = captured_trial
    assert result["final"]["status"] == "ok"
    assert result["epochs"][-1]["test_acc"] > 0.5  # chance is 0.1


def test_the_first_compiled_epoch_carries_the_compilation(captured_trial):
    # Counted, not timed: on a busy machine the epochs' times overlap, the graphs compiled in each epoch do not.
    # Epoch 1 captures the training graphs (full and last partial batch) and the evaluation graph; epoch 2 none.
    first, second = captured_trial[1]["graphs_by_epoch"]
    assert first >= 2
    assert second == first


def test_the_store_row_records_compile_and_the_steady_epoch_time(captured_trial):
    config, result = captured_trial
    row, _ = rows_from_result(config, result)
    assert (row["compile"], row["compile_backend"]) == ("default", "aot_eager")
    times = [e["epoch_time_s"] for e in result["epochs"]]
    # The steady time leaves out the first epoch, which carries the compilation (counted, not timed: see above).
    assert row["epoch_time_s_steady"] == pytest.approx(times[1])
    assert row["epoch_time_s_mean"] == pytest.approx(sum(times) / len(times))


@pytest.mark.inductor_cpu
def test_an_inductor_compiled_trial_on_the_cpu_learns_digits():
    # Opt-in (pytest -m inductor_cpu): inductor's C++ kernels abort the process on some hosts. In a child process,
    # with inductor's caches off, so a crash fails this test only and a cache hit hides nothing.
    skip_unless_inductor_cpu_survives(threads=2)
    config = make_config(design_point("single"), epochs=2, compile="default", inductor_cpu=True)
    config["measure"]["threads"] = 2
    no_cache = {"TORCHINDUCTOR_FX_GRAPH_CACHE": "0", "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
    result = in_child("tests.isolation:run_trial_counting_graphs", config, env=no_cache)
    assert result["final"]["status"] == "ok"
    assert result["epochs"][-1]["test_acc"] > 0.5  # chance is 0.1
    assert result["graphs_by_epoch"][0] >= 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_inductor_compiled_trial_on_cuda_learns_digits():
    config = make_config(design_point("single"), epochs=2, compile="default")
    config["resources"]["gpus"] = 1
    result = run_trial(config, lambda r: None)
    assert result["final"]["status"] == "ok"
    assert result["epochs"][-1]["test_acc"] > 0.5  # chance is 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("execution", ["sequential", "fused"])
def test_a_cuda_graphed_trial_on_cuda_learns_digits(execution):
    config = dct_config(execution, epochs=3, compile="reduce-overhead")
    config["resources"]["gpus"] = 1
    result = run_trial(config, lambda r: None)
    assert result["final"]["status"] == "ok" and result["final"]["execution"] == execution
    assert result["epochs"][-1]["test_acc"] > 0.5  # chance is 0.1
