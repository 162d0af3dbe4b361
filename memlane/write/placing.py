"""An add's place in its conversation: the windows it writes and the stored windows it
changes, built on the conversation's newest messages as the store holds them.

What this reads goes with the batch as its ``Basis``; the store writes the batch only if the
conversation is still that (``store.base.check_basis``), so concurrent adds to one
conversation cannot build windows on turns that are no longer the ones before them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import kinds
from ..embed.base import Embedder
from ..filters import parse
from ..store.base import Basis, RecordQuery, Store, Vector, depended
from ..types import MemoryRecord, Message, Scope, index_text
from . import vectors, windows

LOOKBACK = windows.WINDOW_TURNS - 1


@dataclass(frozen=True, slots=True)
class Placed:
    """The windows of an add: new ones, new versions of stored ones (each with the window
    it replaces), and the part of the conversation they were built on."""

    inserts: list[tuple[MemoryRecord, Vector]]
    rebuilt: list[tuple[MemoryRecord, MemoryRecord, Vector]]
    basis: Basis


def place(store: Store, embedder: Embedder, msgs: list[Message], turns: list[MemoryRecord],
          vectors: list[Vector], now: datetime, known: list[Message]) -> Placed:
    """The windows that the new ``turns`` (of ``msgs``, with their ``vectors``) create or
    change. ``known``: the conversation's newest messages if a refused write just read them."""
    scope = turns[0].scope
    earliest = min(m.event_time for m in msgs)
    existing = _depended(store, scope, earliest, known)[::-1]
    spans = windows.spans(existing, msgs)
    lines = _message_lines(embedder, [m for m in existing if any(m.id in s for s in spans)])
    lines.update((t.source_ids[0], windows.Line(t.source_ids[0], t.index_text, v))
                 for t, v in zip(turns, vectors, strict=True))
    own = {t.source_ids[0]: t for t in turns}
    inserts = [windows.build([lines[s] for s in span], own[span[-1]], now)
               for span in spans if span[-1] in own]
    stored = _own_windows(store, scope, {s[-1] for s in spans if s[-1] not in own})
    rebuilt = [(old, *windows.rebuilt(old, [lines[s] for s in span], now))
               for span in spans if (old := stored.get(span[-1])) is not None]
    basis = Basis(tuple(m.id for m in reversed(existing)), earliest, LOOKBACK)
    return Placed(inserts, rebuilt, basis)


def _depended(store: Store, scope: Scope, earliest: datetime,
              known: list[Message]) -> list[Message]:
    """The newest messages of the conversation that an add at ``earliest`` depends on
    (``store.base.depended``), newest first: from ``known`` if they reach back far enough,
    else read, further back as needed."""
    if depended(known, earliest, LOOKBACK) < len(known):
        return known[:depended(known, earliest, LOOKBACK)]
    limit = max(LOOKBACK + 1, 2 * len(known))
    while True:
        recent = store.recent_messages(scope, limit)
        n = depended(recent, earliest, LOOKBACK)
        if n < len(recent) or len(recent) < limit:
            return recent[:n]
        limit *= 4


def _message_lines(embedder: Embedder, messages: list[Message]) -> dict[str, windows.Line]:
    """Stored messages as window lines. Their vectors come from the embedder's cache when
    this process added them (a stored turn's vector is not found by its message id
    without a scan of the scope)."""
    embedded = vectors.embed_messages(embedder, [(m.content, m.name) for m in messages])
    return {m.id: windows.Line(m.id, index_text(m.content, m.name), e.vector)
            for m, e in zip(messages, embedded, strict=True)}


def _own_windows(store: Store, scope: Scope, ends: set[str]) -> dict[str, MemoryRecord]:
    """The current window of each stored message in ``ends``: the first made of those that
    end with it (a window loses its last turn only when that turn is deleted)."""
    if not ends:
        return {}
    found = store.find(RecordQuery(scope, kinds=(kinds.WINDOW,), filters=parse(
        {"or": [{"source_ids": {"contains": end}} for end in sorted(ends)]})))
    own: dict[str, MemoryRecord] = {}
    for window in sorted(found, key=lambda w: w.id):  # ids increase: the first made first
        if window.scope == scope and window.source_ids[-1] in ends:
            own.setdefault(window.source_ids[-1], window)
    return own
