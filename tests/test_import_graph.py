"""The project's modules import each other without cycles.

Every ``import`` and ``from ... import`` in ``trio_dspy`` counts, function-level
ones included; only imports under ``if TYPE_CHECKING:`` are left out (they never
run). ``from pkg import name`` imports the submodule ``pkg.name`` when there is
one, else the package ``pkg`` itself. A cycle makes the import order matter and
ties the layers together, so the test prints the first cycle it finds.

Inside one package the rule is stricter: the imports written at module level,
those under ``if TYPE_CHECKING:`` included, form no cycle either. Two modules
that need each other's names, even for type hints only, share a third that
holds what both need.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import trio_dspy

PACKAGE = "trio_dspy"
ROOT = Path(trio_dspy.__file__).resolve().parent


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """The statements run at import: module level, inside ``if``/``try``/``with``
    blocks (``if TYPE_CHECKING:`` included), not inside functions or classes."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(
    name: str, path: Path, modules: dict[str, Path], *, module_level: bool = False
) -> set[str]:
    """The project modules that module ``name`` (at ``path``) imports when it runs;
    with ``module_level``, those its module-level statements name, type-only included."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # The innermost project module named by ``target`` (``a.b.C`` -> ``a.b``).
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    walk = _module_level_nodes if module_level else _runtime_nodes
    for node in walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module name -> the project modules it imports."""
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def package_graph() -> dict[str, set[str]]:
    """Module name -> the modules of its own package it names at module level.

    A module's package is the package itself for an ``__init__``, else its
    parent; the edges kept go to that package or to its direct modules.
    """
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = imports_of(name, path, modules, module_level=True)
        graph[name] = {t for t in found if t == package or t.rpartition(".")[0] == package}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` if it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_relative_and_submodule_imports_resolve(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import leaf\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n"
        "    from .ignored import x\n"
        "def f():\n"
        "    import trio_dspy.late\n"
    )
    modules = {
        f"{PACKAGE}.sub": pkg / "sub" / "__init__.py",
        f"{PACKAGE}.sub.leaf": pkg / "sub" / "leaf.py",
        f"{PACKAGE}.sub.mod": pkg / "sub" / "mod.py",
        f"{PACKAGE}.sub.ignored": pkg / "sub" / "ignored.py",
        f"{PACKAGE}.other": pkg / "other.py",
        f"{PACKAGE}.late": pkg / "late.py",
    }
    modules[f"{PACKAGE}.sub.mod"].write_text(source)
    found = imports_of(f"{PACKAGE}.sub.mod", modules[f"{PACKAGE}.sub.mod"], modules)
    assert found == {f"{PACKAGE}.sub.leaf", f"{PACKAGE}.other", f"{PACKAGE}.late"}


def test_project_imports_are_acyclic() -> None:
    graph = import_graph()
    assert len(graph) > 20  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_module_level_imports_inside_a_package_are_acyclic() -> None:
    cycle = find_cycle(package_graph())
    assert cycle is None, "module-level import cycle inside a package: " + " -> ".join(cycle or [])


def test_type_only_imports_count_at_module_level_but_not_inside_functions(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from .typed import T\n"
        "def f():\n"
        "    from .late import x\n"
    )
    modules = {
        f"{PACKAGE}.pkg.mod": pkg / "mod.py",
        f"{PACKAGE}.pkg.typed": pkg / "typed.py",
        f"{PACKAGE}.pkg.late": pkg / "late.py",
    }
    modules[f"{PACKAGE}.pkg.mod"].write_text(source)
    path = modules[f"{PACKAGE}.pkg.mod"]
    at_import = imports_of(f"{PACKAGE}.pkg.mod", path, modules, module_level=True)
    assert at_import == {f"{PACKAGE}.pkg.typed"}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("trio_dspy.messages", {"trio_dspy.primitives", "trio_dspy.unicode"}),
        ("trio_dspy.primitives", set()),
        ("trio_dspy.unicode", set()),
        ("trio_dspy.runlocal", set()),
        ("trio_dspy.errors", set()),
        ("trio_dspy.adapters.markers", set()),
    ],
)
def test_leaf_modules_import_no_more_of_the_project(module: str, allowed: set[str]) -> None:
    assert import_graph()[module] <= allowed
