"""Rules the code and the tests keep: small modules, and tests that use only public names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

MAX_MODULE_LINES = 500
OVERSIZED: dict[str, str] = {}
"""Modules still over the limit, each with what is being done about it."""

PRIVATE_ALLOWED: dict[str, str] = {
    # "sys._getframe": "why the test needs it",
}
"""Private attributes a test may still read, as ``owner._name`` written in the test, each
with the reason no public way exists."""


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str, filename: str = "<test>") -> list[str]:
    """``line: owner._name`` for every attribute access to a private name in ``source``
    (``getattr``-style calls with a literal private name included)."""
    found = [(node.lineno, ast.unparse(node)) for node in ast.walk(ast.parse(source, filename))
             if _private_access(node)]
    return [f"{line}: {text}" for line, text in sorted(found) if text not in PRIVATE_ALLOWED]


def _private_access(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return _is_private(node.attr)
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str) and _is_private(node.args[1].value))


@pytest.mark.parametrize("path", sorted((ROOT / "tests").glob("*.py")), ids=lambda p: p.name)
def test_tests_use_no_private_attributes(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8"), str(path)) == []


def test_the_private_attribute_check_finds_each_form() -> None:
    source = ("store._index.size\nobj.__dict__\nx = getattr(y, '_rows')\n"
              "setattr(a, 'public', 1)\nargparse._SubParsersAction\n")
    assert private_uses(source) == ["1: store._index", "3: getattr(y, '_rows')",
                                    "5: argparse._SubParsersAction"]


def test_no_module_is_over_500_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for p in (ROOT / "memlane").rglob("*.py")}
    assert len(sizes) > 50
    over = {path for path, n in sizes.items() if n > MAX_MODULE_LINES}
    assert over - set(OVERSIZED) == set(), "split these modules"
    assert set(OVERSIZED) - over == set(), "these are small now: remove them from OVERSIZED"
