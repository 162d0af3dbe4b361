"""Checks of the arguments ``Memory`` takes: each returns the value (as the stages want
it) or raises ``InvalidInputError`` naming what is wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidInputError, NotFoundError
from .filters import parse
from .kinds import ALL_KINDS, DERIVED_KINDS
from .store.base import RecordQuery
from .timeutil import TimeLike, parse_time
from .types import (
    JOB_STATUSES,
    SCOPE_FIELDS,
    STATUSES,
    MemoryRecord,
    Scope,
    Status,
    check_unicode,
)

MAX_LIMIT = 1_000
MAX_OFFSET = 2**63 - 1
"""The largest offset every store can bind (a 64-bit integer)."""


def limit(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return value


def non_negative(value: int, what: str) -> int:
    """An offset (or a limit without a cap): an integer every store can bind."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_OFFSET:
        raise InvalidInputError(f"{what} must be an integer from 0 to 2**63-1")
    return value


def names(value: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    """A string or a list of strings (one string is one name), as a tuple."""
    if value is None:
        return None
    found = [value] if isinstance(value, str) else value
    if not isinstance(found, Sequence):
        raise InvalidInputError(f"{what} must be a string or a list of strings, "
                                f"got {type(value).__name__}")
    for name in found:
        if not isinstance(name, str):
            raise InvalidInputError(f"{what} must be strings, got {name!r}")
        check_unicode(name, what)
    return tuple(found)


def record_query(scope: Scope, filters: Mapping[str, Any] | None,
                 kinds: str | Sequence[str] | None, as_of: TimeLike | None,
                 statuses: tuple[Status, ...] = ("active",)) -> RecordQuery:
    """What a read of ``scope`` asks the store for."""
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise InvalidInputError(f"unknown status(es) {bad}; use {STATUSES}")
    return RecordQuery(
        scope=scope, filters=parse(filters), kinds=memory_kinds(kinds),
        statuses=statuses,
        as_of=None if as_of is None else parse_time(as_of, field="as_of"),
    )


def memory_kinds(kinds: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """The kinds a read asks for, each one the library writes."""
    asked = names(kinds, "kinds")
    bad = [k for k in asked or () if k not in ALL_KINDS]
    if bad:
        raise InvalidInputError(f"unknown kind(s) {bad}; use {list(ALL_KINDS)}")
    return asked


def job_statuses(statuses: list[str] | None) -> list[str] | None:
    bad = [s for s in statuses or [] if s not in JOB_STATUSES]
    if bad:
        raise InvalidInputError(f"unknown job status(es) {bad}; use {JOB_STATUSES}")
    return statuses


def optional_text(value: str | None, what: str) -> str | None:
    """None, or a string that can be stored (``types.check_unicode``)."""
    return None if value is None else check_unicode(value, what)


def memory_id(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError("memory id must be a non-empty string")
    return check_unicode(value, "memory id")


def editable(record: MemoryRecord) -> MemoryRecord:
    """A memory that ``update`` can give a new text."""
    if record.status == "deleted":
        raise NotFoundError(f"memory {record.id!r} is deleted")
    if record.kind in DERIVED_KINDS:
        raise InvalidInputError(f"a {record.kind} is derived from other memories and "
                                "rebuilt from them: update the turn or fact it shows")
    return record


MAX_WAIT = 3600.0
"""The longest ``forget`` waits for readers, in seconds (an hour)."""


def wait(seconds: float | None) -> float | None:
    if seconds is not None and (isinstance(seconds, bool)
                                or not isinstance(seconds, int | float)
                                or not 0 <= seconds <= MAX_WAIT):
        raise InvalidInputError(f"wait must be a number of seconds from 0 to {MAX_WAIT:g}")
    return seconds


def budget(tokens: int, frame: int) -> int:
    """A context budget: more tokens than the empty block (``frame``) takes."""
    if not isinstance(tokens, int) or tokens < frame + 1:
        raise InvalidInputError(f"budget_tokens must be an integer above {frame}")
    return tokens


def scope_field(by: str | None) -> str | None:
    if by is not None and by not in SCOPE_FIELDS:
        raise InvalidInputError(f"by must be one of {', '.join(SCOPE_FIELDS)}, not {by!r}")
    return by
