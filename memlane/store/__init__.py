"""Stores: where memories live. Pick one by a location string with ``open_store``."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigurationError
from .base import (
    EraseCounts,
    RecordQuery,
    RecordUpdate,
    ScopeCounts,
    Store,
    StoreCapabilities,
    WriteBatch,
    WriteOutcome,
)
from .memory import InMemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "EraseCounts",
    "InMemoryStore",
    "RecordQuery",
    "RecordUpdate",
    "SQLiteStore",
    "ScopeCounts",
    "Store",
    "StoreCapabilities",
    "WriteBatch",
    "WriteOutcome",
    "open_store",
]


def open_store(location: str | Path) -> Store:
    """``":memory:"`` (in-process), a file path, ``sqlite:///relative.db``,
    ``sqlite:////absolute.db`` or ``postgresql://user@host:port/database``."""
    text = str(location)
    if text == ":memory:":
        return InMemoryStore()
    if text.startswith("sqlite://"):
        path = text.removeprefix("sqlite://")
        path = path.removeprefix("/")  # sqlite:///rel.db, sqlite:////abs/path.db
        return SQLiteStore(path or ":memory:")
    if text.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"unknown store location scheme {scheme!r}; use a file path, sqlite:///path "
            "or :memory:"
        )
    return SQLiteStore(Path(text).expanduser())
