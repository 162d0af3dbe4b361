"""Documentation examples run as written (in a temporary home directory)."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import ROOT

BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def test_readme_example_runs(capsys: object) -> None:
    blocks = python_blocks(ROOT / "README.md")
    assert blocks
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    mem = namespace["mem"]
    assert mem.get_all(user_id="alice") == []  # type: ignore[attr-defined]  # forgotten
