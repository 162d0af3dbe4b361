"""An add, written: its raw messages, turns, windows (and LLM job) in one batch.

When another writer changed the conversation between the read the windows were built on
and the write, the store refuses the batch, and the add is built again on the conversation
as it is now (at the time it is now, if it has no timestamp of its own), for up to
``ADD_PATIENCE`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import kinds
from ..embed.base import Embedder
from ..errors import ConflictError
from ..ids import new_id
from ..store.base import (
    AddKeyReused,
    RecordUpdate,
    StaleConversation,
    Store,
    Vector,
    WriteBatch,
    WriteOutcome,
)
from ..timeutil import utcnow
from ..types import Job, MemoryRecord, Message, Scope
from . import ingest, passages, placing, vectors
from .history import event
from .infer import new_job

ADD_PATIENCE = 30.0
"""Seconds an add is built again and again while other writers keep changing its
conversation first (as long as SQLite waits for a busy database); then ConflictError."""
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Added:
    """What an add stored (or, for a retried add, had stored): its turns, and its job when
    this call queued one."""

    turns: list[MemoryRecord]
    job: Job | None


def add(store: Store, embedder: Embedder, scope: Scope, incoming: list[ingest.Incoming],
        when: datetime | None, meta: dict[str, Any], idempotency_key: str | None,
        infer: bool) -> Added:
    """Embed and write checked messages; a retry returns what the first call stored."""
    fingerprint = ingest.add_key(scope, incoming, when)
    key = idempotency_key or _derived_key(fingerprint, incoming, when)
    embedded = vectors.embed_messages(embedder, [(m.content, m.name) for m in incoming])
    outcome, turns, job = commit(store, embedder, scope, incoming, when, meta,
                                 (key, fingerprint), embedded, infer)
    if not outcome.applied:
        stored = store.get(scope.tenant, outcome.memory_ids)
        return Added([r for r in stored if r.kind not in kinds.DERIVED_KINDS], None)
    return Added(turns, job)


def _derived_key(fingerprint: str, incoming: list[ingest.Incoming],
                 when: datetime | None) -> str:
    """Without the caller's key: the fingerprint for an add the caller pinned down (a time,
    or its own message ids), so that its retry stores nothing; otherwise a new event."""
    return fingerprint if ingest.pinned(incoming, when) else "event:" + new_id()


def commit(store: Store, embedder: Embedder, scope: Scope, incoming: list[ingest.Incoming],
           when: datetime | None, meta: dict[str, Any], keys: tuple[str, str],
           embedded: list[vectors.Embedded], infer: bool,
           ) -> tuple[WriteOutcome, list[MemoryRecord], Job | None]:
    """Build the add's batch on the conversation as it is, and write it; build it again
    while the store refuses it for a conversation that changed meanwhile."""
    key, fingerprint = keys  # the idempotency key, and the digest of what is added
    deadline = time.monotonic() + ADD_PATIENCE
    known: list[Message] = []  # the conversation's newest messages, when a write told
    turn_vectors = [e.vector for e in embedded]
    while True:
        now = utcnow()
        msgs, turns = ingest.build(scope, incoming, timestamp=when, metadata=meta, now=now)
        job = new_job(turns, key, now) if infer else None
        placed = placing.place(store, embedder, msgs, turns, turn_vectors, now, known)
        inserts = [*zip(turns, turn_vectors, strict=True), *_passages(turns, embedded, now),
                   *placed.inserts]
        batch = WriteBatch(
            scope=scope, add_key=key, add_fingerprint=fingerprint, messages=msgs,
            inserts=inserts,
            updates=[RecordUpdate(new, old.version, v) for old, new, v in placed.rebuilt],
            events=[*(event(r, "add", None, r.text, SYSTEM, None) for r, _ in inserts),
                    *(event(new, "update", old.text, new.text, SYSTEM,
                            "a turn was added just before it")
                      for old, new, _ in placed.rebuilt)],
            jobs=[job] if job else [], after=placed.basis)
        try:
            return store.write(batch), turns, job
        except AddKeyReused:
            raise
        except ConflictError as exc:
            if time.monotonic() > deadline:
                raise ConflictError(
                    f"the conversation kept changing for {ADD_PATIENCE:g} s while this "
                    "add was written; retry the add") from exc
            known = exc.newest if isinstance(exc, StaleConversation) else []


def _passages(turns: list[MemoryRecord], embedded: list[vectors.Embedded],
              now: datetime) -> list[tuple[MemoryRecord, Vector]]:
    """The passage memories of the long messages among ``turns``, with their vectors."""
    return [(passages.record(turn, passage, number, now), vector)
            for turn, e in zip(turns, embedded, strict=True)
            for number, (passage, vector) in enumerate(e.passages)]
