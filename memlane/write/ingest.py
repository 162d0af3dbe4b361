"""Ingest: validate and normalize what ``add`` receives into raw messages and turn memories.

Pure functions: nothing here touches a store or a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import kinds
from ..errors import InvalidInputError
from ..ids import new_id
from ..timeutil import TimeLike, parse_time, to_text
from ..types import MemoryRecord, Message, Scope, check_unicode, content_hash

MAX_TEXT_CHARS = 32_000
"""The longest query, or text of a memory other than a message's turn, in characters."""
MAX_MESSAGE_CHARS = 1_048_576
"""The longest message (and so turn) in characters: 1 MiB of plain text. A message longer
than a passage (``passages.PASSAGE_CHARS``) is searched passage by passage."""
MAX_MESSAGES = 10_000
MAX_METADATA_BYTES = 64_000
MAX_ID_CHARS = 200
MESSAGE_KEYS = frozenset({"role", "content", "name", "id", "timestamp", "metadata"})

MessagesInput = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One validated message, before ids and times are assigned."""

    role: str
    content: str
    name: str | None
    id: str | None
    timestamp: datetime | None
    metadata: dict[str, Any]


def check_text(text: Any, what: str = "text", limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{what} is empty")
    if len(text) > limit:
        raise InvalidInputError(f"{what} has {len(text):,} characters; the limit is {limit:,}")
    return check_unicode(text, what)


def check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise InvalidInputError("metadata must be a mapping with string keys")
    try:
        encoded = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata must be plain JSON: {exc}") from exc
    except RecursionError:
        raise InvalidInputError("metadata is nested too deeply") from None
    if _has_nul(metadata):  # PostgreSQL keeps no NUL in JSON
        raise InvalidInputError("metadata holds a NUL character (U+0000); remove it")
    if len(check_unicode(encoded, "metadata (as JSON)").encode()) > MAX_METADATA_BYTES:
        raise InvalidInputError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    return dict(json.loads(encoded))


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def normalize(messages: MessagesInput) -> list[Incoming]:
    """Accept a string, one message mapping or a list of them; reject anything unclear."""
    if isinstance(messages, str):
        items: Sequence[Any] = [{"role": "user", "content": messages}]
    elif isinstance(messages, Mapping):
        items = [messages]
    elif isinstance(messages, Sequence):
        items = messages
    else:
        raise InvalidInputError("messages must be a string, a message mapping or a list of them")
    if not items:
        raise InvalidInputError("no messages to add")
    if len(items) > MAX_MESSAGES:
        raise InvalidInputError(f"at most {MAX_MESSAGES} messages per add; split the batch")
    return [_one(i, item) for i, item in enumerate(items)]


def _one(index: int, item: Any) -> Incoming:
    where = f"message {index}"
    if not isinstance(item, Mapping):
        raise InvalidInputError(f"{where} must be a mapping with 'role' and 'content'")
    unknown = set(item) - MESSAGE_KEYS
    if unknown:
        raise InvalidInputError(
            f"{where} has unknown field(s) {sorted(unknown)}; allowed: {sorted(MESSAGE_KEYS)}"
        )
    role = item.get("role", "user")
    if not isinstance(role, str) or not role.strip() or len(role) > 32:
        raise InvalidInputError(f"{where}: role must be a short non-empty string")
    check_unicode(role, f"{where} role")
    return Incoming(
        role=role,
        content=check_text(item.get("content"), f"{where} content", MAX_MESSAGE_CHARS),
        name=_optional_str(item.get("name"), f"{where} name"),
        id=_optional_str(item.get("id"), f"{where} id"),
        timestamp=None if item.get("timestamp") is None
        else parse_time(item["timestamp"], field=f"{where} timestamp"),
        metadata=check_metadata(item.get("metadata")),
    )


def _optional_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        raise InvalidInputError(f"{what} must be a non-empty string of at most "
                                f"{MAX_ID_CHARS} characters")
    return check_unicode(value, what)


def pinned(incoming: Sequence[Incoming], timestamp: datetime | None) -> bool:
    """Whether the caller pinned the add down as one event: it has a time (its own, or one
    on every message), or every message carries the caller's message id."""
    return (timestamp is not None or all(m.timestamp is not None for m in incoming)
            or all(m.id is not None for m in incoming))


def add_key(scope: Scope, incoming: Sequence[Incoming], timestamp: datetime | None) -> str:
    """The content fingerprint of an add: same scope, messages and time, same key."""
    parts = [json.dumps(scope.as_dict(), sort_keys=True),
             "" if timestamp is None else to_text(timestamp)]
    for m in incoming:
        parts.append(json.dumps([m.role, m.name, m.id, m.content,
                                 None if m.timestamp is None else to_text(m.timestamp)]))
    return "content:" + content_hash(*parts)


def build(scope: Scope, incoming: Sequence[Incoming], *, timestamp: TimeLike | None,
          metadata: dict[str, Any], now: datetime) -> tuple[list[Message], list[MemoryRecord]]:
    """Raw messages and one turn memory per message, each turn citing its message."""
    default_time = now if timestamp is None else parse_time(timestamp)
    seen: set[str] = set()
    messages, turns = [], []
    for item in incoming:
        message_id = item.id or new_id()
        if message_id in seen:
            raise InvalidInputError(f"message id {message_id!r} appears twice in one add")
        seen.add(message_id)
        event_time = item.timestamp or default_time
        merged = {**metadata, **item.metadata}
        messages.append(Message(
            id=message_id, tenant=scope.tenant, user_id=scope.user_id,
            agent_id=scope.agent_id, session_id=scope.session_id, role=item.role,
            name=item.name, content=item.content, event_time=event_time, created_at=now,
            metadata=merged,
        ))
        turns.append(MemoryRecord(
            id=new_id(), tenant=scope.tenant, user_id=scope.user_id, agent_id=scope.agent_id,
            session_id=scope.session_id, kind=kinds.TURN, text=item.content, role=item.role,
            speaker=item.name, hash=content_hash(item.content), source_ids=(message_id,),
            event_time=event_time, valid_from=event_time, created_at=now, updated_at=now,
            metadata=merged,
        ))
    return messages, turns
