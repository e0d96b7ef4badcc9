"""The trial loop's structure: no import cycle in harness/, kind files independent of each other, and a new design
class added by one trial kind plus one vocabulary line, with no edit to the loop."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.kinds import KINDS
from harness.kinds.base import TrialKind
from harness.networks import build_members, evaluate, make_optimizer
from harness.trial import run_trial
from spaces.classes import CLASSES, DesignClass
from tests.harness.conftest import curve_of, design_point, make_config

HARNESS = Path(__file__).resolve().parents[2] / "harness"


def module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def harness_imports() -> dict[str, set[str]]:
    """Return module -> the harness modules it imports anywhere in its file (function-level imports included)."""
    modules = {module_name(p): p for p in HARNESS.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import module` imports that module; `from module import name` the module itself.
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]  # fmt: skip
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_walk_sees_the_loop_importing_the_kinds():
    graph = harness_imports()
    assert "harness.kinds" in graph["harness.loop"]
    assert "harness.kinds.base" in graph["harness.kinds.fixed"]


def test_harness_has_no_import_cycle():
    assert find_cycle(harness_imports()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_trial_kind_file_imports_another():
    graph = harness_imports()
    kinds = {m for m in graph if m.startswith("harness.kinds.") and m != "harness.kinds.base"}
    assert kinds == {"harness.kinds.fixed", "harness.kinds.mutual", "harness.kinds.coop"}
    for kind in kinds:
        assert not graph[kind] & (kinds | {"harness.kinds", "harness.loop", "harness.trial"}), kind


class ToyKind(TrialKind):
    """The loop docstring's toy kind: one network of the design trained on plain cross-entropy."""

    def __init__(self, setup):
        super().__init__(setup)
        self.models = build_members({**setup.design, "members": 1}, setup.seed, setup.device, False)
        self.optimizer = make_optimizer(self.models, setup.recipe)

    def train_batch(self, inputs, y, scale):
        with self.setup.amp:
            loss = F.cross_entropy(self.models[0](inputs[0]).float(), y)
        scale(loss).backward()
        return loss.detach()

    def evaluate(self):
        s = self.setup
        bs = s.recipe["eval_batch_size"]
        return evaluate(self.models, s.data, "logits", bs, s.device, s.amp, torch.contiguous_format)


def test_a_new_design_class_is_one_trial_kind_and_one_vocabulary_line(monkeypatch):
    monkeypatch.setitem(KINDS, "toy", ToyKind)
    monkeypatch.setitem(CLASSES, "toy", DesignClass("toy", False, "same_network_for", "toy", None, "#17becf"))
    single = make_config(design_point("single"), epochs=2)
    toy = make_config(dataclasses.replace(design_point("single"), design_class="toy"), epochs=2)
    toy_result, single_result = run_trial(toy, lambda r: None), run_trial(single, lambda r: None)
    assert toy_result["final"]["status"] == "ok"
    # Plain CE on one network is what the fixed kind computes for a single network: the same numbers, exactly.
    assert curve_of(toy_result) == curve_of(single_result)
    assert toy_result["final"]["params_total"] == single_result["final"]["params_total"]
