"""The package's modules import each other without cycles: the import graph of ``outreach``,
read from the source with ``ast`` (imports inside functions included, ``TYPE_CHECKING`` blocks
left out), has no strongly connected component larger than one module. And every module
imports on its own."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "outreach"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The ``outreach`` modules that importing ``name`` may import (directly)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def add(target: str) -> None:
        # importing a.b.c runs a/__init__ and a/b/__init__ too; a module's own packages are
        # left out (they are always initialised first: no design dependency)
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if candidate in known and not (name + ".").startswith(candidate + "."):
                found.add(candidate)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("outreach"):
                        add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    module = f"{base}.{child.module}" if child.module else base
                else:
                    module = child.module or ""
                if module.startswith("outreach"):
                    add(module)
                    for alias in child.names:
                        add(f"{module}.{alias.name}")  # `from outreach import events`
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_package_has_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert "outreach.report_formats" in graph["outreach.cli"]  # the walk sees lazy imports
    found = cycles(graph)
    assert found == [], "import cycles (break them: the model must not import its views): " + (
        "; ".join(" ↔ ".join(c) for c in found)
    )


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_report_model_depends_on_no_format() -> None:
    known = modules()
    deps = imports("outreach.report", known["outreach.report"], known)
    assert not deps & {
        "outreach.report_formats",
        "outreach.report_html",
        "outreach.report_table",
        "outreach.console_tracking",
        "outreach.web",
    }


# Alembic's scripts run only inside Alembic (outreach.store.migrate runs them)
ALEMBIC_SCRIPTS = "outreach.store.migrations."


@pytest.mark.parametrize("name", sorted(n for n in modules() if not n.startswith(ALEMBIC_SCRIPTS)))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)
