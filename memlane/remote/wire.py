"""What the remote client sends: the library's arguments as JSON bodies and query strings,
checked as far as the embedded library would check them before anything is sent (what
JSON or a URL cannot carry, such as a lone surrogate in a query string, is refused here
with the library's own error)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ..errors import ConfigurationError, InvalidInputError
from ..filters import parse
from ..ids import new_id
from ..read.search import RECIPES, SearchConfig
from ..timeutil import parse_time
from ..types import check_unicode
from ..write import ingest


def body(**fields: Any) -> bytes:
    """A JSON body of the fields that are set (a datetime as ISO 8601 text)."""
    return dumps({k: v for k, v in fields.items() if v is not None}).encode("utf-8")


def dumps(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, default=_time_default)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"the request cannot be sent as plain JSON: {exc}") from None
    except RecursionError:
        raise InvalidInputError("the request is nested too deeply to send") from None


def _time_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def time(value: Any) -> Any:
    """A time argument as JSON can carry it."""
    return value.isoformat() if isinstance(value, datetime) else value


def messages(value: Any) -> Any:
    """``add``'s messages with datetimes in their ``timestamp`` as text."""
    if isinstance(value, Mapping):
        return {k: time(v) if k == "timestamp" else v for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [messages(m) if isinstance(m, Mapping) else m for m in value]
    return value


def add_key(key: str | None, messages: Any, timestamp: Any) -> str | None:
    """The idempotency key an add is sent with: the caller's; none for an add pinned down by
    its time or its message ids (the server derives its key from its content); otherwise a
    fresh key of this call, so that sending it again after a lost answer stores it once."""
    if key is not None:
        return key
    try:
        incoming = ingest.normalize(messages)
        when = None if timestamp is None else parse_time(timestamp)
    except InvalidInputError:
        return None  # the server answers what is wrong with it
    return None if ingest.pinned(incoming, when) else "call:" + new_id()


def query(**fields: Any) -> dict[str, Any]:
    """Query parameters of the fields that are set, each string valid Unicode."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        value = time(value)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                check_unicode(item, name)
        out[name] = value
    return out


def names(value: Any, what: str) -> list[str] | None:
    """A string or a list of strings (one string is one name), as a list."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(i, str) for i in items):
        raise InvalidInputError(f"{what} must be a string or a list of strings, got {value!r}")
    return list(items)


def filters(value: Any) -> Any:
    """A filter, once the library's parser takes it (what JSON cannot carry, such as a
    NaN, is a ``FilterError`` here as it is in the library)."""
    if value is not None:
        parse(value)
    return value


def filters_text(value: Any) -> str | None:
    """A filter as the JSON text ``GET /v1/memories`` takes."""
    return None if value is None else dumps(filters(value))


def memory_path(memory_id: Any, suffix: str = "") -> str:
    if not isinstance(memory_id, str) or not memory_id:
        raise InvalidInputError("memory id must be a non-empty string")
    check_unicode(memory_id, "memory id")
    segment = quote(memory_id, safe="").replace(".", "%2E")
    return f"/v1/memories/{segment}{suffix}"


def recipe(value: str | SearchConfig | None) -> str | None:
    """A recipe by name: a ``SearchConfig`` travels only as the name of a named recipe."""
    if value is None or isinstance(value, str):
        return value
    for name, config in RECIPES.items():
        if config == value:
            return name
    raise ConfigurationError("a remote Memory searches with the server's named recipes "
                             f"({', '.join(sorted(RECIPES))}); a custom SearchConfig "
                             "cannot be sent")


def lines_body(lines: Iterable[str]) -> Iterator[bytes]:
    """An export's lines as a streamed body, one line each."""
    for line in lines:
        yield (line if line.endswith("\n") else line + "\n").encode("utf-8", "surrogatepass")


def json_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines ending in a newline, split at newlines only (JSON text keeps U+2028, U+2029 and
    U+0085 unescaped inside strings: ``splitlines`` would cut a line there)."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split("\n")
        yield from (line + "\n" for line in lines if line)
    if pending:
        yield pending + "\n"
