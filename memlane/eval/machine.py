"""A one-line description of the machine a measurement ran on."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


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


def describe() -> str:
    return (f"{_cpu()}, {os.cpu_count()} cores, {_memory_gib()} RAM, "
            f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
            f"onnxruntime {_version('onnxruntime')}, SQLite {sqlite3.sqlite_version}")


def _version(package: str) -> str:
    """From the package metadata: loading onnxruntime would start its telemetry."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"
