"""``memlane import``: a memlane export, LoCoMo conversations or BEAM chats.

A bad message (one ``add`` refuses, or an export line that does not read) costs only
itself. With ``--on-error skip`` (the default) it is left out, everything else is stored,
and the result lists each one left out (``rejected``: where, and why); with ``--on-error
stop`` the import ends at the first, keeping what was stored before it (``stopped``). Either
way each is also said on stderr, and the command exits with ``EXIT_PARTIAL``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..exchange import beam, locomo
from ..exchange.jsonl import import_report_to_dict, split_bad_lines
from ..memory import Memory
from .parser import Partial

FORMATS = ("auto", "jsonl", "locomo", "beam")


def detect(path: Path, given: str) -> str:
    """The format of ``path``: ``given``, or for "auto" by its suffix and layout."""
    if given != "auto":
        return given
    if path.suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    return "beam" if beam.looks_like(path) else "locomo"


def run(mem: Memory, a: argparse.Namespace) -> Any:
    path = Path(a.file)
    fmt = detect(path, a.format)
    if fmt == "locomo":
        result = locomo.ingest(mem, locomo.load(path), user_prefix=a.user_prefix,
                               progress=not a.quiet, on_error=a.on_error, file=str(path))
    elif fmt == "beam":
        result = beam.ingest(mem, beam.load(path), user_prefix=a.user_prefix,
                             progress=not a.quiet, on_error=a.on_error)
    else:
        result = _export(mem, path, a)
    return _finish(result)


def _export(mem: Memory, path: Path, a: argparse.Namespace) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as lines:
            kept, bad = split_bad_lines(lines, stop=a.on_error == "stop")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    report = import_report_to_dict(mem.import_(kept, progress=not a.quiet))
    rejected = [{"file": str(path), "line": str(b.number),
                 **({"message": b.id} if b.id else {}), "reason": b.reason} for b in bad]
    return {**report, "rejected": rejected, "stopped": bool(bad) and a.on_error == "stop"}


def _finish(result: dict[str, Any]) -> Any:
    """Say on stderr what was left out; a result with anything left out is ``Partial``."""
    rejected = result["rejected"]
    for item in rejected:
        where = ", ".join(f"{k} {v}" for k, v in item.items() if k != "reason")
        verb = "stopped at" if result["stopped"] else "left out"
        print(f"memlane: import {verb} {where}: {item['reason']}", file=sys.stderr)
    if not rejected:
        return result
    if result["stopped"]:
        print("memlane: import stopped at the first bad message: what came before it is "
              "stored, nothing after it", file=sys.stderr)
    else:
        print(f"memlane: import left out {len(rejected)} bad message(s) and stored the rest",
              file=sys.stderr)
    return Partial(result)
