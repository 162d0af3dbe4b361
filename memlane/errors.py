"""Every error memlane raises, in one tree.

    MemlaneError
    ├── UsageError               the caller asked for something invalid; nothing changed
    │   ├── InvalidInputError    bad text, timestamp, scope, metadata or file
    │   │   └── RequestTooLargeError  a request above the server's size limit
    │   ├── FilterError          a filter that does not parse (unknown field or operator)
    │   ├── ConfigurationError   an unknown store location or a missing optional extra
    │   ├── ReadOnlyError        a write to a store opened read-only (or not writable)
    │   └── AccessError          the server's key does not allow the request
    │       ├── AuthenticationError    no key, an unknown key or a revoked one
    │       └── PermissionDeniedError  the key may not do this (user, write, admin)
    ├── NotFoundError            no such memory in the caller's scope
    ├── ConflictError            a concurrent writer changed the memory first; retry
    └── BackendError             the store or a model failed at run time
        ├── RateLimitedError     the server's per-key rate limit; retry after a while
        ├── StoreError           a database error, translated at the store boundary
        ├── ErasurePendingError  erased rows are gone, their bytes not yet: a reader holds them
        └── ModelError           an embedding model or an LLM failed to load or run
            └── ModelOutputError an LLM answer that is not valid JSON for its schema

Misuse (``UsageError``) is kept apart from run-time failure (``BackendError``) so that
callers can retry the second and must fix the first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .erasure import EraseCounts


class MemlaneError(Exception):
    """Base class of every error raised by memlane."""


class UsageError(MemlaneError):
    """The request was invalid; nothing was changed."""


class InvalidInputError(UsageError, ValueError):
    """Bad input: empty or oversized text, a malformed timestamp, an unknown scope field."""


class FilterError(UsageError, ValueError):
    """A filter that does not parse: unknown field, unknown operator or a wrongly typed value."""


class ConfigurationError(UsageError):
    """An unknown store location, or an optional dependency that is not installed."""


class ReadOnlyError(UsageError):
    """A write to a store that was opened read-only, or whose file cannot be written."""

    PUBLIC = ("the store is read-only (opened so, or its file cannot be written): nothing "
              "was written")
    """What a server tells its clients instead (the message names the store's file)."""


class RequestTooLargeError(InvalidInputError):
    """A request to the server whose body is larger than the server accepts."""


class AccessError(UsageError):
    """The server refused the request because of its key (HTTP 401 or 403)."""


class AuthenticationError(AccessError):
    """No key, a key the server does not know, or a revoked key (HTTP 401)."""


class PermissionDeniedError(AccessError):
    """A valid key that may not do this: name another user than its own, write when it is
    read-only, or act on the whole tenant without being an admin key (HTTP 403)."""


class NotFoundError(MemlaneError, LookupError):
    """No memory with that id exists in the caller's scope."""


class ConflictError(MemlaneError):
    """Another writer changed the memory since it was read; re-read and retry."""


class BackendError(MemlaneError):
    """A run-time failure of the store or of a model; the request may succeed if retried."""


class RateLimitedError(BackendError):
    """Too many requests with one key; ``retry_after`` says how many seconds to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(BackendError):
    """A database error, translated at the store boundary."""


class ErasurePendingError(BackendError):
    """An erasure whose rows are deleted (no reader sees them again) but whose bytes are
    still in the store's files, because another connection holds a read snapshot taken
    before it. The store records it as pending and completes and verifies it at its next
    open or erasure once that reader ends; ``counts`` says what was deleted."""

    def __init__(self, message: str, counts: EraseCounts) -> None:
        super().__init__(message)
        self.counts = counts


class ModelError(BackendError):
    """An embedding model (or LLM) that failed to load or to run."""


def missing_extra(package: str, extra: str) -> ConfigurationError:
    """The error for an optional dependency that is not installed."""
    return ConfigurationError(
        f"{package} is not installed; install it with: pip install 'memlane[{extra}]'"
    )


class ModelOutputError(ModelError):
    """An LLM answer that does not parse or validate; ``raw`` holds the text it sent."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw
