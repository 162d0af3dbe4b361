"""The scale-out store: PostgreSQL, through a psycopg 3 connection pool (extra ``postgres``).

Same records, raw messages, history, jobs and semantics as the SQLite store; searches run
on the same in-process indexes derived from the rows (``derived``), so scores agree with
SQLite. Every table leads with ``tenant`` and every query filters by it first, so the
tables can be distributed by tenant (see docs/postgres.md). A per-tenant change counter,
bumped in every write transaction, tells readers when their derived indexes are stale.
Serialization failures and deadlocks are retried.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from ..errors import ConflictError, InvalidInputError, StoreError, missing_extra
from ..text import Analyzer, analyze, stem
from ..timeutil import to_text
from ..types import (
    HistoryEvent,
    Job,
    MemoryRecord,
    Message,
    Scope,
    Scored,
    index_text,
)
from . import rows as codec
from .base import (
    EraseCounts,
    RecordQuery,
    StoreCapabilities,
    Vector,
    WriteBatch,
    WriteOutcome,
    check_add_key_reuse,
    check_basis,
    dense_score,
    keyword_score,
)
from .derived import Admitted, DerivedSearch
from .postgres_sql import (
    KEYWORD_COLUMNS,
    bm25_params,
    bm25_sql,
    document_frequencies_sql,
    tsquery_literal,
    tsvector_literal,
    where_clause,
)
from .sql_common import SQLCounts

T = TypeVar("T")
RETRIES = 5
_JSON = ("source_ids", "tags", "metadata")
_NAMES = [c.strip() for c in codec.COLS.split(",")]
_SELECT = ", ".join(f"{c}::text" if c in _JSON else c for c in _NAMES)
_M_SELECT = ", ".join(f"m.{c}::text" if c in _JSON else f"m.{c}" for c in _NAMES)
_INSERT = ", ".join("%s::jsonb" if c in _JSON else "%s" for c in _NAMES)
_MSG_SELECT = codec.MSG_COLS.replace("metadata", "metadata::text")
_VALID_INDEX = ("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                "WHERE c.relname = %s")
_KW_COLS = "kw_plain, kw_stem, kw_len"
_KW_MARKS = "%s::tsvector, %s::tsvector, %s"
CONVERSATION_LOCK = 7242002
"""The class of the advisory locks that serialize adds to one conversation (the second
key is a hash of the conversation; two-key locks never collide with one-key ones)."""
_JOB_SELECT = (codec.JOB_COLS.replace("memory_ids", "memory_ids::text")
               .replace("actions", "actions::text").replace("usage", "usage::text"))

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
    """CREATE TABLE IF NOT EXISTS adds (
        tenant TEXT NOT NULL, key TEXT NOT NULL, memory_ids TEXT NOT NULL,
        user_id TEXT NOT NULL, agent_id TEXT NOT NULL, session_id TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (tenant, key))""",
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
SCHEMA_VERSION = 4
"""1: tables; 2: keyword terms as tsvector columns with GIN indexes (rows backfilled);
3: the terms recomputed with the tokenizer of any script; 4: idempotency keys kept with a
digest of their add (``adds.fingerprint``, NULL for older keys)."""
BACKFILL_BATCH = 5_000
TABLES = ("memories", "messages", "history", "adds", "jobs", "changes", "ann_indexes", "meta")


class PostgresStore(SQLCounts, DerivedSearch):
    """A memlane store in a PostgreSQL database."""

    _mark = "%s"
    _usage_number = "(usage ->> '{key}')::bigint"
    _hidden_messages = (
        "EXISTS (SELECT 1 FROM memories m WHERE {scope} AND m.kind = %s AND m.status = %s "
        "AND m.user_id = messages.user_id AND m.agent_id = messages.agent_id AND "
        "m.session_id = messages.session_id AND m.source_ids @> jsonb_build_array(messages.id))")
    capabilities = StoreCapabilities(name="postgres", persistent=True, multi_process=True)

    def __init__(self, location: str, *, pool_size: int = 4,
                 query_cache_rows: int = 500_000, index_threshold: int | None = 50_000,
                 keyword_threshold: int | None = 1_000_000,
                 index_build_memory: str = "1GB") -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise missing_extra("psycopg", "postgres") from exc
        self._psycopg = psycopg
        self.location = location
        self._lock = threading.RLock()
        self._init_derived(query_cache_rows)
        try:  # one direct connection first: a bad address fails at once, with its reason
            with psycopg.connect(location, connect_timeout=10) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7242001)")
                self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store: {exc}") from exc
        self._pool = ConnectionPool(location, min_size=1, max_size=pool_size, open=True,
                                    timeout=30)
        self.index_threshold = index_threshold
        self.keyword_threshold = keyword_threshold
        self._vectors_in_db = index_threshold is not None and self._ann()
        self.index_build_memory = index_build_memory
        self._ann_checked: dict[str, Hashable] = {}

    @staticmethod
    def _migrate(conn: Any) -> None:
        """Bring the schema up to ``SCHEMA_VERSION`` (under the caller's advisory lock)."""
        for statement in SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        current = int(row[0]) if row else 1
        if current > SCHEMA_VERSION:
            raise StoreError(f"the database has schema version {current}; this memlane "
                             f"knows up to {SCHEMA_VERSION}: upgrade memlane")
        if current < 3:
            PostgresStore._migrate_keywords(conn, current)
        if current < 4:
            conn.execute("ALTER TABLE adds ADD COLUMN IF NOT EXISTS fingerprint TEXT")
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) ON CONFLICT "
                     "(key) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))

    @staticmethod
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
                [(*_keywords(index_text(text, speaker)), rid) for rid, text, speaker in rows])
        for statement in KEYWORD_INDEXES:
            conn.execute(statement)
        for (name,) in conn.execute(  # one table-wide HNSW index, now one per large scope
                "SELECT indexname FROM pg_indexes WHERE tablename = 'memories' AND "
                "indexname LIKE 'memories\\_hnsw\\_%'").fetchall():
            conn.execute(f'DROP INDEX "{name}"')

    # --- keyword search in the database (tsvector, GIN) for large scopes -----------------

    def _keyword_search(self, query: RecordQuery, admitted: Admitted, text: str, limit: int,
                        analyzer: Analyzer) -> list[Scored]:
        """BM25 in process, or in the database (GIN index on the analyzer's tsvector
        column, same formula and statistics) when a query admits more than
        ``keyword_threshold`` rows: more than a process should index itself. (In process is
        much faster: the database reads every admitted row holding a query term.)"""
        if _above(admitted, self.keyword_threshold):
            return self._gin_keyword_search(query, admitted, text, limit, analyzer)
        return super()._keyword_search(query, admitted, text, limit, analyzer)

    def keyword_search_in_process(self, query: RecordQuery, text: str, limit: int,
                                  analyzer: Analyzer = "plain") -> list[Scored]:
        """BM25 on the in-process index, whatever the size of the scope."""
        with self._lock:
            admitted = self._admitted(query)
        return super()._keyword_search(query, admitted, text, limit, analyzer)

    def vector_search_in_process(self, query: RecordQuery, vector: Vector,
                                 limit: int) -> list[Scored]:
        """Exact search in process, whatever the size of the scope (what HNSW recall is
        measured against)."""
        with self._lock:
            admitted = self._admitted(query)
        return super()._vector_search(query, admitted, vector, limit)

    def gin_keyword_search(self, query: RecordQuery, text: str, limit: int,
                           analyzer: Analyzer = "plain") -> list[Scored]:
        """BM25 computed in the database, whatever the size of the scope."""
        with self._lock:
            admitted = self._admitted(query)
        return self._gin_keyword_search(query, admitted, text, limit, analyzer)

    def _gin_keyword_search(self, query: RecordQuery, admitted: Admitted, text: str,
                            limit: int, analyzer: Analyzer, k1: float = 1.2,
                            b: float = 0.75) -> list[Scored]:
        """Exact BM25 in SQL. Document frequencies are counted first (GIN); then, as in
        MaxScore, terms held by more than a tenth of the rows are left out of the candidate
        set when the best ``limit`` rows holding a rarer term all score more than those
        frequent terms could add together; otherwise every matching row is scored."""
        terms = list(dict.fromkeys(analyze(text, analyzer)))
        if limit <= 0 or not terms or not len(admitted.ids):
            return []
        assert admitted.lengths is not None  # each row's kw_len (``_admitted_rows``)
        where, params = where_clause(query)
        column = KEYWORD_COLUMNS[analyzer]
        n_docs, mean_length = len(admitted.ids), float(admitted.lengths.mean())

        def search(conn: Any) -> list[Any]:
            conn.execute("SET LOCAL work_mem = '64MB'")  # the scored rows, without spilling
            counts = conn.execute(document_frequencies_sql(where, column, len(terms)), [
                *(tsquery_literal([t]) for t in terms), tsquery_literal(terms), *params,
            ]).fetchone()
            df = {t: int(c) for t, c in zip(terms, counts, strict=True) if c}
            present = [t for t in terms if t in df]
            if not present:
                return []

            def scored(candidates: list[str]) -> list[Any]:
                return conn.execute(  # type: ignore[no-any-return]
                    bm25_sql(where, column), bm25_params(
                        params, present, [df[t] for t in present], candidates, n_docs,
                        mean_length, k1, b, limit)).fetchall()

            frequent = sorted((t for t in present if 10 * df[t] > n_docs),
                              key=lambda t: -df[t])[: len(present) - 1]
            if not frequent:
                return scored(present)
            rows = scored([t for t in present if t not in frequent])
            ceiling = sum(math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5)) * (k1 + 1)
                          for t in frequent)  # no row of frequent terms alone reaches it
            if len(rows) == limit and float(rows[-1][2]) > ceiling * (1 + 1e-9):
                return rows
            return scored(present)

        found = self._retrying(search)
        return self._ranked([r[0] for r in found], [r[1] for r in found],
                            [keyword_score(float(r[2])) for r in found], limit)

    # --- approximate vector search (pgvector HNSW) for large scopes -----------------------

    def _ann(self) -> bool:
        """Add the pgvector column if the extension can be used; False if it cannot."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7242001)")
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute("ALTER TABLE memories ADD COLUMN IF NOT EXISTS embedding vector")
            return True
        except self._psycopg.Error:
            return False

    def ensure_ann_index(self, scope: Scope, dim: int) -> str:
        """Build the HNSW index of ``scope`` for vectors of ``dim`` dimensions if missing;
        its name.

        One partial index per large scope (``WHERE tenant = .. AND user_id = ..``), built on
        first need (the first search of a scope above ``index_threshold``), so writes to
        small scopes never maintain a graph and a build costs the size of its scope, not of
        the table. Built ``CONCURRENTLY``: writers are not blocked meanwhile. Call it after a
        bulk load to build at a time of your choosing.
        """
        name = _ann_name(scope, dim)
        if self._rows(_VALID_INDEX, (name,)) == [(True,)]:
            return name
        with self._pool.connection() as conn:
            conn.autocommit = True  # CREATE INDEX CONCURRENTLY runs outside a transaction
            try:
                self._build_ann_index(conn, name, scope, dim)
            finally:
                conn.autocommit = False
        return name

    def _build_ann_index(self, conn: Any, name: str, scope: Scope, dim: int) -> None:
        # poll, not wait: a session waiting on the lock would hold a snapshot that the
        # holder's CREATE INDEX CONCURRENTLY waits for (a deadlock)
        while not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                               (name,)).fetchone()[0]:
            time.sleep(0.1)
            if conn.execute(_VALID_INDEX, (name,)).fetchone() == (True,):
                return  # another session built it
        sql = self._psycopg.sql
        try:
            state = conn.execute(_VALID_INDEX, (name,)).fetchone()
            if state == (True,):
                return
            if state is not None:  # an interrupted build left an invalid index
                conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            conn.execute(
                "INSERT INTO ann_indexes (tenant, name, user_id, agent_id, session_id, dim) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (scope.tenant, name, scope.user_id, scope.agent_id, scope.session_id, dim))
            conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(
                sql.Literal(self.index_build_memory)))
            conn.execute(sql.SQL(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON memories USING hnsw "
                "((embedding::vector({})) vector_cosine_ops) WHERE {}").format(
                    sql.Identifier(name), sql.Literal(int(dim)), sql.SQL(" AND ").join(
                        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Literal(v))
                        for c, v in codec.scope_pairs(scope))))
            conn.execute("RESET maintenance_work_mem")
            conn.execute("ANALYZE memories")  # or the planner may sort the scope instead
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))

    def _vector_search(self, query: RecordQuery, admitted: Admitted, vector: Vector,
                       limit: int) -> list[Scored]:
        """Exact search in process; pgvector HNSW on the scope's own index (iterative scans,
        so filters inside the scope still fill the top k) when the query admits more than
        ``index_threshold`` rows."""
        if not self._vectors_in_db or not _above(admitted, self.index_threshold):
            return super()._vector_search(query, admitted, vector, limit)
        name = _ann_name(query.scope, len(vector))
        if self._ann_checked.get(name) != admitted.generation:  # built, and not dropped since
            self.ensure_ann_index(query.scope, len(vector))
            self._ann_checked[name] = admitted.generation
        return self.ann_search(query, vector, limit)

    def ann_search(self, query: RecordQuery, vector: Vector, limit: int,
                   ef_search: int = 200) -> list[Scored]:
        dim = len(vector)
        where, params = where_clause(query)
        literal = _literal(vector)
        sql = self._psycopg.sql

        def search(conn: Any) -> list[Any]:
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            # the scope as literals too, so the planner can match the scope's partial index
            scope = " AND ".join(
                sql.SQL("m.{} = {}").format(sql.Identifier(c), sql.Literal(v)).as_string(conn)
                for c, v in codec.scope_pairs(query.scope))
            return conn.execute(  # type: ignore[no-any-return]
                f"SELECT m.rid, m.version, m.embedding::vector({dim}) <=> %s::vector({dim}) "
                f"AS d FROM memories m WHERE {scope} AND {where} ORDER BY d LIMIT %s",
                (literal, *params, limit)).fetchall()

        found = self._retrying(search)
        return self._ranked([r[0] for r in found], [r[1] for r in found],
                            [dense_score(1.0 - float(r[2])) for r in found], limit)

    # --- plumbing ------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.close()

    def _retrying(self, work: Callable[[Any], T]) -> T:
        """Run ``work(conn)`` in a transaction, again on serialization failure or deadlock."""
        errors = self._psycopg.errors
        for attempt in range(RETRIES):
            try:
                with self._pool.connection() as conn, conn.transaction():
                    return work(conn)
            except (errors.SerializationFailure, errors.DeadlockDetected):
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.01 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            with self._pool.connection() as conn:
                return conn.execute(sql, params).fetchall()
        except self._psycopg.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = %s", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._retrying(lambda c: c.execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
            "SET value = EXCLUDED.value", (key, value)))

    # --- writes --------------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteOutcome:
        errors = self._psycopg.errors
        try:
            return self._retrying(lambda conn: self._write(conn, batch))
        except errors.UniqueViolation as exc:
            raise InvalidInputError(f"write rejected, nothing stored: {exc}") from exc
        except self._psycopg.Error as exc:
            raise StoreError(f"write failed, nothing stored: {exc}") from exc

    def _write(self, conn: Any, batch: WriteBatch) -> WriteOutcome:
        tenant = batch.scope.tenant
        if batch.after is not None:  # adds to one conversation check and commit in turn
            conversation = json.dumps([tenant, *codec.scope_values(batch.scope)])
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (CONVERSATION_LOCK, conversation))
        if batch.add_key is not None:
            done = self._claim_add_key(conn, batch)
            if done is not None:
                return WriteOutcome(False, done)
        check_basis(batch, lambda n: self._newest(conn, batch.scope, n))
        cursor = conn.cursor()  # rows stream in with COPY: one round trip per table
        _copy(cursor, "messages", codec.MSG_COLS, [codec.message_row(m) for m in batch.messages])
        ann = self._vectors_in_db
        _copy(cursor, "memories", f"{codec.COLS}, vec, {_KW_COLS}" + (", embedding" if ann else ""),
              [(*codec.record_row(r), codec.blob(v), *_keywords(r.index_text),
                *((_literal(v),) if ann else ())) for r, v in batch.inserts])
        for update in batch.updates:
            self._update(conn, update.record, update.expected_version, update.vector, ann)
        _copy(cursor, "history", codec.HIST_COLS, [codec.event_row(e) for e in batch.events])
        for job in batch.jobs:
            values = codec.job_row(job)
            conn.execute(
                f"INSERT INTO jobs ({codec.JOB_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, "
                "%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s) ON CONFLICT (tenant, id) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in
                            ("status", "attempts", "error", "actions", "usage", "updated_at")),
                values)
        ids = tuple(r.id for r, _ in batch.inserts)
        if batch.add_key is not None:
            conn.execute("UPDATE adds SET memory_ids = %s WHERE tenant = %s AND key = %s",
                         (json.dumps(ids), tenant, batch.add_key))
        self._bump(conn, tenant)
        return WriteOutcome(True, ids)

    @staticmethod
    def _claim_add_key(conn: Any, batch: WriteBatch) -> tuple[str, ...] | None:
        """Claim ``batch.add_key`` for this add; if an add already holds it, the ids it
        stored (when it is this same add: else ``ConflictError``)."""
        tenant = batch.scope.tenant
        claimed = conn.execute(
            "INSERT INTO adds (tenant, key, memory_ids, user_id, agent_id, session_id, "
            "fingerprint) VALUES (%s, %s, '[]', %s, %s, %s, %s) ON CONFLICT DO NOTHING "
            "RETURNING key", (tenant, batch.add_key, *codec.scope_values(batch.scope),
                              batch.add_fingerprint)).fetchone()
        if claimed is not None:
            return None
        row = conn.execute("SELECT memory_ids, user_id, agent_id, session_id, fingerprint "
                           "FROM adds WHERE tenant = %s AND key = %s",
                           (tenant, batch.add_key)).fetchone()
        check_add_key_reuse(batch, codec.scope_of(tenant, row[1:4]), row[4])
        return tuple(json.loads(row[0]))

    @staticmethod
    def _bump(conn: Any, tenant: str) -> None:
        conn.execute("INSERT INTO changes (tenant, counter) VALUES (%s, 1) ON CONFLICT (tenant) "
                     "DO UPDATE SET counter = changes.counter + 1", (tenant,))

    @staticmethod
    def _update(conn: Any, record: MemoryRecord, expected: int, vector: Vector | None,
                ann: bool) -> None:
        sets = ", ".join(f"{c} = {p}" for c, p in zip(
            [*_NAMES, *_KW_COLS.split(", ")], [*_INSERT.split(", "), *_KW_MARKS.split(", ")],
            strict=True))
        extra: str = ""
        params: tuple[Any, ...] = _keywords(record.index_text)
        if vector is not None:
            extra, params = ", vec = %s", (*params, codec.blob(vector))
            if ann:
                extra, params = extra + ", embedding = %s::vector", (*params, _literal(vector))
        row = conn.execute(
            f"UPDATE memories SET {sets}{extra} WHERE tenant = %s AND id = %s AND version = %s "
            "RETURNING rid", (*codec.record_row(record), *params, record.tenant, record.id,
                              expected)).fetchone()
        if row is None:
            raise ConflictError(f"memory {record.id} changed; re-read and retry")

    # --- reads ---------------------------------------------------------------------------

    def get(self, tenant: str, ids: Sequence[str]) -> list[MemoryRecord]:
        rows = self._rows(f"SELECT {_SELECT} FROM memories WHERE tenant = %s AND id = ANY(%s)",
                          (tenant, list(ids)))
        found = {r[0]: codec.record(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def find(self, query: RecordQuery, *, limit: int | None = None, offset: int = 0,
             newest_first: bool = False) -> list[MemoryRecord]:
        where, params = where_clause(query)
        order = "DESC" if newest_first else "ASC"
        rows = self._rows(f"SELECT {_M_SELECT} FROM memories m WHERE {where} ORDER BY "
                          f'm.event_time COLLATE "C" {order}, m.id COLLATE "C" {order} '
                          "LIMIT %s OFFSET %s", (*params, limit, offset))
        return [codec.record(r) for r in rows]

    def _generation(self, query: RecordQuery) -> int:
        rows = self._rows("SELECT counter FROM changes WHERE tenant = %s", (query.scope.tenant,))
        return int(rows[0][0]) if rows else 0

    def _where(self, query: RecordQuery) -> tuple[str, list[Any]]:
        return where_clause(query)

    def _admitted_key(self, query: RecordQuery) -> tuple[Any, ...]:
        where, params = where_clause(query)
        return (where, *(tuple(p) if isinstance(p, list) else p for p in params))

    def _admitted_rows(self, query: RecordQuery) -> list[Any]:
        where, params = where_clause(query)
        # with each row's keyword count: BM25 in the database needs their mean
        return self._rows(f"SELECT m.rid, m.version, m.kw_len FROM memories m WHERE {where}",
                          params)

    def _load_texts(self, rowids: list[int]) -> Iterable[tuple[int, str]]:
        rows = self._rows("SELECT rid, text, speaker FROM memories WHERE rid = ANY(%s)",
                          (rowids,))
        return ((r[0], index_text(r[1], r[2])) for r in rows)

    def _load_vectors(self, rowids: list[int]) -> Iterable[tuple[int, bytes]]:
        rows = self._rows("SELECT rid, vec FROM memories WHERE rid = ANY(%s)", (rowids,))
        return ((r[0], bytes(r[1])) for r in rows)

    def _records_by_rowid(self, rowids: list[int]) -> dict[int, MemoryRecord]:
        rows = self._rows(f"SELECT rid, {_SELECT} FROM memories WHERE rid = ANY(%s)", (rowids,))
        return {r[0]: codec.record(r[1:]) for r in rows}

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, Vector]:
        rows = self._rows("SELECT id, vec FROM memories WHERE tenant = %s AND id = ANY(%s)",
                          (tenant, list(ids)))
        return {r[0]: np.frombuffer(bytes(r[1]), dtype=np.float32) for r in rows}

    def history(self, tenant: str, memory_id: str) -> list[HistoryEvent]:
        rows = self._rows(f"SELECT {codec.HIST_COLS} FROM history WHERE tenant = %s AND "
                          "memory_id = %s ORDER BY rid", (tenant, memory_id))
        return [codec.event(r) for r in rows]

    def iter_history(self, tenant: str) -> Iterator[HistoryEvent]:
        rows = self._rows(f"SELECT {codec.HIST_COLS} FROM history WHERE tenant = %s "
                          "ORDER BY rid", (tenant,))
        return (codec.event(r) for r in rows)

    def messages(self, scope: Scope, *, limit: int | None = None, offset: int = 0,
                 include_deleted: bool = False) -> list[Message]:
        where, params = self._messages_where(scope, include_deleted)
        rows = self._rows(f"SELECT {_MSG_SELECT} FROM messages WHERE {where} ORDER BY "
                          'event_time COLLATE "C", rid LIMIT %s OFFSET %s',
                          (*params, limit, offset))
        return [codec.message(r) for r in rows]

    def recent_messages(self, scope: Scope, limit: int) -> list[Message]:
        try:
            with self._pool.connection() as conn:
                return self._newest(conn, scope, limit)
        except self._psycopg.Error as exc:
            raise StoreError(f"read failed: {exc}") from exc

    def _newest(self, conn: Any, scope: Scope, limit: int) -> list[Message]:
        """``recent_messages`` as the transaction on ``conn`` sees them."""
        where, params = self._conversation_where(scope)
        rows = conn.execute(f"SELECT {_MSG_SELECT} FROM messages WHERE {where} "
                            'ORDER BY event_time COLLATE "C" DESC, rid DESC LIMIT %s',
                            (*params, limit))
        return [codec.message(r) for r in rows.fetchall()]

    def tenants(self) -> list[str]:
        rows = self._rows("SELECT tenant FROM memories UNION SELECT tenant FROM messages")
        return sorted(r[0] for r in rows)

    # --- jobs ----------------------------------------------------------------------------

    def find_jobs(self, tenant: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 100) -> list[Job]:
        rows = self._rows(
            f"SELECT {_JOB_SELECT} FROM jobs WHERE tenant = %s AND (%s::text[] IS NULL OR "
            'status = ANY(%s)) ORDER BY created_at COLLATE "C", id COLLATE "C" LIMIT %s',
            (tenant, None if statuses is None else list(statuses),
             None if statuses is None else list(statuses), limit))
        return [codec.job(r) for r in rows]

    def claim_job(self, tenant: str, job_id: str, now: datetime,
                  stale_before: datetime) -> Job | None:
        def claim(conn: Any) -> Any:
            row = conn.execute(
                "UPDATE jobs SET status = 'running', updated_at = %s WHERE tenant = %s AND "
                "id = %s AND (status = 'pending' OR (status = 'running' AND updated_at < %s)) "
                f"RETURNING {_JOB_SELECT}",
                (to_text(now), tenant, job_id, to_text(stale_before))).fetchone()
            return row

        row = self._retrying(claim)
        return codec.job(row) if row else None

    # --- forgetting ----------------------------------------------------------------------

    def erase(self, scope: Scope, *, wait: float | None = None) -> EraseCounts:
        """Delete the scope's rows from every table in one transaction, drop its HNSW
        indexes, then VACUUM the tables that held them. PostgreSQL's own WAL and the space
        VACUUM frees are beyond a client's reach (docs/postgres.md): ``wal_truncated`` and
        ``verified_clean`` are None."""
        where, params = self._scope_where(scope)

        def erase(conn: Any) -> EraseCounts:
            gone = [r[0] for r in conn.execute(f"SELECT id FROM memories WHERE {where}",
                                               params).fetchall()]
            n_history = conn.execute("DELETE FROM history WHERE tenant = %s AND "
                                     "memory_id = ANY(%s)", (scope.tenant, gone)).rowcount
            n_memories = conn.execute(f"DELETE FROM memories WHERE {where}", params).rowcount
            counts = EraseCounts(
                messages=conn.execute(f"DELETE FROM messages WHERE {where}", params).rowcount,
                memories=n_memories, history=n_history, vectors=n_memories,
                adds=conn.execute(f"DELETE FROM adds WHERE {where}", params).rowcount,
                jobs=conn.execute(f"DELETE FROM jobs WHERE {where}", params).rowcount)
            # the scope's own HNSW indexes go too (their definitions name the scope)
            for (name,) in conn.execute(f"DELETE FROM ann_indexes WHERE {where} RETURNING name",
                                        params).fetchall():
                conn.execute(f'DROP INDEX IF EXISTS "{name}"')
            self._bump(conn, scope.tenant)
            return counts

        try:
            counts = self._retrying(erase)
            with self._pool.connection() as conn:
                conn.autocommit = True
                conn.execute("VACUUM memories, messages, history, adds, jobs")
                conn.autocommit = False
        except self._psycopg.Error as exc:
            raise StoreError(f"erase failed: {exc}") from exc
        finally:
            self._drop_indexes()
        return counts

    def reset(self) -> None:
        def reset(conn: Any) -> None:
            for (name,) in conn.execute("SELECT name FROM ann_indexes").fetchall():
                conn.execute(f'DROP INDEX IF EXISTS "{name}"')
            conn.execute(f"TRUNCATE {', '.join(TABLES)}")

        self._retrying(reset)
        self._drop_indexes()


def _copy(cursor: Any, table: str, columns: str, rows: list[Sequence[Any]]) -> None:
    """Insert ``rows`` with COPY (each value in its text form, parsed by the column type)."""
    if rows:
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _keywords(text: str) -> tuple[str, str, int]:
    """The values of the keyword columns for a record's index text."""
    plain = analyze(text, "plain")
    return tsvector_literal(plain), tsvector_literal([stem(t) for t in plain]), len(plain)


def _above(admitted: Admitted, threshold: int | None) -> bool:
    return threshold is not None and len(admitted.ids) > threshold


def _ann_name(scope: Scope, dim: int) -> str:
    """A stable index name for a scope's HNSW index (scope values hashed, not spelled)."""
    key = "\0".join([scope.tenant, scope.user_id or "", scope.agent_id or "",
                     scope.session_id or "", str(dim)])
    return "memories_ann_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@functools.cache
def _vector_format(dim: int) -> str:
    return "[" + ",".join(["%.7g"] * dim) + "]"


def _literal(vector: Vector) -> str:
    """pgvector's text form (one format call: the rows of a bulk load spend their time here)."""
    return _vector_format(len(vector)) % tuple(vector.tolist())



