"""The SQLite schema, as numbered migrations applied in order inside one transaction each.

Scope columns hold '' for "not set" so that they can take part in unique keys and indexes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import InvalidInputError, ReadOnlyError


def _run(db: sqlite3.Connection, script: str) -> None:
    """Run a script statement by statement (``executescript`` would commit midway)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE messages (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant TEXT NOT NULL, user_id TEXT NOT NULL, agent_id TEXT NOT NULL,
            session_id TEXT NOT NULL, id TEXT NOT NULL, role TEXT NOT NULL, name TEXT,
            content TEXT NOT NULL, event_time TEXT NOT NULL, created_at TEXT NOT NULL,
            metadata TEXT NOT NULL,
            UNIQUE (tenant, user_id, agent_id, session_id, id)
        );
        CREATE INDEX messages_user ON messages (tenant, user_id, event_time);
        CREATE INDEX messages_conversation
            ON messages (tenant, user_id, agent_id, session_id, event_time);
        CREATE TABLE memories (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL, user_id TEXT NOT NULL, agent_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            kind TEXT NOT NULL, text TEXT NOT NULL, role TEXT, speaker TEXT,
            hash TEXT NOT NULL, source_ids TEXT NOT NULL, tags TEXT NOT NULL,
            metadata TEXT NOT NULL,
            event_time TEXT NOT NULL, valid_from TEXT NOT NULL, valid_to TEXT,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            status TEXT NOT NULL, version INTEGER NOT NULL, superseded_by TEXT,
            importance REAL NOT NULL, pinned INTEGER NOT NULL,
            access_count INTEGER NOT NULL, last_accessed_at TEXT, expires_at TEXT
        );
        CREATE INDEX memories_user ON memories (tenant, user_id, status, version);
        CREATE INDEX memories_agent ON memories (tenant, agent_id, status, version);
        CREATE INDEX memories_session ON memories (tenant, session_id, status, version);
        CREATE INDEX memories_time ON memories (tenant, user_id, event_time);
        CREATE TABLE memory_vectors (
            memory_rowid INTEGER PRIMARY KEY REFERENCES memories (rowid),
            vec BLOB NOT NULL
        );
        CREATE TABLE history (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE, memory_id TEXT NOT NULL, tenant TEXT NOT NULL,
            op TEXT NOT NULL, version INTEGER NOT NULL, old_text TEXT, new_text TEXT,
            actor TEXT NOT NULL, reason TEXT, at TEXT NOT NULL
        );
        CREATE INDEX history_memory ON history (memory_id);
        CREATE TABLE adds (
            tenant TEXT NOT NULL, key TEXT NOT NULL, memory_ids TEXT NOT NULL,
            user_id TEXT NOT NULL, agent_id TEXT NOT NULL, session_id TEXT NOT NULL,
            created_at TEXT NOT NULL, PRIMARY KEY (tenant, key)
        );
        """
    )


def _v2(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user_id TEXT NOT NULL,
            agent_id TEXT NOT NULL, session_id TEXT NOT NULL, add_key TEXT NOT NULL,
            memory_ids TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
            error TEXT, actions TEXT NOT NULL, usage TEXT NOT NULL,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL
        );
        CREATE INDEX jobs_status ON jobs (tenant, status, created_at)
        """,
    )


def _v3(db: sqlite3.Connection) -> None:
    """An idempotency key is kept with a digest of its add's content (NULL for older keys,
    which are matched by scope alone)."""
    db.execute("ALTER TABLE adds ADD COLUMN fingerprint TEXT")


def _v4(db: sqlite3.Connection) -> None:
    """Turns found by the raw message they were made from (the turns behind a hit)."""
    db.execute("CREATE INDEX memories_turn_source ON memories (tenant, user_id, agent_id, "
               "session_id, json_extract(source_ids, '$[0]')) WHERE kind = 'turn'")


def _v5(db: sqlite3.Connection) -> None:
    """Server keys: only a hash of each secret is kept (``memlane keys``)."""
    _run(
        db,
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY, tenant TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL, users TEXT NOT NULL, read_only INTEGER NOT NULL,
            admin INTEGER NOT NULL, label TEXT, created_at TEXT NOT NULL, revoked_at TEXT
        );
        CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at)
        """,
    )


def _v6(db: sqlite3.Connection) -> None:
    """An idempotency key is its scope's own: the same key in another scope of the tenant
    is another key (the table rebuilt with the scope in its primary key, rows kept)."""
    _run(
        db,
        """
        CREATE TABLE adds_v6 (
            tenant TEXT NOT NULL, user_id TEXT NOT NULL, agent_id TEXT NOT NULL,
            session_id TEXT NOT NULL, key TEXT NOT NULL, memory_ids TEXT NOT NULL,
            fingerprint TEXT, created_at TEXT NOT NULL,
            PRIMARY KEY (tenant, user_id, agent_id, session_id, key)
        );
        INSERT INTO adds_v6 (tenant, user_id, agent_id, session_id, key, memory_ids,
                             fingerprint, created_at)
            SELECT tenant, user_id, agent_id, session_id, key, memory_ids, fingerprint,
                   created_at FROM adds;
        DROP TABLE adds;
        ALTER TABLE adds_v6 RENAME TO adds
        """,
    )


def _v7(db: sqlite3.Connection) -> None:
    """Each memory row carries the sequence number of the write that last changed it, so
    that a process's in-process indexes read only what changed since they were built
    (``seq``, unique and increasing over the file; older rows numbered in row order)."""
    _run(
        db,
        """
        ALTER TABLE memories ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
        UPDATE memories SET seq = rowid;
        CREATE INDEX memories_seq ON memories (seq);
        CREATE INDEX memories_tenant_seq ON memories (tenant, seq)
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7]
"""Migration N is ``MIGRATIONS[N - 1]``; ``PRAGMA user_version`` records the last applied."""


def migrate(db: sqlite3.Connection, where: str = "the database") -> int:
    """Bring the schema up to date; safe when several processes open a new file at once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        current = db.execute("PRAGMA user_version").fetchone()[0]
        if current == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise InvalidInputError(f"{where} is the SQLite database of another application (it "
                                    "has tables but no memlane schema); it was left untouched")
        for number in range(current + 1, len(MIGRATIONS) + 1):
            MIGRATIONS[number - 1](db)
            db.execute(f"PRAGMA user_version = {number}")
        if current == 0:  # a new file, written with secure_delete from its first page
            db.execute("INSERT INTO meta (key, value) VALUES ('sqlite.free_space', 'zeroed')")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def check_current(db: sqlite3.Connection, path: str) -> None:
    """For a file opened read-only, which cannot be migrated: its schema must be current."""
    current = db.execute("PRAGMA user_version").fetchone()[0]
    if current == len(MIGRATIONS):
        return
    if current == 0:
        raise InvalidInputError(f"{path} holds no memlane store")
    if current < len(MIGRATIONS):
        raise ReadOnlyError(f"{path} was written by an older memlane: its schema needs an "
                            "upgrade, which needs write access; open it once writable")
    raise InvalidInputError(f"{path} was written by a newer memlane (schema {current}); "
                            "upgrade memlane")
