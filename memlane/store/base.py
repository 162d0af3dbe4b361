"""The ``Store`` protocol every backend implements, and the values it exchanges.

Scores are similarities in [0, 1], higher is better, for every search of every store; the
conformance suite asserts it. Every read is restricted to a ``Scope`` before anything is
ranked, and every write of a batch happens in one transaction or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import ConflictError
from ..filters import Node, matches
from ..text import Analyzer
from ..timeutil import to_text
from ..types import HistoryEvent, Job, MemoryRecord, Message, Scope, Scored, Status

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    """What a backend can do, declared as data rather than probed by type."""

    name: str
    persistent: bool
    multi_process: bool
    keyword_search: bool = True
    vector_search: bool = True


USAGE_KEYS = ("calls", "prompt_tokens", "completion_tokens")
"""The counters of a job's ``usage``."""


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """Which records a read may see: always a scope, then optional narrowing."""

    scope: Scope
    filters: Node | None = None
    kinds: tuple[str, ...] | None = None
    exclude_kinds: tuple[str, ...] = ()
    statuses: tuple[Status, ...] = ("active",)
    as_of: datetime | None = None

    def admits(self, record: MemoryRecord) -> bool:
        """The reference predicate; SQL stores compile the same rules."""
        if not self.scope.contains(record.tenant, record.user_id, record.agent_id,
                                   record.session_id):
            return False
        if self.kinds is not None and record.kind not in self.kinds:
            return False
        if record.kind in self.exclude_kinds:
            return False
        if self.as_of is None:
            if record.status not in self.statuses:
                return False
        elif not visible_at(record, self.as_of):
            return False
        return matches(self.filters, record)


AS_OF_STATUSES: tuple[Status, ...] = ("active", "superseded")


def visible_at(record: MemoryRecord, when: datetime) -> bool:
    """Whether a record was true at ``when`` (valid time; superseded records included)."""
    moment = to_text(when)
    return (
        record.status in AS_OF_STATUSES
        and to_text(record.valid_from) <= moment
        and (record.valid_to is None or to_text(record.valid_to) > moment)
    )


@dataclass(frozen=True, slots=True)
class RecordUpdate:
    """A new state of an existing record; applied only if its stored version is expected."""

    record: MemoryRecord
    expected_version: int
    vector: Vector | None = None


def depended(newest_first: Sequence[Message], earliest: datetime, back: int) -> int:
    """How many of a conversation's newest messages (newest first) the windows of messages
    added at ``earliest`` or later depend on: each one later than ``earliest`` (new ones go
    before them, whose windows change) and ``back`` more (the new ones' predecessors; a
    message at ``earliest`` itself comes before a new one of the same time)."""
    seen = 0
    for position, message in enumerate(newest_first):
        if message.event_time <= earliest:
            seen += 1
            if seen == back:
                return position + 1
    return len(newest_first)


@dataclass(frozen=True, slots=True)
class Basis:
    """The part of a conversation an add built its windows on: the ids of its newest
    messages, newest first, that ``depended`` counts for ``earliest`` (the earliest event
    time of the add) and ``back`` (how many turns a window reaches back)."""

    ids: tuple[str, ...]
    earliest: datetime
    back: int

    def holds(self, newest_first: Sequence[Message]) -> bool:
        """Whether the conversation, read as its newest ``len(ids) + 1`` messages, is still
        what the add was built on (a message one further back matters when ``ids`` held
        fewer than ``back`` messages before ``earliest``, i.e. the whole conversation)."""
        n = depended(newest_first, self.earliest, self.back)
        return tuple(m.id for m in newest_first[:n]) == self.ids


class StaleConversation(ConflictError):
    """The conversation changed between the read an add's windows were built on and its
    write. ``Memory.add`` rebuilds the windows and retries; other callers see a conflict.

    ``newest`` holds the conversation's newest messages as the refusing write read them
    (newest first), so that a retry need not read them again: the sooner it is back, the
    likelier it is to find the conversation unchanged.
    """

    def __init__(self, newest: Sequence[Message]) -> None:
        super().__init__("the conversation changed while this add was built; retry")
        self.newest = list(newest)


def check_basis(batch: WriteBatch, newest: Callable[[int], Sequence[Message]]) -> None:
    """Refuse a batch whose windows were built on a conversation that has changed since.

    Stores call it inside the write transaction, with ``newest(n)``: the newest ``n``
    messages of exactly ``batch.scope``, newest first, as the transaction sees them, while
    no other add to that conversation can commit (its check is serialized with this one).
    """
    basis = batch.after
    if basis is not None:
        fresh = newest(len(basis.ids) + 1)
        if not basis.holds(fresh):
            raise StaleConversation(fresh)


@dataclass(slots=True)
class WriteBatch:
    """Everything one operation writes, applied atomically.

    With ``add_key`` set, a batch whose key was already applied writes nothing and the
    store answers with the ids the first application stored (idempotent retries).
    ``scope`` is the scope the batch writes in (its tenant bounds every row it touches).
    """

    scope: Scope
    add_key: str | None = None
    messages: list[Message] = field(default_factory=list)
    inserts: list[tuple[MemoryRecord, Vector]] = field(default_factory=list)
    updates: list[RecordUpdate] = field(default_factory=list)
    events: list[HistoryEvent] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    """Jobs to insert or replace (by id) in the same transaction."""
    after: Basis | None = None
    """For an add, the conversation (exactly ``scope``) as its windows were built on it: the
    store writes nothing and raises ``StaleConversation`` if it has changed (``check_basis``).
    """


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    applied: bool
    memory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EraseCounts:
    messages: int
    memories: int
    history: int


@runtime_checkable
class Store(Protocol):
    """A place to keep memories. One conformance suite holds every implementation to it."""

    capabilities: StoreCapabilities

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def write(self, batch: WriteBatch) -> WriteOutcome: ...

    def get(self, tenant: str, ids: Sequence[str]) -> list[MemoryRecord]: ...

    def find(self, query: RecordQuery, *, limit: int | None = None, offset: int = 0,
             newest_first: bool = False) -> list[MemoryRecord]: ...

    def count(self, query: RecordQuery) -> int: ...

    def tally(self, query: RecordQuery) -> dict[tuple[str, str], int]:
        """How many admitted records there are of each (kind, status)."""
        ...

    def keyword_search(self, query: RecordQuery, text: str, limit: int,
                       analyzer: Analyzer = "plain") -> list[Scored]: ...

    def vector_search(self, query: RecordQuery, vector: Vector, limit: int) -> list[Scored]: ...

    def history(self, tenant: str, memory_id: str) -> list[HistoryEvent]: ...

    def messages(self, scope: Scope, *, limit: int | None = None,
                 offset: int = 0) -> list[Message]: ...

    def count_messages(self, scope: Scope) -> int:
        """How many raw messages the scope holds."""
        ...

    def get_job(self, tenant: str, job_id: str) -> Job | None: ...

    def claim_job(self, tenant: str, job_id: str, now: datetime,
                  stale_before: datetime) -> Job | None:
        """Mark a job running if it is pending (or running but not touched since
        ``stale_before``: its worker died); the job as claimed, or None if another took it."""
        ...

    def find_jobs(self, tenant: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 100) -> list[Job]:
        """Jobs of a tenant, oldest first."""
        ...

    def tally_jobs(self, scope: Scope) -> dict[str, tuple[int, dict[str, int]]]:
        """Per job status in the scope: how many jobs, and the sum of their usage counters
        (``USAGE_KEYS``)."""
        ...

    def recent_messages(self, scope: Scope, limit: int) -> list[Message]:
        """The newest messages of exactly this conversation (fields left out must be empty,
        not "any"), newest first."""
        ...

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, Vector]: ...

    def erase(self, scope: Scope) -> EraseCounts: ...

    def tenants(self) -> list[str]: ...

    def iter_history(self, tenant: str) -> Iterator[HistoryEvent]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def dense_score(cosine: float) -> float:
    """Cosine similarity mapped onto [0, 1]."""
    return min(1.0, max(0.0, (1.0 + cosine) / 2.0))


def keyword_score(bm25: float) -> float:
    """A non-negative BM25 value squashed onto [0, 1) without changing its order."""
    positive = max(0.0, bm25)
    return positive / (positive + 1.0)
