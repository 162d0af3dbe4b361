"""The library's modules import one another without a cycle.

Every import statement counts: at module level, inside functions (the optional backends
load there) and under ``TYPE_CHECKING``. A module that needs another only for a type still
depends on it, and a cycle between two modules means neither lies below the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "memlane"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, package: str, modules: set[str]) -> set[str]:
    """The modules of the library an import statement in ``package`` names."""
    top = next(iter(modules)).split(".")[0]
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == top}
    base = node.module or ""
    if node.level:
        parent = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, *([node.module] if node.module else [])])
    if base.split(".")[0] != top:
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` and the modules of it that it imports."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found |= _imported(node, package, set(paths))
        graph[module] = found - {module}
    return graph


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that comes back to where it started, if there is one."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        for dep in sorted(graph.get(module, ())):
            if cycle := visit(dep, [*path, module]):
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module, []):
            return cycle
    return None


def test_the_library_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "memlane.embed.onnx_minilm" in graph["memlane.opening"]  # imported in a function
    assert "memlane.erasure" in graph["memlane.errors"]  # imported for a type only
    cycle = first_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "low.py").write_text("def late():\n    from .sub import high\n    return high\n")
    (root / "sub" / "high.py").write_text("from .. import low\n")
    graph = import_graph(root)
    assert graph["pkg.low"] == {"pkg.sub.high"}
    assert first_cycle(graph) == ["pkg.low", "pkg.sub.high", "pkg.low"]
    (root / "low.py").write_text("import os\n")
    assert first_cycle(import_graph(root)) is None


LAYERS: dict[str, int] = {
    # values: plain data and rules
    "types": 0, "kinds": 0, "filters": 0, "errors": 0, "erasure": 0, "ids": 0,
    "timeutil": 0, "text": 0,
    # models: vectors, tokens and completions
    "embed": 1, "llm": 1, "prompts": 1, "tokens": 1,
    # the store
    "store": 2,
    # stages: the work of add, search and exchange, and what they share
    "write": 3, "read": 3, "validate": 3, "opening": 3, "serialize": 3, "exchange.jsonl": 3,
    # the facade
    "memory": 4, "aio": 4,
    # doors: people and programs
    "cli": 5, "server": 5, "mcp": 5, "remote": 5, "auth": 5, "exchange": 5, "eval": 5,
    "dev": 5, "demo": 5,
}
"""Each part of the library and its layer (docs/architecture.md); a module may import its
own layer and the ones below, never one above."""


def layer_of(module: str) -> int | None:
    parts = module.split(".")[1:]  # without the package's own name
    for n in range(len(parts), 0, -1):
        found = LAYERS.get(".".join(parts[:n]))
        if found is not None:
            return found
    return None


def test_imports_point_down_the_layers() -> None:
    graph = import_graph(PACKAGE)
    modules = [m for m in graph if m != "memlane"]  # the package exports from every layer
    assert [m for m in modules if layer_of(m) is None] == [], "give these modules a layer"
    upward = sorted(f"{m} -> {d}" for m in modules for d in graph[m]
                    if d != "memlane" and layer_of(d) > layer_of(m))  # type: ignore[operator]
    assert upward == []
