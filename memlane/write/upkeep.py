"""Changes to stored memories: a new text, a soft delete, and the derived memories they
touch.

A window shows its turns as they are: when one of them changes or is deleted, the windows
that show it are rebuilt in the same batch, and a window left with no turn is deleted. The
passages of a long message are cut again from a changed turn, and deleted with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .. import kinds
from ..embed.base import Embedder
from ..filters import parse
from ..store.base import RecordQuery, RecordUpdate, Store, Vector, WriteBatch
from ..timeutil import utcnow
from ..types import HistoryEvent, MemoryRecord, Scope, Status, content_hash
from . import passages, vectors, windows
from .history import check_note, event

SYSTEM = "system"
LIVE: tuple[Status, ...] = ("active", "superseded", "archived")
SEEN: tuple[Status, ...] = ("active", "superseded", "deleted")


def update(store: Store, embedder: Embedder, current: MemoryRecord, text: str,
           metadata: Mapping[str, Any], actor: str, reason: str | None) -> MemoryRecord:
    """Write ``current`` with a new (checked) text and merged metadata, as a new version."""
    new = replace(current, text=text, hash=content_hash(text),
                  metadata={**current.metadata, **metadata},
                  version=current.version + 1, updated_at=utcnow())
    if new.kind == kinds.TURN:  # its passages' vectors are cached for refresh_passages
        vector = vectors.turn_vector(embedder, new.text, new.speaker)
    else:
        vector = embedder.embed([new.index_text], "document")[0]
    touched = _touched(store, embedder, new)
    check_note(actor, reason)
    store.write(WriteBatch(
        scope=current.scope, updates=[RecordUpdate(new, current.version, vector),
                                      *touched.updates],
        inserts=touched.inserts,
        events=[event(new, "update", current.text, text, actor, reason), *touched.events],
    ))
    return new


def delete(store: Store, embedder: Embedder, current: MemoryRecord, actor: str,
           reason: str | None) -> MemoryRecord:
    """Soft-delete ``current`` (and, for a turn, rebuild the windows that showed it and
    delete its passages)."""
    new = deleted(current)
    touched = _touched(store, embedder, new)
    check_note(actor, reason)
    store.write(WriteBatch(
        scope=current.scope, updates=[RecordUpdate(new, current.version), *touched.updates],
        inserts=touched.inserts,
        events=[event(new, "delete", current.text, None, actor, reason), *touched.events],
    ))
    return new


def delete_all(store: Store, scope: Scope, actor: str, reason: str | None) -> int:
    """Soft-delete every memory of ``scope``; return how many were not derived."""
    records = store.find(RecordQuery(scope, statuses=LIVE))
    if not records:
        return 0
    check_note(actor, reason)
    updates, events = [], []
    for record in records:
        new = deleted(record)
        updates.append(RecordUpdate(new, record.version))
        events.append(event(new, "delete", record.text, None, actor, reason))
    store.write(WriteBatch(scope=scope, updates=updates, events=events))
    return sum(1 for r in records if r.kind not in kinds.DERIVED_KINDS)


def deleted(record: MemoryRecord) -> MemoryRecord:
    return replace(record, status="deleted", version=record.version + 1, updated_at=utcnow())


@dataclass(frozen=True, slots=True)
class Touched:
    """What a change to a turn changes in the memories derived from it."""

    updates: list[RecordUpdate]
    inserts: list[tuple[MemoryRecord, Vector]]
    events: list[HistoryEvent]


def _touched(store: Store, embedder: Embedder, new: MemoryRecord) -> Touched:
    if new.kind != kinds.TURN:
        return Touched([], [], [])
    updates, events = refresh_windows(store, embedder, new)
    gone, inserts, changes = refresh_passages(store, embedder, new)
    return Touched([*updates, *gone], inserts, [*events, *changes])


def refresh_passages(store: Store, embedder: Embedder, turn: MemoryRecord,
                     ) -> tuple[list[RecordUpdate], list[tuple[MemoryRecord, Vector]],
                                list[HistoryEvent]]:
    """The passages of a changed turn: the old ones deleted, and new ones cut from its text
    as it is now (none when the turn is deleted or its text is short)."""
    source = turn.source_ids[0]
    old = [p for p in store.find(RecordQuery(
        turn.scope, filters=parse({"source_ids": {"contains": source}}),
        kinds=(kinds.PASSAGE,))) if p.scope == turn.scope]
    updates = [RecordUpdate(deleted(p), p.version) for p in old]
    events = [event(deleted(p), "delete", p.text, None, SYSTEM, "its message changed")
              for p in old]
    inserts: list[tuple[MemoryRecord, Vector]] = []
    if turn.status != "deleted" and passages.is_long(turn.text):
        now = utcnow()
        embedded = vectors.embed_messages(embedder, [(turn.text, turn.speaker)])[0]
        inserts = [(passages.record(turn, passage, number, now), vector)
                   for number, (passage, vector) in enumerate(embedded.passages)]
        events += [event(r, "add", None, r.text, SYSTEM, "its message changed")
                   for r, _ in inserts]
    return updates, inserts, events


def refresh_windows(store: Store, embedder: Embedder,
                    turn: MemoryRecord) -> tuple[list[RecordUpdate], list[HistoryEvent]]:
    """New versions of the windows that show ``turn``, built from their turns as they
    are now; a deleted turn drops out, a window left with no turn is deleted."""
    source = turn.source_ids[0]
    affected = store.find(RecordQuery(
        turn.scope, filters=parse({"source_ids": {"contains": source}}),
        kinds=(kinds.WINDOW,)))
    updates, events = [], []
    for window in affected:
        lines = window_lines(store, embedder, window, turn)
        now = utcnow()
        if lines:
            new, vector = windows.rebuilt(window, lines, now)
            updates.append(RecordUpdate(new, window.version, vector))
            events.append(event(new, "update", window.text, new.text, SYSTEM,
                                "a turn of this window changed"))
        else:
            new = deleted(window)
            updates.append(RecordUpdate(new, window.version))
            events.append(event(new, "delete", window.text, None, SYSTEM,
                                "every turn of this window was deleted"))
    return updates, events


def window_lines(store: Store, embedder: Embedder, window: MemoryRecord,
                 changed: MemoryRecord) -> list[windows.Line]:
    """The lines of ``window`` with ``changed`` as it is now (a deleted turn left out)."""
    lines = []
    for source in window.source_ids:
        turns = [changed] if source == changed.source_ids[0] else store.find(
            RecordQuery(window.scope, filters=parse({"source_ids": {"contains": source}}),
                        kinds=(kinds.TURN,), statuses=SEEN))
        found = [t for t in turns if t.status != "deleted"]
        if found:
            turn = found[0]
            lines.append(windows.Line(source, turn.index_text,
                                      vectors.turn_vector(embedder, turn.text, turn.speaker)))
    return lines
