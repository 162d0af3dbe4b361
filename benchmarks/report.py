"""Shared by the benchmarks: the machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import re
from pathlib import Path

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
