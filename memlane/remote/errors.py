"""A server's error answer raised as the class of ``memlane.errors`` it names.

The server answers ``{"error": {"type": <class name>, "message": ...}}`` (with
``retry_after``, ``counts`` or ``raw`` for the classes that carry them); an answer without
that shape (a proxy's page, say) is mapped by its status code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import errors as tree
from ..serialize import erase_counts_from_dict

if TYPE_CHECKING:
    import httpx

BY_STATUS: dict[int, type[tree.MemlaneError]] = {
    401: tree.AuthenticationError, 403: tree.PermissionDeniedError, 404: tree.NotFoundError,
    409: tree.ConflictError, 413: tree.RequestTooLargeError, 429: tree.RateLimitedError,
}
"""Other statuses: below 500 ``InvalidInputError``, else ``StoreError`` (for a client the
server is its store: a proxy's 502 or 504 says it cannot be reached)."""
DEFAULT_RETRY_AFTER = 1.0


def error_from(response: httpx.Response) -> tree.MemlaneError:
    """The library's error for a failed response."""
    try:
        error = response.json()["error"]
        kind, message = error["type"], error["message"]
        if not isinstance(kind, str) or not isinstance(message, str):
            raise TypeError(kind)
    except (ValueError, KeyError, TypeError):
        return _by_status(response)
    cls = getattr(tree, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, tree.MemlaneError)):
        cls = _status_class(response.status_code)
    return _build(cls, message, error, response)


def _status_class(status: int) -> type[tree.MemlaneError]:
    if status in BY_STATUS:
        return BY_STATUS[status]
    return tree.InvalidInputError if status < 500 else tree.StoreError


def _by_status(response: httpx.Response) -> tree.MemlaneError:
    text = response.text.strip().replace("\n", " ")[:200]
    message = (f"the server at {response.request.url.copy_with(query=None)} answered "
               f"{response.status_code} {response.reason_phrase}, not a memlane error"
               + (f": {text}" if text else ""))
    return _build(_status_class(response.status_code), message, {}, response)


def _build(cls: type[tree.MemlaneError], message: str, error: dict[str, Any],
           response: httpx.Response) -> tree.MemlaneError:
    if issubclass(cls, tree.RateLimitedError):
        return cls(message, _retry_after(error, response))
    if issubclass(cls, tree.ErasurePendingError):
        try:
            return cls(message, erase_counts_from_dict(error["counts"]))
        except (KeyError, tree.InvalidInputError):
            return tree.StoreError(message)
    if issubclass(cls, tree.ModelOutputError):
        return cls(message, str(error.get("raw", "")))
    return cls(message)


def _retry_after(error: dict[str, Any], response: httpx.Response) -> float:
    for value in (error.get("retry_after"), response.headers.get("Retry-After")):
        try:
            return max(0.0, float(value))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return DEFAULT_RETRY_AFTER
