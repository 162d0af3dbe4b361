"""Rendering CLI results: JSON for scripts (the default), plain tables for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from ..read.context import Context
from ..serialize import event_to_dict, job_to_dict, message_to_dict, record_to_dict
from ..types import HistoryEvent, Job, MemoryRecord, Message, SearchHit

TEXT_WIDTH = 72


def to_jsonable(value: Any) -> Any:
    """Turn results into plain JSON values."""
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, SearchHit):
        return value.to_dict()
    if isinstance(value, MemoryRecord):
        return record_to_dict(value)
    if isinstance(value, HistoryEvent):
        return event_to_dict(value)
    if isinstance(value, Message):
        return message_to_dict(value)
    if isinstance(value, Job):
        return job_to_dict(value)
    if isinstance(value, Context):
        return {"text": value.text, "tokens": value.tokens, "budget_tokens": value.budget_tokens,
                "complete": value.complete, "sources": value.sources,
                "memory_ids": [m.id for m in value.memories], "citations": value.citations,
                "cited": {ref: m.id for ref, m in value.cited.items()}}
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def render_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def _short(text: str, width: int = TEXT_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _row(value: Any) -> dict[str, str]:
    if isinstance(value, SearchHit):
        return {"score": f"{value.score:.3f}", **_row(value.memory), "id": value.id}
    if isinstance(value, MemoryRecord):
        return {"id": value.id, "when": value.event_time.strftime("%Y-%m-%d %H:%M"),
                "who": value.speaker or value.role or "", "text": _short(value.text),
                "sources": ",".join(value.source_ids)}
    if isinstance(value, HistoryEvent):
        return {"at": value.at.strftime("%Y-%m-%d %H:%M:%S"), "op": value.op,
                "version": str(value.version), "actor": value.actor,
                "text": _short(value.new_text or value.old_text or ""),
                "reason": value.reason or ""}
    if isinstance(value, Message):
        return {"id": value.id, "when": value.event_time.strftime("%Y-%m-%d %H:%M"),
                "who": value.name or value.role, "text": _short(value.content)}
    if isinstance(value, Job):
        return {"id": value.id, "status": value.status, "attempts": str(value.attempts),
                "calls": str(value.usage.get("calls", 0)),
                "actions": ",".join(a["action"] for a in value.actions),
                "error": _short(value.error or "", 40)}
    data = to_jsonable(value)
    if isinstance(data, dict):
        return {k: str(v) for k, v in data.items()}
    return {"value": str(data)}


def render_table(value: Any) -> str:
    if isinstance(value, Context):
        return value.text
    rows = [_row(v) for v in (value if isinstance(value, Sequence) else [value])]
    if not rows:
        return "(nothing)"
    headers = list(dict.fromkeys(k for r in rows for k in r))
    widths = {h: max(len(h), *(len(r.get(h, "")) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers).rstrip(),
             "  ".join("-" * widths[h] for h in headers)]
    lines += ["  ".join(r.get(h, "").ljust(widths[h]) for h in headers).rstrip() for r in rows]
    return "\n".join(lines)
