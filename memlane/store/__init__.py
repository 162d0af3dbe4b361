"""Stores: where memories live. Pick one by a location string with ``open_store``."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigurationError
from .base import (
    AdminStore,
    ApiKey,
    EraseCounts,
    JobStore,
    KeyStore,
    LogStore,
    RecordQuery,
    RecordStore,
    RecordUpdate,
    ScopeCounts,
    SearchStore,
    Store,
    StoreCapabilities,
    WriteBatch,
    WriteOutcome,
)
from .memory import InMemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "AdminStore",
    "ApiKey",
    "EraseCounts",
    "InMemoryStore",
    "JobStore",
    "KeyStore",
    "LogStore",
    "RecordQuery",
    "RecordStore",
    "RecordUpdate",
    "SQLiteStore",
    "ScopeCounts",
    "SearchStore",
    "Store",
    "StoreCapabilities",
    "WriteBatch",
    "WriteOutcome",
    "open_store",
]


LOCATIONS = ("a SQLite file path, sqlite:///relative.db, sqlite:////absolute.db, :memory: "
             "or postgresql://user@host:port/database")


def open_store(location: str | os.PathLike[str], *, read_only: bool = False,
               create: bool = True, connections: int | None = None) -> Store:
    """``":memory:"`` (in-process), a file path, ``sqlite:///relative.db``,
    ``sqlite:////absolute.db`` or ``postgresql://user@host:port/database``.

    ``read_only`` opens an existing SQLite file for reading only. Without ``create`` a
    SQLite file must already exist (memlane never creates a PostgreSQL database).
    ``connections`` bounds the connections a PostgreSQL store's pool opens (a SQLite
    store has one connection; an in-memory store none)."""
    if not isinstance(location, str | os.PathLike) or not isinstance(os.fspath(location), str):
        raise ConfigurationError(f"a store location is a string or a path, not "
                                 f"{type(location).__name__}: use {LOCATIONS}")
    text = os.fspath(location)
    if not text.strip():
        raise ConfigurationError(f"the store location is empty: use {LOCATIONS}")
    if text.startswith(("postgresql://", "postgres://")):
        if read_only:
            raise ConfigurationError("read-only opening is for SQLite files; for PostgreSQL, "
                                     "connect as a role that may only read")
        from .postgres import PostgresStore

        return PostgresStore(text) if connections is None else PostgresStore(
            text, pool_size=connections)
    path = text.removeprefix("sqlite://").removeprefix("/") if text.startswith(
        "sqlite://") else text  # sqlite:///rel.db, sqlite:////abs/path.db
    if "://" in path:
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(f"unknown store location scheme {scheme!r}; use {LOCATIONS}")
    if path in ("", ":memory:") and (read_only or not create):
        raise ConfigurationError("an in-memory store starts empty: there is nothing to open "
                                 "read-only or to read from")
    if text == ":memory:":
        return InMemoryStore()
    if path in ("", ":memory:"):
        return SQLiteStore(":memory:")
    return SQLiteStore(Path(path).expanduser(), read_only=read_only, create=create)
