"""The values memlane stores and returns: scopes, raw messages, memory records, history."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .errors import InvalidInputError
from .timeutil import opt_to_text, to_text

Kind = str
"""``turn``, ``fact``, ``summary``, ``profile``, ``insight``, ``procedure`` or a custom kind."""
Status = Literal["active", "superseded", "archived", "deleted"]
STATUSES: tuple[Status, ...] = ("active", "superseded", "archived", "deleted")

SCOPE_FIELDS = ("user_id", "agent_id", "session_id")
MAX_SCOPE_LENGTH = 256


def check_unicode(value: str, what: str) -> str:
    """``value``, if it can be stored as UTF-8. A lone surrogate cannot: it is what Python
    makes of bytes that are not UTF-8 (in argv, file names) or of a broken escape."""
    if "\x00" in value:  # PostgreSQL keeps no NUL in text: refused alike on every store
        raise InvalidInputError(f"{what} holds a NUL character (U+0000) at position "
                                f"{value.index(chr(0))}; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode: it holds the lone surrogate "
            f"U+{ord(value[exc.start]):04X} at position {exc.start} (text that was not UTF-8?)"
        ) from None
    return value


def _check_scope_value(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
    check_unicode(value, name)
    if not value.strip():
        raise InvalidInputError(f"{name} must not be empty; leave it out instead")
    if len(value) > MAX_SCOPE_LENGTH:
        raise InvalidInputError(f"{name} is longer than {MAX_SCOPE_LENGTH} characters")
    if any(ord(ch) < 32 for ch in value):
        raise InvalidInputError(f"{name} must not contain control characters")
    return value


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose memory: a tenant, and any of a user, an agent and a session within it.

    A scope restricts every read and write: a field that is set must match exactly, a field
    left out matches any value. ``tenant`` is always set.
    """

    tenant: str = "default"
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        if _check_scope_value("tenant", self.tenant) is None:
            raise InvalidInputError("tenant must be set")
        for name in SCOPE_FIELDS:
            _check_scope_value(name, getattr(self, name))

    @classmethod
    def from_mapping(cls, tenant: str, values: Mapping[str, Any]) -> Scope:
        unknown = set(values) - set(SCOPE_FIELDS)
        if unknown:
            raise InvalidInputError(
                f"unknown scope field(s) {sorted(unknown)}; use {', '.join(SCOPE_FIELDS)}"
            )
        return cls(tenant, **{k: v for k, v in values.items() if v is not None})

    @property
    def is_bounded(self) -> bool:
        """True when at least one of user, agent or session is set."""
        return any(getattr(self, name) is not None for name in SCOPE_FIELDS)

    def require_bounded(self, operation: str) -> Scope:
        if not self.is_bounded:
            raise InvalidInputError(
                f"{operation} needs a scope: pass at least one of user_id, agent_id, session_id"
            )
        return self

    def contains(self, tenant: str, user_id: str | None, agent_id: str | None,
                 session_id: str | None) -> bool:
        """Whether a record with these scope values lies inside this scope."""
        return tenant == self.tenant and all(
            mine is None or mine == theirs
            for mine, theirs in zip(
                (self.user_id, self.agent_id, self.session_id),
                (user_id, agent_id, session_id),
                strict=True,
            )
        )

    def as_dict(self) -> dict[str, str]:
        out = {"tenant": self.tenant}
        out.update({k: v for k in SCOPE_FIELDS if (v := getattr(self, k)) is not None})
        return out


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def index_text(text: str, speaker: str | None) -> str:
    """What the keyword and vector indexes see: the text, prefixed by its speaker."""
    return f"{speaker}: {text}" if speaker else text


@dataclass(frozen=True, slots=True)
class Message:
    """A raw message, kept verbatim; memories cite it by ``id``."""

    id: str
    tenant: str
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    role: str
    name: str | None
    content: str
    event_time: datetime
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


RECORD_TIMES = ("event_time", "valid_from", "created_at", "updated_at")
RECORD_OPT_TIMES = ("valid_to", "last_accessed_at", "expires_at")


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """One stored unit of memory. See DESIGN section 2 for the meaning of each field."""

    id: str
    tenant: str
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    kind: Kind
    text: str
    role: str | None
    speaker: str | None
    hash: str
    source_ids: tuple[str, ...]
    event_time: datetime
    valid_from: datetime
    created_at: datetime
    updated_at: datetime
    valid_to: datetime | None = None
    status: Status = "active"
    version: int = 1
    superseded_by: str | None = None
    importance: float = 0.5
    pinned: bool = False
    access_count: int = 0
    last_accessed_at: datetime | None = None
    expires_at: datetime | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        return Scope(self.tenant, self.user_id, self.agent_id, self.session_id)

    @property
    def index_text(self) -> str:
        return index_text(self.text, self.speaker)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: times as text, tuples as lists (``serialize.record_from_dict``)."""
        out: dict[str, Any] = {}
        for name in MemoryRecord.__dataclass_fields__:
            value = getattr(self, name)
            if name in RECORD_TIMES:
                value = to_text(value)
            elif name in RECORD_OPT_TIMES:
                value = opt_to_text(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One entry of a memory's append-only history."""

    id: str
    memory_id: str
    tenant: str
    op: str
    version: int
    old_text: str | None
    new_text: str | None
    actor: str
    reason: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in HistoryEvent.__dataclass_fields__}
        out["at"] = to_text(self.at)
        return out


@dataclass(frozen=True, slots=True)
class SignalDetail:
    """How one retrieval signal ranked a hit and what it added to the fused score."""

    rank: int
    raw_score: float
    contribution: float


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A memory found by a search, with a score in [0, 1] (higher is better).

    ``memory`` is the unit that was ranked, with its text and ``source_ids``. A window (a
    turn shown with the turns before it) and a passage (a span of a long message, its
    ``metadata["span"]`` the characters [start, end] of the message) are derived and cannot
    be edited, so a hit also names the memories behind it that a caller can act on:
    ``memory_ids`` are the turns a window shows, oldest first, or a passage's turn (its
    whole message; any other kind names itself), and ``id`` is the memory the hit is about:
    for a window, the turn it was built for (its newest turn).
    """

    memory: MemoryRecord
    score: float
    explain: dict[str, SignalDetail] | None = None
    memory_ids: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.memory_ids[-1] if self.memory_ids else self.memory.id

    @property
    def text(self) -> str:
        return self.memory.text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "memory_ids": list(self.memory_ids),
                               "score": round(self.score, 6), "memory": self.memory.to_dict()}
        if self.explain is not None:
            out["explain"] = {
                name: {"rank": d.rank, "raw_score": d.raw_score, "contribution": d.contribution}
                for name, d in self.explain.items()
            }
        return out


@dataclass(frozen=True, slots=True)
class Scored:
    """The shared result type of every store search: a record and its similarity in [0, 1]."""

    record: MemoryRecord
    score: float


JOB_STATUSES = ("pending", "running", "done", "failed")


@dataclass(frozen=True, slots=True)
class Job:
    """Derived work on an add (LLM extraction), kept durably with its outcome and cost."""

    id: str
    tenant: str
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    add_key: str
    memory_ids: tuple[str, ...]
    """The turns the job works on."""
    status: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    actions: tuple[dict[str, Any], ...] = ()
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        return Scope(self.tenant, self.user_id, self.agent_id, self.session_id)
