"""Shared by the benchmarks: the machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEADER = """# Benchmarks

Every figure here was measured by the command shown with it, on the machine described with
it. Run them all with `make bench`; each run replaces its own section.
"""


def update_section(path: Path, title: str, body: str) -> None:
    """Replace the section headed ``## title`` (or append it), keeping the others."""
    text = path.read_text() if path.exists() else HEADER
    heading = f"## {title}"
    block = f"{heading}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def publish(name: str, title: str, result: dict[str, Any], markdown: str) -> None:
    """Write a benchmark's ``result`` to benchmarks/results/NAME.json and its ``markdown``
    as the section ``title`` of docs/benchmarks.md."""
    root = Path(__file__).resolve().parent.parent
    results = root / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    update_section(root / "docs" / "benchmarks.md", title, markdown)


def report(name: str, title: str, result: dict[str, Any],
           render: Callable[[dict[str, Any], str], str], argv: list[str] | None,
           no_report: bool) -> None:
    """Print ``result``; unless ``no_report``, ``publish`` it with its section rendered for
    the command it ran with (``benchmarks.NAME``)."""
    print(json.dumps(result, indent=2))
    if not no_report:
        publish(name, title, result, render(result, command(f"benchmarks.{name}", argv)))


def command(module: str, argv: list[str] | None) -> str:
    """The command line a benchmark ran with, as the docs quote it."""
    return f"python -m {module}" + "".join(f" {a}" for a in (
        argv if argv is not None else sys.argv[1:]))
