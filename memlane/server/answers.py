"""The answers of the REST API, as models for its OpenAPI schema.

The endpoints answer the library's values as ``memlane.serialize`` writes them (clients
rebuild the values from that JSON); these models only describe it, and are never used to
build an answer. A test validates live answers against the schema the server serves, so a
field added to a value and not here fails it (``extra="forbid"`` states that nothing else
comes). A field that is not always there is left out of ``required`` (``absent``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ..types import Status

Time = str
"""ISO 8601 in UTC with microseconds, such as ``2026-03-14T10:00:00.000000Z``."""


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent() -> Any:
    """A field that an answer leaves out rather than sets to null."""
    return Field(default=None, json_schema_extra=_no_default)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class MemoryRecord(Answer):
    """A memory, every field of the record (docs/concepts.md, the memory record)."""

    id: str
    tenant: str
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    kind: str
    """``turn``, ``window``, ``fact``, ``summary``, ``entity``, ``relation``, ..."""
    text: str
    role: str | None
    speaker: str | None
    """The message's ``name``."""
    hash: str
    source_ids: list[str]
    """The ids of the raw messages it came from."""
    event_time: Time
    valid_from: Time
    created_at: Time
    updated_at: Time
    valid_to: Time | None
    status: Status
    version: int
    superseded_by: str | None
    importance: float
    pinned: bool
    access_count: int
    last_accessed_at: Time | None
    expires_at: Time | None
    tags: list[str]
    metadata: dict[str, Any]


class Signal(Answer):
    """How one retriever ranked a hit and what it added to the fused score."""

    rank: int
    raw_score: float
    contribution: float


class SearchHit(Answer):
    id: str
    """The memory the hit is about (for a window, the turn it was built for)."""
    memory_ids: list[str]
    """The memories behind the hit a caller can act on (a window's turns, oldest first)."""
    score: float
    """Similarity in [0, 1], higher is better, rounded to six decimals."""
    memory: MemoryRecord
    """The unit that was ranked."""
    explain: dict[str, Signal] | SkipJsonSchema[None] = absent()
    """Each retriever's part, by its name; only with ``explain``."""


class Context(Answer):
    text: str
    """The block to put in a prompt: ``<memories>``, a preamble, the memories oldest first
    under the time they were said, each line starting with its ``[reference]``, then
    ``</memories>``."""
    memories: list[MemoryRecord]
    """The memories shown, in the order of the block."""
    tokens: int
    """The tokens of ``text``."""
    budget_tokens: int
    """The budget it was packed into."""
    complete: bool
    """True when the block is the scope's whole history."""
    refs: list[str]
    """How the block cites each of ``memories`` (same order), without brackets."""
    sources: list[str]
    """The raw message ids of every memory shown, once each, in the order of the block."""
    citations: dict[str, list[str]]
    """Each reference of the block, and the raw message ids of the memory it cites."""


class HistoryEvent(Answer):
    id: str
    memory_id: str
    tenant: str
    op: str
    """``add``, ``update``, ``delete`` or ``supersede``."""
    version: int
    """The memory's version after the change."""
    old_text: str | None
    new_text: str | None
    actor: str
    reason: str | None
    at: Time


class Message(Answer):
    """A raw message, verbatim."""

    id: str
    tenant: str
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    role: str
    name: str | None
    content: str
    event_time: Time
    created_at: Time
    metadata: dict[str, Any]


class Job(Answer):
    """LLM work on an add (``infer="background"``), with its outcome and cost."""

    id: str
    tenant: str
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    add_key: str
    """The add it works on."""
    memory_ids: list[str]
    """The turns it works on."""
    status: Literal["pending", "running", "done", "failed"]
    attempts: int
    created_at: Time
    updated_at: Time
    error: str | None
    actions: list[dict[str, Any]]
    """What it decided, one object per change."""
    usage: dict[str, int]
    """LLM calls and tokens: ``calls``, ``prompt_tokens``, ``completion_tokens``."""


class EraseCounts(Answer):
    """Rows erased per table, and what was verified of the bytes left."""

    messages: int
    memories: int
    history: int
    vectors: int
    adds: int
    jobs: int
    wal_truncated: bool | None
    """SQLite: the write-ahead log was emptied into the file (null elsewhere)."""
    verified_clean: bool | None
    """SQLite: the erased bytes are in none of the store's files (null elsewhere)."""


class ScopeCounts(Answer):
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    memories: int
    """Memories as ``get_all`` lists them (active; windows left out)."""
    messages: int


class Tally(Answer):
    messages: int
    memories: int


class ScopeImport(Answer):
    user_id: str | None
    agent_id: str | None
    session_id: str | None
    created: bool
    """The scope held nothing before."""
    restored: Tally
    skipped: Tally
    conflicts: Tally
    history: int
    reidentified: int


class ImportReport(Answer):
    restored: Tally
    """Written."""
    skipped: Tally
    """Already stored identically."""
    conflicts: Tally
    """Stored with other content, and left as stored."""
    history: int
    """History events written with the restored memories."""
    conflict_ids: list[str]
    """The ids in conflict (the first ones)."""
    conflict_policy: str
    scopes: list[ScopeImport]
    reidentified: int
    """Memories restored under a new id, because another tenant holds theirs."""


class StatsScope(Answer):
    tenant: str
    user_id: str | SkipJsonSchema[None] = absent()
    agent_id: str | SkipJsonSchema[None] = absent()
    session_id: str | SkipJsonSchema[None] = absent()


class Usage(Answer):
    calls: int
    prompt_tokens: int
    completion_tokens: int


class Stats(Answer):
    scope: StatsScope
    """The scope counted (only the fields given)."""
    store: str
    embedder: str
    memories: dict[str, dict[str, int]]
    """Memories by kind, then by status."""
    messages: int
    jobs: dict[str, int]
    """LLM jobs by status."""
    llm_usage: Usage
    """What the scope's jobs used."""


class Key(Answer):
    id: str | None
    """The key's id (null on a server without keys)."""
    tenant: str
    users: list[str]
    """The only users it may name (empty: any user of the tenant)."""
    read_only: bool
    admin: bool


class Memories(Answer):
    memories: list[MemoryRecord]


class Hits(Answer):
    hits: list[SearchHit]
    """Best first."""


class Events(Answer):
    events: list[HistoryEvent]
    """Oldest first."""


class Messages(Answer):
    messages: list[Message]


class Scopes(Answer):
    scopes: list[ScopeCounts]


class Jobs(Answer):
    jobs: list[Job]


class Deleted(Answer):
    deleted: int
    """How many memories were deleted."""


class Erased(Answer):
    erased: EraseCounts


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready"]
    store: str
    """The store's kind."""


class Error(Answer):
    type: str
    """The nearest public class of ``memlane.errors``."""
    message: str
    id: str | SkipJsonSchema[None] = absent()
    """The id of the server's log line with the details of a failure it keeps to itself."""
    counts: EraseCounts | SkipJsonSchema[None] = absent()
    """``ErasurePendingError``: what was erased."""
    raw: str | SkipJsonSchema[None] = absent()
    """``ModelOutputError``: the model's text."""
    retry_after: float | SkipJsonSchema[None] = absent()
    """``RateLimitedError``: seconds to wait."""


class Failure(Answer):
    error: Error


STATUS_TEXT = {
    400: "the library refused the input (InvalidInputError, FilterError, ...)",
    401: "no key, an unknown key or a revoked key (AuthenticationError)",
    403: "the key may not do this, the store is read-only, or a foreign Origin",
    404: "no such memory in the key's tenant and the call's scope (NotFoundError)",
    409: "a concurrent writer went first, or an idempotency key was reused (ConflictError)",
    413: "the body is larger than the server's limit (RequestTooLargeError)",
    415: "the body is not of this operation's media type (InvalidInputError)",
    421: "the server does not answer to this Host name (InvalidInputError)",
    422: "the request does not fit the API's schema (InvalidInputError)",
    429: "the key's rate limit, or too many refused keys from this address "
         "(RateLimitedError, with Retry-After)",
    500: "an unexpected failure; the server logged the details",
    502: "the LLM or the embedder failed (ModelError, ModelOutputError)",
    503: "the store failed (StoreError), or an erasure's bytes are pending "
         "(ErasurePendingError)",
}
ALWAYS = (401, 403, 421, 429, 500, 503)
"""What any keyed operation can answer."""


def failing(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of an operation: ``ALWAYS`` and ``codes``."""
    return {code: {"model": Failure, "description": STATUS_TEXT[code]}
            for code in sorted({*ALWAYS, *codes})}


def failing_in_json(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``failing`` for an operation whose own answer is not JSON (FastAPI would declare
    a model's errors in the media type of the answer). Other operations name the model,
    which puts it in the schema's components."""
    ref = {"$ref": f"#/components/schemas/{Failure.__name__}"}
    return {code: {"description": STATUS_TEXT[code],
                   "content": {"application/json": {"schema": ref}}}
            for code in sorted({*ALWAYS, *codes})}
