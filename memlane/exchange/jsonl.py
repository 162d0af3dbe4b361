"""memlane's portable export: JSON lines holding messages, memories and their history.

Line 1 is a header; then one ``message`` line per raw message (those of deleted turns
included: the turn's ``deleted`` status, exported with it, hides them again once imported)
and one ``memory`` line per memory (every status) with its history. Vectors are not
exported: an import re-embeds with the importing store's model, so an export moves between
embedders and stores.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..serialize import (
    event_from_dict,
    event_to_dict,
    message_from_dict,
    message_to_dict,
    record_from_dict,
    record_to_dict,
)
from ..store.base import RecordQuery, Store, WriteBatch
from ..types import STATUSES, HistoryEvent, MemoryRecord, Message, Scope, content_hash

if TYPE_CHECKING:
    from ..memory import Memory

FORMAT = "memlane-export"
VERSION = 1
PAGE = 1_000


def export_lines(store: Store, tenant: str) -> Iterator[dict[str, Any]]:
    yield {"type": "header", "format": FORMAT, "version": VERSION, "tenant": tenant}
    scope = Scope(tenant)
    offset = 0
    while page := store.messages(scope, limit=PAGE, offset=offset, include_deleted=True):
        yield from ({"type": "message", **message_to_dict(m)} for m in page)
        offset += len(page)
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in store.iter_history(tenant):
        history[event.memory_id].append(event_to_dict(event))
    query = RecordQuery(scope, statuses=STATUSES)
    offset = 0
    while records := store.find(query, limit=PAGE, offset=offset):
        for record in records:
            yield {"type": "memory", **record_to_dict(record), "history": history[record.id]}
        offset += len(records)


def write_export(store: Store, tenant: str, out: IO[str]) -> int:
    """Write the export of one tenant; return the number of lines written."""
    count = 0
    for line in export_lines(store, tenant):
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count


ScopeKey = tuple[str, str | None, str | None, str | None]


def read_export(lines: Iterable[str]) -> dict[ScopeKey, tuple[list[Message],
                                                     list[MemoryRecord], list[HistoryEvent]]]:
    """Parse an export, grouped by scope; raise InvalidInputError on anything malformed."""
    groups: dict[ScopeKey, tuple[list[Message], list[MemoryRecord], list[HistoryEvent]]] = (
        defaultdict(lambda: ([], [], []))
    )
    saw_header = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"line {number} is not JSON: {exc}") from exc
        kind = row.pop("type", None) if isinstance(row, dict) else None
        if not saw_header:
            if kind != "header" or row.get("format") != FORMAT:
                raise InvalidInputError("not a memlane export (the first line is no header)")
            if row.get("version") != VERSION:
                raise InvalidInputError(f"unsupported export version {row.get('version')}")
            saw_header = True
        elif kind == "message":
            message = message_from_dict(row)
            groups[_key(message)][0].append(message)
        elif kind == "memory":
            events = [event_from_dict(e) for e in row.pop("history", [])]
            record = record_from_dict(row)
            groups[_key(record)][1].append(record)
            groups[_key(record)][2].extend(events)
        else:
            raise InvalidInputError(f"line {number}: unknown line type {kind!r}")
    if not saw_header:
        raise InvalidInputError("empty file: not a memlane export")
    return dict(groups)


def _key(item: Message | MemoryRecord) -> ScopeKey:
    return (item.tenant, item.user_id, item.agent_id, item.session_id)


def import_export(memory: Memory, lines: Iterable[str], *,
                  progress: bool = False) -> dict[str, int]:
    """Load an export into ``memory``'s tenant, re-embedding every memory.

    Each scope is written in one transaction keyed by its ids, so importing the same file
    twice stores nothing twice; the same ids with other texts are a ``ConflictError``.
    """
    from tqdm import tqdm

    groups = read_export(lines)
    counts = {"messages": 0, "memories": 0, "history": 0, "skipped_scopes": 0}
    for (_, user, agent, session), (messages, records, events) in tqdm(
        groups.items(), desc="import", unit="scope", disable=not progress
    ):
        scope = Scope(memory.tenant, user, agent, session)
        vectors = memory.embedder.embed([r.index_text for r in records], "document")
        key = "import:" + content_hash(*(m.id for m in messages), *(r.id for r in records))
        fingerprint = content_hash(*(f"{m.id}\0{m.content}" for m in messages),
                                   *(f"{r.id}\0{r.text}" for r in records))
        outcome = memory.store.write(WriteBatch(
            scope=scope, add_key=key, add_fingerprint=fingerprint,
            messages=[replace(m, tenant=scope.tenant) for m in messages],
            inserts=[(replace(r, tenant=scope.tenant), v)
                     for r, v in zip(records, vectors, strict=True)],
            events=[replace(e, tenant=scope.tenant) for e in events],
        ))
        if not outcome.applied:
            counts["skipped_scopes"] += 1
            continue
        counts["messages"] += len(messages)
        counts["memories"] += len(records)
        counts["history"] += len(events)
    return counts
