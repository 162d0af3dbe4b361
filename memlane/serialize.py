"""Plain-JSON forms of the stored values, used by export/import, the CLI and the servers.

Every ``*_from_dict`` reverses its ``*_to_dict`` exactly; a property test keeps it so. A
value that has a ``to_dict`` method makes its own form.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .errors import InvalidInputError
from .read.context import Context
from .store.base import ApiKey, EraseCounts, ScopeCounts
from .timeutil import from_text, opt_from_text, opt_to_text, to_text
from .types import (
    RECORD_OPT_TIMES,
    RECORD_TIMES,
    HistoryEvent,
    Job,
    MemoryRecord,
    Message,
    SearchHit,
    SignalDetail,
)


def record_to_dict(record: MemoryRecord) -> dict[str, Any]:
    return record.to_dict()


def record_from_dict(data: dict[str, Any]) -> MemoryRecord:
    try:
        values = dict(data)
        for name in RECORD_TIMES:
            values[name] = from_text(values[name])
        for name in RECORD_OPT_TIMES:
            values[name] = opt_from_text(values.get(name))
        values["source_ids"] = tuple(values.get("source_ids", ()))
        values["tags"] = tuple(values.get("tags", ()))
        known = MemoryRecord.__dataclass_fields__
        return MemoryRecord(**{k: v for k, v in values.items() if k in known})
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"not a memory record: {exc}") from exc


def event_to_dict(event: HistoryEvent) -> dict[str, Any]:
    return event.to_dict()


def event_from_dict(data: dict[str, Any]) -> HistoryEvent:
    try:
        values = {k: data[k] for k in HistoryEvent.__dataclass_fields__}
        values["at"] = from_text(values["at"])
        return HistoryEvent(**values)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"not a history event: {exc}") from exc


def message_to_dict(message: Message) -> dict[str, Any]:
    out = {name: getattr(message, name) for name in Message.__dataclass_fields__}
    out["event_time"] = to_text(message.event_time)
    out["created_at"] = to_text(message.created_at)
    return out


def message_from_dict(data: dict[str, Any]) -> Message:
    try:
        values = {k: data[k] for k in Message.__dataclass_fields__}
        values["event_time"] = from_text(values["event_time"])
        values["created_at"] = from_text(values["created_at"])
        return Message(**values)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"not a message: {exc}") from exc


def job_to_dict(job: Job) -> dict[str, Any]:
    out = {name: getattr(job, name) for name in Job.__dataclass_fields__}
    out.update(created_at=to_text(job.created_at), updated_at=to_text(job.updated_at),
               memory_ids=list(job.memory_ids), actions=list(job.actions))
    return out


def job_from_dict(data: dict[str, Any]) -> Job:
    try:
        values = {k: data[k] for k in Job.__dataclass_fields__}
        values.update(created_at=from_text(values["created_at"]),
                      updated_at=from_text(values["updated_at"]),
                      memory_ids=tuple(values["memory_ids"]), actions=tuple(values["actions"]))
        return Job(**values)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"not a job: {exc}") from exc


def hit_to_dict(hit: SearchHit) -> dict[str, Any]:
    return hit.to_dict()


def hit_from_dict(data: dict[str, Any]) -> SearchHit:
    """A hit back from ``hit_to_dict`` (its score as rounded there)."""
    try:
        explain = data.get("explain")
        return SearchHit(
            memory=record_from_dict(data["memory"]), score=data["score"],
            memory_ids=tuple(data["memory_ids"]),
            explain=None if explain is None else {
                name: SignalDetail(d["rank"], d["raw_score"], d["contribution"])
                for name, d in explain.items()})
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"not a search hit: {exc}") from exc


def key_to_dict(key: ApiKey) -> dict[str, Any]:
    """A key as listings show it: everything but its hash."""
    return {"id": key.id, "tenant": key.tenant, "prefix": key.prefix, "users": list(key.users),
            "read_only": key.read_only, "admin": key.admin, "label": key.label,
            "created_at": to_text(key.created_at), "revoked_at": opt_to_text(key.revoked_at)}


def context_to_dict(context: Context) -> dict[str, Any]:
    """A packed context with the memories it shows (whole records) and their references;
    ``sources`` and ``citations`` are derived from them, for readers without the class."""
    return {"text": context.text, "memories": [record_to_dict(m) for m in context.memories],
            "tokens": context.tokens, "budget_tokens": context.budget_tokens,
            "complete": context.complete, "refs": list(context.refs),
            "sources": context.sources, "citations": context.citations}


def context_from_dict(data: dict[str, Any]) -> Context:
    try:
        return Context(text=data["text"], memories=[record_from_dict(m) for m in data["memories"]],
                       tokens=data["tokens"], budget_tokens=data["budget_tokens"],
                       complete=data["complete"], refs=tuple(data["refs"]))
    except (KeyError, TypeError) as exc:
        raise InvalidInputError(f"not a context: {exc}") from exc


def erase_counts_to_dict(counts: EraseCounts) -> dict[str, Any]:
    return asdict(counts)


def erase_counts_from_dict(data: dict[str, Any]) -> EraseCounts:
    try:
        return EraseCounts(**data)
    except TypeError as exc:
        raise InvalidInputError(f"not erase counts: {exc}") from exc


def scope_counts_to_dict(counts: ScopeCounts) -> dict[str, Any]:
    return asdict(counts)


def scope_counts_from_dict(data: dict[str, Any]) -> ScopeCounts:
    try:
        return ScopeCounts(**data)
    except TypeError as exc:
        raise InvalidInputError(f"not scope counts: {exc}") from exc
