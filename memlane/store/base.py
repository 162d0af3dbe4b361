"""The ``Store`` protocol every backend implements, and the values it exchanges.

Scores are similarities in [0, 1], higher is better, for every search of every store; the
conformance suite asserts it. Every read is restricted to a ``Scope`` before anything is
ranked, and every write of a batch happens in one transaction or not at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..erasure import EraseCounts as EraseCounts  # the stores name it from here
from ..errors import ConflictError
from ..filters import Node, matches
from ..kinds import TURN
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
    verified_erasure: bool = False
    """``erase`` checks that the erased bytes left the store's files (``EraseCounts``)."""


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


class AddKeyReused(ConflictError):
    """An idempotency key already used for another add: final, unlike a stale
    conversation, so ``Memory.add`` does not retry it."""


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


class JobReleased(ConflictError):
    """The job a batch finishes is no longer held by the run finishing it: erased meanwhile
    (``erase``, ``reset``), finished, or taken over by another runner after its lease. The
    store wrote nothing; the run drops its result."""


@dataclass(frozen=True, slots=True)
class JobFinish:
    """A job's outcome, written by the run that claimed it (``claim_job``)."""

    claimed: Job
    """The job as ``claim_job`` returned it: its ``updated_at`` names the claim."""
    result: Job
    """Its new state (status, attempts, error, actions, usage, ``updated_at``)."""


def check_claim(stored: Job | None, finish: JobFinish) -> None:
    """Raise ``JobReleased`` unless ``stored`` (the job as the write transaction sees it)
    is still running under ``finish``'s claim; stores that check in SQL say the same."""
    claimed = finish.claimed
    if (stored is None or stored.tenant != claimed.tenant or stored.status != "running"
            or stored.updated_at != claimed.updated_at):
        raise released(claimed)


def released(job: Job) -> JobReleased:
    return JobReleased(f"job {job.id} was erased, finished or taken over while this run "
                       "held it; its result was dropped")


@dataclass(slots=True)
class WriteBatch:
    """Everything one operation writes, applied atomically.

    With ``add_key`` set, a batch whose key was already applied in its scope writes nothing
    and the store answers with the ids the first application stored (idempotent retries).
    A key names one add of one scope (tenant, user, agent and session exactly): the same key
    in another scope is another key, so a key tells nothing of other scopes' adds. It is
    kept with ``add_fingerprint`` (what the add held), and a batch reusing it in its scope
    with another fingerprint is a ``ConflictError``, never an answer with another add's ids.
    ``scope`` is the scope the batch writes in (its tenant bounds every row it touches).
    """

    scope: Scope
    add_key: str | None = None
    add_fingerprint: str | None = None
    """A digest of what the add held (scope, messages, time); None compares by scope only."""
    messages: list[Message] = field(default_factory=list)
    inserts: list[tuple[MemoryRecord, Vector]] = field(default_factory=list)
    updates: list[RecordUpdate] = field(default_factory=list)
    events: list[HistoryEvent] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    """New jobs to insert in the same transaction (an add's job)."""
    finish: JobFinish | None = None
    """The job this batch finishes: the store writes the batch only if the job is still
    running under this claim (checked in the write transaction, so a job erased or taken
    over meanwhile writes nothing: ``JobReleased``), and updates the job's row in place."""
    after: Basis | None = None
    """For an add, the conversation (exactly ``scope``) as its windows were built on it: the
    store writes nothing and raises ``StaleConversation`` if it has changed (``check_basis``).
    """


def check_add_key_reuse(batch: WriteBatch, stored_fingerprint: str | None) -> None:
    """Raise ``ConflictError`` unless the add stored under ``batch.add_key`` in the batch's
    scope (with ``stored_fingerprint``) is the add ``batch`` retries. A key stored without a
    fingerprint (before fingerprints were kept) is matched by its scope alone."""
    if (stored_fingerprint is not None and batch.add_fingerprint is not None
            and stored_fingerprint != batch.add_fingerprint):
        raise AddKeyReused(
            f"idempotency key {batch.add_key!r} was already used in this scope for a "
            "different add (other messages or another time); nothing stored: a new add "
            "needs a new key")


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    applied: bool
    memory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScopeCounts:
    """One scope (user, agent and session exactly as stored; ``None`` where not set) and how
    many memories and raw messages it holds."""

    user_id: str | None
    agent_id: str | None
    session_id: str | None
    memories: int
    messages: int


ScopeTriple = tuple[str | None, str | None, str | None]


def scope_counts(memories: dict[ScopeTriple, int],
                 messages: dict[ScopeTriple, int]) -> list[ScopeCounts]:
    """The scopes holding either, in the order of their user, agent and session ids."""
    keys = sorted(memories.keys() | messages.keys(), key=lambda k: tuple(v or "" for v in k))
    return [ScopeCounts(*k, memories.get(k, 0), messages.get(k, 0)) for k in keys]


ScopeField = Literal["user_id", "agent_id", "session_id"]


def totals(counts: list[ScopeCounts], by: ScopeField) -> list[ScopeCounts]:
    """``counts`` summed per value of one scope field (the other two left ``None``)."""
    memories: Counter[ScopeTriple] = Counter()
    messages: Counter[ScopeTriple] = Counter()
    for c in counts:
        value = getattr(c, by)
        key = (value if by == "user_id" else None, value if by == "agent_id" else None,
               value if by == "session_id" else None)
        memories[key] += c.memories
        messages[key] += c.messages
    return scope_counts(memories, messages)


@runtime_checkable
class RecordStore(Protocol):
    """Memories and their vectors: what the write stage and listings need."""

    def write(self, batch: WriteBatch) -> WriteOutcome: ...

    def get(self, tenant: str, ids: Sequence[str]) -> list[MemoryRecord]: ...

    def find(self, query: RecordQuery, *, limit: int | None = None, offset: int = 0,
             newest_first: bool = False) -> list[MemoryRecord]: ...

    def turns_citing(self, scope: Scope, message_ids: Sequence[str]) -> list[MemoryRecord]:
        """The turns of exactly this conversation (fields left out must be empty, not
        "any") made from these raw messages, whatever their status; an index lookup, for
        naming the turns behind a search hit."""
        ...

    def count(self, query: RecordQuery) -> int: ...

    def tally(self, query: RecordQuery) -> dict[tuple[str, str], int]:
        """How many admitted records there are of each (kind, status)."""
        ...

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, Vector]: ...


@runtime_checkable
class SearchStore(Protocol):
    """Ranked reads: what the read stage needs besides ``find``."""

    def keyword_search(self, query: RecordQuery, text: str, limit: int,
                       analyzer: Analyzer = "plain") -> list[Scored]: ...

    def vector_search(self, query: RecordQuery, vector: Vector, limit: int) -> list[Scored]: ...


@runtime_checkable
class LogStore(Protocol):
    """Raw messages and the history of changes, kept beside the memories built on them."""

    def messages(self, scope: Scope, *, limit: int | None = None, offset: int = 0,
                 include_deleted: bool = False) -> list[Message]:
        """Raw messages of the scope in the order they happened. A message whose turn is
        deleted (status ``deleted``) is left out unless ``include_deleted`` (export and
        migration keep it; ``erase`` removes it)."""
        ...

    def count_messages(self, scope: Scope) -> int:
        """How many raw messages the scope holds, those of deleted turns left out."""
        ...

    def recent_messages(self, scope: Scope, limit: int) -> list[Message]:
        """The newest messages of exactly this conversation (fields left out must be empty,
        not "any"), newest first; those of deleted turns left out, as in ``messages``."""
        ...

    def history(self, tenant: str, memory_id: str) -> list[HistoryEvent]: ...

    def iter_history(self, tenant: str) -> Iterator[HistoryEvent]: ...

    def scopes(self, query: RecordQuery) -> list[ScopeCounts]:
        """Each scope inside ``query.scope`` that holds raw messages or records the query
        admits, with how many of each (``scope_counts`` order)."""
        ...


@runtime_checkable
class JobStore(Protocol):
    """Background extraction jobs, written in the batches of their adds."""

    def claim_job(self, tenant: str, job_id: str, now: datetime,
                  stale_before: datetime) -> Job | None:
        """Mark a job running if it is pending (or running but not touched since
        ``stale_before``: its worker died); the job as claimed, or None if another took it."""
        ...

    def find_jobs(self, tenant: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 100) -> list[Job]:
        """Jobs of a tenant, oldest first."""
        ...

    def job_tenants(self, statuses: Sequence[str]) -> list[str]:
        """The tenants holding jobs in any of these statuses, sorted (a worker serving
        every tenant looks here for work)."""
        ...

    def tally_jobs(self, scope: Scope) -> dict[str, tuple[int, dict[str, int]]]:
        """Per job status in the scope: how many jobs, and the sum of their usage counters
        (``USAGE_KEYS``)."""
        ...


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A server credential bound to one tenant. The store keeps only ``hash`` (SHA-256 of
    the secret key, which is shown once when made); ``prefix`` (its first characters) and
    ``id`` name it in listings and revocation.

    ``users``: the only users the key may name (empty: any user of the tenant).
    ``read_only``: the key may not write. ``admin``: the key may act on the whole tenant."""

    id: str
    tenant: str
    hash: str
    prefix: str
    created_at: datetime
    users: tuple[str, ...] = ()
    read_only: bool = False
    admin: bool = False
    label: str | None = None
    revoked_at: datetime | None = None


@runtime_checkable
class KeyStore(Protocol):
    """Server credentials (``ApiKey``). Keys are not memories: ``erase`` and ``reset`` keep
    them; ``revoke_key`` is how a key ends."""

    def put_key(self, key: ApiKey) -> None:
        """Keep a new key (an id or hash already kept is ``InvalidInputError``)."""
        ...

    def find_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not; None if there is none."""
        ...

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (or every key of one tenant), oldest first, revoked ones included."""
        ...

    def revoke_key(self, key_id: str, when: datetime) -> ApiKey | None:
        """Mark a key revoked at ``when`` (a key revoked before keeps its first time); the
        key as stored now, or None if there is no key with that id."""
        ...


@runtime_checkable
class AdminStore(Protocol):
    """The store as a whole: its settings, tenants, erasure and lifetime."""

    capabilities: StoreCapabilities

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def erase(self, scope: Scope, *, wait: float | None = None) -> EraseCounts:
        """Delete everything of a scope for good, and make its bytes leave the store's
        files. ``wait`` bounds how long to wait (None: the store's default) for other
        connections to release read snapshots that still show the erased rows; when they do
        not, the rows stay deleted and ``ErasurePendingError`` says the bytes remain."""
        ...

    def tenants(self) -> list[str]: ...

    def taken_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` a row of ``table`` (one of ``ID_TABLES``) holds, in any tenant:
        an import gives such an id of another tenant's a new one."""
        ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Store(RecordStore, SearchStore, LogStore, JobStore, KeyStore, AdminStore, Protocol):
    """A place to keep memories: every role at once. One conformance suite holds every
    implementation to it; a caller that needs one role may name that role instead."""


ID_TABLES = ("memories", "history")
"""The tables whose ids ``taken_ids`` looks up."""


def id_table(table: str) -> str:
    """``table``, if it is one of ``ID_TABLES``; ValueError otherwise."""
    if table not in ID_TABLES:
        raise ValueError(f"no ids are looked up in {table!r}; only in {ID_TABLES}")
    return table


HIDDEN_TURN = (TURN, "deleted")
"""The (kind, status) of a memory whose raw message ``messages`` leaves out."""


def dense_score(cosine: float) -> float:
    """Cosine similarity mapped onto [0, 1]."""
    return min(1.0, max(0.0, (1.0 + cosine) / 2.0))


def keyword_score(bm25: float) -> float:
    """A non-negative BM25 value squashed onto [0, 1) without changing its order."""
    positive = max(0.0, bm25)
    return positive / (positive + 1.0)
