"""The PostgreSQL store's tables, and the migrations that bring an older database up to
them (run under an advisory lock by the first connection of every store)."""

from __future__ import annotations

from typing import Any

from ..errors import StoreError
from ..types import index_text
from .postgres_bm25 import keywords

SCHEMA_LOCK = 7242001
"""The advisory lock that serializes changes of the schema."""

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS messages (
        tenant TEXT NOT NULL, rid BIGSERIAL, user_id TEXT NOT NULL, agent_id TEXT NOT NULL,
        session_id TEXT NOT NULL, id TEXT NOT NULL, role TEXT NOT NULL, name TEXT,
        content TEXT NOT NULL, event_time TEXT NOT NULL, created_at TEXT NOT NULL,
        metadata JSONB NOT NULL, PRIMARY KEY (tenant, rid),
        UNIQUE (tenant, user_id, agent_id, session_id, id))""",
    """CREATE INDEX IF NOT EXISTS messages_conversation
        ON messages (tenant, user_id, agent_id, session_id, event_time)""",
    """CREATE TABLE IF NOT EXISTS memories (
        tenant TEXT NOT NULL, rid BIGSERIAL, id TEXT NOT NULL, user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL, session_id TEXT NOT NULL, kind TEXT NOT NULL,
        text TEXT NOT NULL, role TEXT, speaker TEXT, hash TEXT NOT NULL,
        source_ids JSONB NOT NULL, tags JSONB NOT NULL, metadata JSONB NOT NULL,
        event_time TEXT NOT NULL, valid_from TEXT NOT NULL, valid_to TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, status TEXT NOT NULL,
        version INTEGER NOT NULL, superseded_by TEXT, importance DOUBLE PRECISION NOT NULL,
        pinned INTEGER NOT NULL, access_count INTEGER NOT NULL, last_accessed_at TEXT,
        expires_at TEXT, vec BYTEA NOT NULL, PRIMARY KEY (tenant, rid), UNIQUE (tenant, id))""",
    "CREATE INDEX IF NOT EXISTS memories_user ON memories (tenant, user_id, status, version)",
    "CREATE INDEX IF NOT EXISTS memories_agent ON memories (tenant, agent_id, status, version)",
    """CREATE INDEX IF NOT EXISTS memories_session
        ON memories (tenant, session_id, status, version)""",
    """CREATE TABLE IF NOT EXISTS history (
        tenant TEXT NOT NULL, rid BIGSERIAL, id TEXT NOT NULL, memory_id TEXT NOT NULL,
        op TEXT NOT NULL, version INTEGER NOT NULL, old_text TEXT, new_text TEXT,
        actor TEXT NOT NULL, reason TEXT, at TEXT NOT NULL, PRIMARY KEY (tenant, rid))""",
    "CREATE INDEX IF NOT EXISTS history_memory ON history (tenant, memory_id)",
    """CREATE INDEX IF NOT EXISTS memories_turn_source ON memories
        (tenant, user_id, agent_id, session_id, (source_ids ->> 0)) WHERE kind = 'turn'""",
    """CREATE TABLE IF NOT EXISTS adds (
        tenant TEXT NOT NULL, key TEXT NOT NULL, memory_ids TEXT NOT NULL,
        user_id TEXT NOT NULL, agent_id TEXT NOT NULL, session_id TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, user_id, agent_id, session_id, key))""",
    """CREATE TABLE IF NOT EXISTS jobs (
        tenant TEXT NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL,
        agent_id TEXT NOT NULL, session_id TEXT NOT NULL, add_key TEXT NOT NULL,
        memory_ids JSONB NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
        error TEXT, actions JSONB NOT NULL, usage JSONB NOT NULL, created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL, PRIMARY KEY (tenant, id))""",
    "CREATE TABLE IF NOT EXISTS changes (tenant TEXT PRIMARY KEY, counter BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS ann_indexes (
        tenant TEXT NOT NULL, name TEXT NOT NULL, user_id TEXT, agent_id TEXT,
        session_id TEXT, dim INTEGER NOT NULL, PRIMARY KEY (tenant, name))""",
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL, users TEXT NOT NULL, read_only INTEGER NOT NULL,
        admin INTEGER NOT NULL, label TEXT, created_at TEXT NOT NULL, revoked_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant, created_at)",
]
KEYWORDS = [
    "ALTER TABLE memories ADD COLUMN IF NOT EXISTS kw_plain tsvector",
    "ALTER TABLE memories ADD COLUMN IF NOT EXISTS kw_stem tsvector",
    "ALTER TABLE memories ADD COLUMN IF NOT EXISTS kw_len INTEGER",
]
KEYWORD_INDEXES = [
    "CREATE INDEX IF NOT EXISTS memories_kw_plain ON memories USING gin (kw_plain)",
    "CREATE INDEX IF NOT EXISTS memories_kw_stem ON memories USING gin (kw_stem)",
]
SCHEMA_VERSION = 6
"""1: tables; 2: keyword terms as tsvector columns with GIN indexes (rows backfilled);
3: the terms recomputed with the tokenizer of any script; 4: idempotency keys kept with a
digest of their add (``adds.fingerprint``, NULL for older keys); 5: server keys
(``api_keys``, created with the other tables); 6: an idempotency key is its scope's own
(the scope joins the primary key of ``adds``)."""
ADDS_KEY = ("ALTER TABLE adds DROP CONSTRAINT adds_pkey, "
            "ADD PRIMARY KEY (tenant, user_id, agent_id, session_id, key)")
BACKFILL_BATCH = 5_000
TABLES = ("memories", "messages", "history", "adds", "jobs", "ann_indexes", "meta")
"""The tables ``reset`` empties: all but ``api_keys`` (keys are credentials, not memories)
and ``changes``, whose counters only grow (a process that searched before a reset must
see a generation it never saw)."""


def migrate(conn: Any) -> None:
    """Bring the schema up to ``SCHEMA_VERSION`` (under the caller's advisory lock)."""
    for statement in SCHEMA:
        conn.execute(statement)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    current = int(row[0]) if row else 1
    if current > SCHEMA_VERSION:
        raise StoreError(f"the database has schema version {current}; this memlane "
                         f"knows up to {SCHEMA_VERSION}: upgrade memlane")
    if current < 3:
        _migrate_keywords(conn, current)
    if current < 4:
        conn.execute("ALTER TABLE adds ADD COLUMN IF NOT EXISTS fingerprint TEXT")
    if current < 6:
        conn.execute(ADDS_KEY)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) ON CONFLICT "
                 "(key) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))


def _migrate_keywords(conn: Any, current: int) -> None:
    """Versions 2 and 3: keyword columns and their GIN indexes, rows backfilled."""
    for statement in KEYWORDS:
        conn.execute(statement)
    if current == 2:  # terms of the ASCII-only tokenizer: recompute them
        conn.execute("UPDATE memories SET kw_len = NULL")
    while True:  # rows without (current) terms get them
        rows = conn.execute("SELECT rid, text, speaker FROM memories WHERE kw_len IS "
                            "NULL LIMIT %s", (BACKFILL_BATCH,)).fetchall()
        if not rows:
            break
        conn.cursor().executemany(
            "UPDATE memories SET kw_plain = %s::tsvector, kw_stem = %s::tsvector, "
            "kw_len = %s WHERE rid = %s",
            [(*keywords(index_text(text, speaker)), rid) for rid, text, speaker in rows])
    for statement in KEYWORD_INDEXES:
        conn.execute(statement)
    for (name,) in conn.execute(  # one table-wide HNSW index, now one per large scope
            "SELECT indexname FROM pg_indexes WHERE tablename = 'memories' AND "
            "indexname LIKE 'memories\\_hnsw\\_%'").fetchall():
        conn.execute(f'DROP INDEX "{name}"')
