"""The trial loop's structure: no import cycle in harness/, kind files independent of each other, and a new design
class added by one trial kind plus one vocabulary line, with no edit to the loop."""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from pathlib import Path

from harness import loop
from harness.kinds import base
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


def docstring_example() -> tuple[str, str]:
    """Return (the toy kind's file, the toy's vocabulary line) as the loop module's docstring shows them."""
    example = loop.__doc__.split("A toy example:")[1].split("\nDecisions")[0]
    lines = textwrap.dedent(example).splitlines()
    file_end = next(i for i, line in enumerate(lines) if line.startswith("register_kind("))
    vocabulary = next(line for line in lines if line.startswith("DesignClass("))
    return "\n".join(lines[: file_end + 1]), vocabulary.rstrip(",")


def test_a_new_design_class_is_one_trial_kind_and_one_vocabulary_line(monkeypatch):
    # The loop docstring's toy, as written there: its kind file registers itself, its line joins the vocabulary.
    kind_file, vocabulary_line = docstring_example()
    monkeypatch.setattr(base, "KINDS", dict(base.KINDS))
    exec(compile(kind_file, "harness/kinds/toy.py", "exec"), {})
    monkeypatch.setitem(CLASSES, "toy", eval(vocabulary_line, {"DesignClass": DesignClass}))
    single = make_config(design_point("single"), epochs=2)
    toy = make_config(dataclasses.replace(design_point("single"), design_class="toy"), epochs=2)
    toy_result, single_result = run_trial(toy, lambda r: None), run_trial(single, lambda r: None)
    assert toy_result["final"]["status"] == "ok"
    # Plain CE on one network is what the fixed kind computes for a single network: the same numbers, exactly.
    assert curve_of(toy_result) == curve_of(single_result)
    assert toy_result["final"]["params_total"] == single_result["final"]["params_total"]
