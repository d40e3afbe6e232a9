"""The package's shape: leaf modules, no import cycles, no private name imported across modules, tasks on one core.

Read from the source with `ast` (function-level imports included; `if TYPE_CHECKING:` blocks are not imports at run
time and are left out), so the test holds for imports that run late as well as at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bertlearn"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def bertlearn_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) pairs this file imports from bertlearn; name is None for `import bertlearn.x`."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "bertlearn" or target.startswith("bertlearn."):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    # `from . import x` names a submodule when one exists
                    if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                            (PACKAGE.parent / Path(*sub.split(".")) / "__init__.py").exists():
                        found.append((sub, None))
                    else:
                        found.append((target, alias.name))
        elif isinstance(node, ast.Import):
            found.extend((a.name, None) for a in node.names if a.name.startswith("bertlearn"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def import_graph() -> dict[str, list[tuple[str, str | None]]]:
    return {module_name(p): bertlearn_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def module_edges(graph: dict[str, list[tuple[str, str | None]]]) -> dict[str, set[str]]:
    """Module -> modules it imports, packages' `__init__` excluded as targets of their own members (a member
    importing its sibling through the package is what the package re-exports, checked by the cycle itself)."""
    return {mod: {target for target, _ in imports if target != mod} for mod, imports in graph.items()}


def test_graph_reader_sees_relative_function_level_and_type_checking_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "bertlearn"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom ..a import thing\nif TYPE_CHECKING:\n    from ..a import Hint\n"
        "def f():\n    from . import c\n    from ..a import _private\n")
    (pkg / "sub" / "c.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert bertlearn_imports(pkg / "sub" / "b.py") == [("bertlearn.a", "thing"), ("bertlearn.sub.c", None),
                                                         ("bertlearn.a", "_private")]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_cycles():
    cycle = find_cycle(module_edges(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_import_inside_bertlearn_resolves():
    """Imports that run late (inside functions) fail only when that code runs; check them all here."""
    import importlib

    unresolved = []
    for mod, imports in import_graph().items():
        for target, name in imports:
            try:
                module = importlib.import_module(target)
            except ImportError as e:
                unresolved.append(f"{mod}: {target} ({e})")
                continue
            if name is not None and name != "*" and not hasattr(module, name):
                unresolved.append(f"{mod}: {name} from {target}")
    assert not unresolved, "\n".join(unresolved)


def test_no_private_name_imported_from_another_module():
    crossings = [f"{mod} imports {name} from {target}" for mod, imports in import_graph().items()
                 for target, name in imports if name and name.startswith("_") and name != "__version__"]
    assert not crossings, "\n".join(crossings)


@pytest.mark.parametrize("leaf, allowed", [("bertlearn.errors", set()), ("bertlearn.atomic", set()),
                                           ("bertlearn.version", set()),
                                           # the exception hierarchy is the one thing device policy shares
                                           ("bertlearn.device", {"bertlearn.errors"})])
def test_leaf_modules_import_nothing_else_from_bertlearn(leaf, allowed):
    assert {target for target, _ in import_graph()[leaf]} <= allowed


def test_core_knows_no_task():
    """The core (data, learner, model, predictions, callbacks) never imports a task module; tasks import the core."""
    graph = import_graph()
    core = [m for m in graph if not m.startswith("bertlearn.tasks") and m not in ("bertlearn", "bertlearn.cli")]
    leaks = [f"{m} imports {t}" for m in core for t, _ in graph[m] if t.startswith("bertlearn.tasks")]
    assert not leaks, "\n".join(leaks)


def test_every_module_declares_all():
    missing = [module_name(p) for p in sorted(PACKAGE.rglob("*.py"))
               if p.name != "__main__.py" and "__all__" not in p.read_text()]
    assert not missing, f"modules without __all__: {missing}"


def test_tasks_share_one_core():
    from bertlearn import BertLearner, BertLMLearner, TaskLearner
    assert issubclass(BertLearner, TaskLearner) and issubclass(BertLMLearner, TaskLearner)
    # the loop, schedules and export are the core's, not re-implemented per task
    for name in ("fit", "lr_find", "export", "validate", "get_preds"):
        assert name not in vars(BertLearner) and name not in vars(BertLMLearner), name

