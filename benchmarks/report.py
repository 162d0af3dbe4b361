"""Shared by the benchmarks: the machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

HEADER = """# Benchmarks

Every figure here was measured by the command shown with it, on the machine described with
it. Run them all with `make bench`; each run replaces its own section.
"""


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"model name\s*:\s*(.+)", text)
    return match.group(1).strip() if match else "unknown CPU"


def _memory_gib() -> str:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return "?"
    match = re.search(r"MemTotal:\s*(\d+) kB", text)
    return f"{int(match.group(1)) / 1024 / 1024:.0f} GiB" if match else "?"


def machine() -> str:
    import onnxruntime

    return (f"{_cpu()}, {os.cpu_count()} cores, {_memory_gib()} RAM, "
            f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
            f"onnxruntime {onnxruntime.__version__}, SQLite "
            f"{__import__('sqlite3').sqlite_version}")


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
