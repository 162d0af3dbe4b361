"""Stored rows as plain tuples and back: shared by the SQL stores so every store stores and
reads a record the same way (JSON as text, times as sortable text, scope gaps as '')."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..timeutil import from_text, opt_from_text, opt_to_text, to_text
from ..types import SCOPE_FIELDS, HistoryEvent, Job, MemoryRecord, Message, Scope
from .base import Vector

COLS = (
    "id, tenant, user_id, agent_id, session_id, kind, text, role, speaker, hash, source_ids, "
    "tags, metadata, event_time, valid_from, valid_to, created_at, updated_at, status, "
    "version, superseded_by, importance, pinned, access_count, last_accessed_at, expires_at"
)
MSG_COLS = ("id, tenant, user_id, agent_id, session_id, role, name, content, event_time, "
            "created_at, metadata")
HIST_COLS = "id, memory_id, tenant, op, version, old_text, new_text, actor, reason, at"
JOB_COLS = ("id, tenant, user_id, agent_id, session_id, add_key, memory_ids, status, attempts, "
            "error, actions, usage, created_at, updated_at")
CHUNK = 500


def chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def blob(vector: Vector) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def scope_values(scope: Scope) -> tuple[str, str, str]:
    return (scope.user_id or "", scope.agent_id or "", scope.session_id or "")


def record_row(r: MemoryRecord) -> tuple[Any, ...]:
    return (
        r.id, r.tenant, r.user_id or "", r.agent_id or "", r.session_id or "", r.kind, r.text,
        r.role, r.speaker, r.hash, json.dumps(list(r.source_ids)), json.dumps(list(r.tags)),
        json.dumps(r.metadata, ensure_ascii=False), to_text(r.event_time),
        to_text(r.valid_from), opt_to_text(r.valid_to), to_text(r.created_at),
        to_text(r.updated_at), r.status, r.version, r.superseded_by, r.importance,
        int(r.pinned), r.access_count, opt_to_text(r.last_accessed_at),
        opt_to_text(r.expires_at),
    )


def record(row: Sequence[Any]) -> MemoryRecord:
    return MemoryRecord(
        id=row[0], tenant=row[1], user_id=row[2] or None, agent_id=row[3] or None,
        session_id=row[4] or None, kind=row[5], text=row[6], role=row[7], speaker=row[8],
        hash=row[9], source_ids=tuple(json.loads(row[10])), tags=tuple(json.loads(row[11])),
        metadata=json.loads(row[12]), event_time=from_text(row[13]),
        valid_from=from_text(row[14]), valid_to=opt_from_text(row[15]),
        created_at=from_text(row[16]), updated_at=from_text(row[17]), status=row[18],
        version=row[19], superseded_by=row[20], importance=row[21], pinned=bool(row[22]),
        access_count=row[23], last_accessed_at=opt_from_text(row[24]),
        expires_at=opt_from_text(row[25]),
    )


def message_row(m: Message) -> tuple[Any, ...]:
    return (m.id, m.tenant, m.user_id or "", m.agent_id or "", m.session_id or "", m.role,
            m.name, m.content, to_text(m.event_time), to_text(m.created_at),
            json.dumps(m.metadata, ensure_ascii=False))


def message(row: Sequence[Any]) -> Message:
    return Message(id=row[0], tenant=row[1], user_id=row[2] or None, agent_id=row[3] or None,
                   session_id=row[4] or None, role=row[5], name=row[6], content=row[7],
                   event_time=from_text(row[8]), created_at=from_text(row[9]),
                   metadata=json.loads(row[10]))


def event_row(e: HistoryEvent) -> tuple[Any, ...]:
    return (e.id, e.memory_id, e.tenant, e.op, e.version, e.old_text, e.new_text, e.actor,
            e.reason, to_text(e.at))


def job_row(j: Job) -> tuple[Any, ...]:
    return (j.id, j.tenant, j.user_id or "", j.agent_id or "", j.session_id or "", j.add_key,
            json.dumps(list(j.memory_ids)), j.status, j.attempts, j.error,
            json.dumps(list(j.actions)), json.dumps(j.usage), to_text(j.created_at),
            to_text(j.updated_at))


def job(row: Sequence[Any]) -> Job:
    return Job(id=row[0], tenant=row[1], user_id=row[2] or None, agent_id=row[3] or None,
               session_id=row[4] or None, add_key=row[5], memory_ids=tuple(json.loads(row[6])),
               status=row[7], attempts=row[8], error=row[9], actions=tuple(json.loads(row[10])),
               usage=json.loads(row[11]), created_at=from_text(row[12]),
               updated_at=from_text(row[13]))


def event(row: Sequence[Any]) -> HistoryEvent:
    return HistoryEvent(id=row[0], memory_id=row[1], tenant=row[2], op=row[3], version=row[4],
                        old_text=row[5], new_text=row[6], actor=row[7], reason=row[8],
                        at=from_text(row[9]))


def scope_pairs(scope: Scope) -> list[tuple[str, str]]:
    """The (column, value) pairs that select the rows inside ``scope``."""
    return [("tenant", scope.tenant), *((name, getattr(scope, name)) for name in SCOPE_FIELDS
                                        if getattr(scope, name) is not None)]


def scope_condition(scope: Scope, mark: str, alias: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions (joined with AND by the caller) for the rows inside ``scope``;
    ``mark`` is the driver's parameter marker."""
    prefix = f"{alias}." if alias else ""
    pairs = scope_pairs(scope)
    return [f"{prefix}{name} = {mark}" for name, _ in pairs], [value for _, value in pairs]
