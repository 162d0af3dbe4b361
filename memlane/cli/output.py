"""Rendering CLI results: JSON for scripts (the default), plain tables for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from ..exchange.jsonl import ImportReport, Tally, import_report_from_dict
from ..read.context import Context
from ..serialize import event_to_dict, job_to_dict, message_to_dict, record_to_dict
from ..store.base import ScopeCounts
from ..types import STATUSES, HistoryEvent, Job, MemoryRecord, Message, SearchHit

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
        return {"id": value.id, "kind": value.kind, "status": value.status,
                "when": value.event_time.strftime("%Y-%m-%d %H:%M"),
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
    if isinstance(value, ScopeCounts):
        return {"user": value.user_id or "-", "agent": value.agent_id or "-",
                "session": value.session_id or "-", "memories": str(value.memories),
                "messages": str(value.messages)}
    return _flat(to_jsonable(value))


def _flat(data: Any, prefix: str = "") -> dict[str, str]:
    """A JSON value as cells: nested objects as ``outer.inner`` columns, lists joined."""
    if not isinstance(data, dict):
        text = ", ".join(map(str, data)) if isinstance(data, list) else str(data)
        return {prefix or "value": text}
    cells: dict[str, str] = {}
    for key, item in data.items():
        cells.update(_flat(item, f"{prefix}{key}.") if isinstance(item, dict)
                     else {f"{prefix}{key}": _flat(item)["value"]})
    return cells


def _with_signals(value: Any, row: dict[str, str]) -> dict[str, str]:
    """A search hit's row with each signal's rank and contribution after its first column."""
    if not isinstance(value, SearchHit) or value.explain is None:
        return row
    first, *rest = row.items()
    signals = [(name, f"#{d.rank} +{d.contribution:.4f}") for name, d in value.explain.items()]
    return dict([first, *signals, *rest])


def render_table(value: Any) -> str:
    if isinstance(value, Context):
        return value.text
    if isinstance(value, ImportReport):
        return render_import(value)
    items = value if isinstance(value, Sequence) else [value]
    return grid([_with_signals(v, _row(v)) for v in items])


def grid(rows: list[dict[str, str]], header: bool = True) -> str:
    """Rows as aligned columns (under a header line unless ``header`` is false)."""
    if not rows:
        return "(nothing)"
    headers = list(dict.fromkeys(k for r in rows for k in r))
    widths = {h: max(len(h) if header else 0, *(len(r.get(h, "")) for r in rows))
              for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers).rstrip(),
             "  ".join("-" * widths[h] for h in headers)] if header else []
    lines += ["  ".join(r.get(h, "").ljust(widths[h]) for h in headers).rstrip() for r in rows]
    return "\n".join(lines)


def render_stats(stats: dict[str, Any]) -> str:
    """``Memory.stats`` for people: a summary, memories by kind and status, jobs, LLM use."""
    scope = " ".join(f"{k}={v}" for k, v in stats["scope"].items())
    summary = [{"k": "scope", "v": scope}, {"k": "store", "v": stats["store"]},
               {"k": "embedder", "v": stats["embedder"]},
               {"k": "messages", "v": str(stats["messages"])}]
    memories = stats["memories"]
    rows = [{"kind": kind, **{s: str(by.get(s, 0)) for s in STATUSES},
             "total": str(sum(by.values()))} for kind, by in memories.items()]
    rows.append({"kind": "total", **{s: str(sum(by.get(s, 0) for by in memories.values()))
                                     for s in STATUSES},
                 "total": str(sum(sum(by.values()) for by in memories.values()))})
    jobs = [{"job status": status, "jobs": str(n)} for status, n in stats["jobs"].items()]
    usage = [{"llm usage": key, "total": str(n)} for key, n in stats["llm_usage"].items()]
    return "\n\n".join([grid(summary, header=False), grid(rows),
                        grid(jobs) if jobs else "jobs: none", grid(usage)])


def render_import(report: ImportReport) -> str:
    """An import's totals, its conflicts and the policy applied, then one line per scope."""
    def counts(t: Tally) -> str:
        return f"{t.messages} messages, {t.memories} memories"

    lines = [f"restored: {counts(report.restored)} ({report.history} history events)",
             f"skipped, already stored: {counts(report.skipped)}",
             f"conflicts: {counts(report.conflicts)}"]
    if report.reidentified:
        lines.append(f"restored under new ids (another tenant holds theirs): "
                     f"{report.reidentified} memories")
    if report.conflict_ids:
        lines += [f"conflict policy: {report.conflict_policy}",
                  f"conflicting ids: {', '.join(report.conflict_ids)}"]
    rows = [{"user": s.user_id or "-", "agent": s.agent_id or "-",
             "session": s.session_id or "-", "new": "yes" if s.created else "",
             "+messages": str(s.restored.messages), "+memories": str(s.restored.memories),
             "skipped": str(s.skipped.messages + s.skipped.memories),
             "conflicts": str(s.conflicts.messages + s.conflicts.memories)}
            for s in report.scopes]
    return "\n".join(lines) + "\n\n" + grid(rows)


def render_import_result(result: dict[str, Any]) -> str:
    """``memlane import``'s result: an export's report (as ``render_import``) or a
    conversation file's counts, then each message left out and why."""
    counts = {k: v for k, v in result.items() if k not in ("rejected", "stopped")}
    lines = [render_import(import_report_from_dict(counts)) if "conflict_policy" in counts
             else grid([{k: str(v) for k, v in counts.items()}])]
    if result["rejected"]:
        verb = "stopped at" if result["stopped"] else "left out"
        lines.append(f"\n{verb}:\n" + grid([{k: _short(v, 60) for k, v in r.items()}
                                               for r in result["rejected"]]))
    return "\n".join(lines)

