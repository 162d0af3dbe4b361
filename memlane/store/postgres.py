"""The scale-out store: PostgreSQL, through a psycopg 3 connection pool (extra ``postgres``).

Same records, raw messages, history, jobs and semantics as the SQLite store; searches run
on the same in-process indexes derived from the rows (``derived``), so scores agree with
SQLite, and move into the database for very large scopes (``postgres_ann``,
``postgres_bm25``). Every table leads with ``tenant`` and every query filters by it first,
so the tables can be distributed by tenant (see docs/postgres.md). A per-tenant change
counter, bumped in every write transaction, tells readers when their derived indexes are
stale. Serialization failures and deadlocks are retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ..errors import ConflictError, InvalidInputError, StoreError, missing_extra
from ..text import Analyzer
from ..timeutil import to_text
from ..types import Job, MemoryRecord, Scope, Scored
from . import rows as codec
from .base import (
    ApiKey,
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
    released,
)
from .derived import Admitted, DerivedIndex, nothing_to_find
from .postgres_ann import (
    AnnIndexes,
    available,
    drop_all_indexes,
    drop_scope_indexes,
    vector_literal,
)
from .postgres_bm25 import bm25_rows, keywords
from .postgres_schema import SCHEMA_LOCK, SCHEMA_VERSION, TABLES, migrate
from .postgres_sql import DIALECT
from .sql_keys import insert_sql, key_by_id, key_row, revoke_sql
from .sql_reads import SQLReads, scope_where
from .sql_store import SQLStore

__all__ = ["SCHEMA_VERSION", "TABLES", "PostgresStore"]

T = TypeVar("T")
RETRIES = 5
_JSON = ("source_ids", "tags", "metadata")
_NAMES = [c.strip() for c in codec.COLS.split(",")]
_INSERT = ", ".join("%s::jsonb" if c in _JSON else "%s" for c in _NAMES)
_KW_COLS = "kw_plain, kw_stem, kw_len"
_KW_MARKS = "%s::tsvector, %s::tsvector, %s"
CONVERSATION_LOCK = 7242002
"""The class of the advisory locks that serialize adds to one conversation (the second
key is a hash of the conversation; two-key locks never collide with one-key ones)."""


class PostgresStore(SQLStore):
    """A memlane store in a PostgreSQL database."""

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
        reads = SQLReads(DIALECT, self._rows, self._generation)
        super().__init__(reads, DerivedIndex(reads, query_cache_rows=query_cache_rows))
        try:  # one direct connection first: a bad address fails at once, with its reason
            with psycopg.connect(location, connect_timeout=10) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store: {exc}") from exc
        self._pool = ConnectionPool(location, min_size=1, max_size=pool_size, open=True,
                                    timeout=30)
        self.index_threshold = index_threshold
        self.keyword_threshold = keyword_threshold
        self._vectors_in_db = index_threshold is not None and available(self._pool,
                                                                         psycopg.Error)
        self.index_build_memory = index_build_memory
        self._ann = AnnIndexes(psycopg, self._pool, self._rows, self._retrying)

    # --- searches: in process, or in the database for very large scopes ------------------

    def keyword_search(self, query: RecordQuery, text: str, limit: int,
                       analyzer: Analyzer = "plain") -> list[Scored]:
        """BM25 in process, or in the database (GIN index on the analyzer's tsvector
        column, same formula and statistics) when a query admits more than
        ``keyword_threshold`` rows: more than a process should index itself. (In process is
        much faster: the database reads every admitted row holding a query term.)"""
        if nothing_to_find(text, limit, analyzer):
            return []
        admitted = self._index.admitted(query)
        if _above(admitted, self.keyword_threshold):
            return self._gin_keyword_search(query, admitted, text, limit, analyzer)
        return self._index.keyword_ranked(query, admitted, text, limit, analyzer)

    def vector_search(self, query: RecordQuery, vector: Vector, limit: int) -> list[Scored]:
        """Exact search in process; pgvector HNSW on the scope's own index (iterative scans,
        so filters inside the scope still fill the top k) when the query admits more than
        ``index_threshold`` rows."""
        if limit <= 0:
            return []
        admitted = self._index.admitted(query)
        if not self._vectors_in_db or not _above(admitted, self.index_threshold):
            return self._index.vector_ranked(admitted, vector, limit)
        self._ann.ensure_since(query.scope, len(vector), admitted.generation,
                               self.index_build_memory)
        return self.ann_search(query, vector, limit)

    def keyword_search_in_process(self, query: RecordQuery, text: str, limit: int,
                                  analyzer: Analyzer = "plain") -> list[Scored]:
        """BM25 on the in-process index, whatever the size of the scope."""
        admitted = self._index.admitted(query)
        return self._index.keyword_ranked(query, admitted, text, limit, analyzer)

    def vector_search_in_process(self, query: RecordQuery, vector: Vector,
                                 limit: int) -> list[Scored]:
        """Exact search in process, whatever the size of the scope (what HNSW recall is
        measured against)."""
        return self._index.vector_ranked(self._index.admitted(query), vector, limit)

    def gin_keyword_search(self, query: RecordQuery, text: str, limit: int,
                           analyzer: Analyzer = "plain") -> list[Scored]:
        """BM25 computed in the database, whatever the size of the scope."""
        return self._gin_keyword_search(query, self._index.admitted(query), text, limit,
                                        analyzer)

    def _gin_keyword_search(self, query: RecordQuery, admitted: Admitted, text: str,
                            limit: int, analyzer: Analyzer) -> list[Scored]:
        if nothing_to_find(text, limit, analyzer) or not len(admitted.ids):
            return []
        assert admitted.lengths is not None  # each row's kw_len (``DIALECT.admitted``)
        where = DIALECT.where(query)
        n_docs, mean_length = len(admitted.ids), float(admitted.lengths.mean())
        found = self._retrying(lambda conn: bm25_rows(conn, where, text, analyzer, n_docs,
                                                      mean_length, limit))
        return self._index.ranked([r[0] for r in found], [r[1] for r in found],
                                  [keyword_score(float(r[2])) for r in found], limit)

    def ensure_ann_index(self, scope: Scope, dim: int) -> str:
        """Build the HNSW index of ``scope`` for vectors of ``dim`` dimensions if missing;
        its name.

        One partial index per large scope (``WHERE tenant = .. AND user_id = ..``), built on
        first need (the first search of a scope above ``index_threshold``), so writes to
        small scopes never maintain a graph and a build costs the size of its scope, not of
        the table. Built ``CONCURRENTLY``: writers are not blocked meanwhile. Call it after a
        bulk load to build at a time of your choosing.
        """
        return self._ann.ensure(scope, dim, self.index_build_memory)

    def ann_search(self, query: RecordQuery, vector: Vector, limit: int,
                   ef_search: int = 200) -> list[Scored]:
        found = self._ann.search(query.scope, DIALECT.where(query), vector, limit, ef_search)
        return self._index.ranked([r[0] for r in found], [r[1] for r in found],
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

    def _on(self, conn: Any) -> SQLReads:
        """The shared reads as the transaction on ``conn`` sees them."""
        return self._reads.on(lambda sql, params: conn.execute(sql, params).fetchall())

    def _generation(self, query: RecordQuery) -> int:
        rows = self._rows("SELECT counter FROM changes WHERE tenant = %s", (query.scope.tenant,))
        return int(rows[0][0]) if rows else 0

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
        check_basis(batch, lambda n: self._on(conn).recent_messages(batch.scope, n))
        if batch.finish is not None:  # the row lock orders this with an erase of the job
            sql, params = self._reads.finish_job_sql(batch.finish, "%s::jsonb")
            if conn.execute(sql, params).fetchone() is None:
                raise released(batch.finish.claimed)
        cursor = conn.cursor()  # rows stream in with COPY: one round trip per table
        _copy(cursor, "messages", codec.MSG_COLS, [codec.message_row(m) for m in batch.messages])
        ann = self._vectors_in_db
        _copy(cursor, "memories", f"{codec.COLS}, vec, {_KW_COLS}" + (", embedding" if ann else ""),
              [(*codec.record_row(r), codec.blob(v), *keywords(r.index_text),
                *((vector_literal(v),) if ann else ())) for r, v in batch.inserts])
        for update in batch.updates:
            self._update(conn, update.record, update.expected_version, update.vector, ann)
        _copy(cursor, "history", codec.HIST_COLS, [codec.event_row(e) for e in batch.events])
        for job in batch.jobs:
            conn.execute(
                f"INSERT INTO jobs ({codec.JOB_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, "
                "%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s)", codec.job_row(job))
        ids = tuple(r.id for r, _ in batch.inserts)
        if batch.add_key is not None:
            conn.execute("UPDATE adds SET memory_ids = %s WHERE tenant = %s AND user_id = %s "
                         "AND agent_id = %s AND session_id = %s AND key = %s",
                         (json.dumps(ids), tenant, *codec.scope_values(batch.scope),
                          batch.add_key))
        self._bump(conn, tenant)
        return WriteOutcome(True, ids)

    @staticmethod
    def _claim_add_key(conn: Any, batch: WriteBatch) -> tuple[str, ...] | None:
        """Claim ``batch.add_key`` for this add in its scope; if an add of the scope already
        holds it, the ids it stored (when it is this same add: else ``ConflictError``)."""
        tenant = batch.scope.tenant
        claimed = conn.execute(
            "INSERT INTO adds (tenant, key, memory_ids, user_id, agent_id, session_id, "
            "fingerprint) VALUES (%s, %s, '[]', %s, %s, %s, %s) ON CONFLICT DO NOTHING "
            "RETURNING key", (tenant, batch.add_key, *codec.scope_values(batch.scope),
                              batch.add_fingerprint)).fetchone()
        if claimed is not None:
            return None
        row = conn.execute("SELECT memory_ids, fingerprint FROM adds WHERE tenant = %s AND "
                           "user_id = %s AND agent_id = %s AND session_id = %s AND key = %s",
                           (tenant, *codec.scope_values(batch.scope), batch.add_key)).fetchone()
        check_add_key_reuse(batch, row[1])
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
        params: tuple[Any, ...] = keywords(record.index_text)
        if vector is not None:
            extra, params = ", vec = %s", (*params, codec.blob(vector))
            if ann:
                extra += ", embedding = %s::vector"
                params = (*params, vector_literal(vector))
        row = conn.execute(
            f"UPDATE memories SET {sets}{extra} WHERE tenant = %s AND id = %s AND version = %s "
            "RETURNING rid", (*codec.record_row(record), *params, record.tenant, record.id,
                              expected)).fetchone()
        if row is None:
            raise ConflictError(f"memory {record.id} changed; re-read and retry")

    # --- keys (``erase`` and ``reset`` keep them) -----------------------------------------

    def put_key(self, key: ApiKey) -> None:
        try:
            self._retrying(lambda conn: conn.execute(insert_sql("%s"), key_row(key)))
        except self._psycopg.errors.UniqueViolation as exc:
            raise InvalidInputError(f"key {key.id!r} (or its hash) is already kept") from exc
        except self._psycopg.Error as exc:
            raise StoreError(f"could not keep the key: {exc}") from exc

    def revoke_key(self, key_id: str, when: datetime) -> ApiKey | None:
        try:
            self._retrying(lambda conn: conn.execute(revoke_sql("%s"), (to_text(when), key_id)))
        except self._psycopg.Error as exc:
            raise StoreError(f"could not revoke the key: {exc}") from exc
        return key_by_id(self._rows, "%s", key_id)

    # --- jobs and forgetting ---------------------------------------------------------------

    def claim_job(self, tenant: str, job_id: str, now: datetime,
                  stale_before: datetime) -> Job | None:
        sql, params = self._reads.claim_job_sql(tenant, job_id, now, stale_before)
        row = self._retrying(lambda conn: conn.execute(sql, params).fetchone())
        return codec.job(row) if row else None

    def erase(self, scope: Scope, *, wait: float | None = None) -> EraseCounts:
        """Delete the scope's rows from every table in one transaction, drop its HNSW
        indexes, then VACUUM the tables that held them. PostgreSQL's own WAL and the space
        VACUUM frees are beyond a client's reach (docs/postgres.md): ``wal_truncated`` and
        ``verified_clean`` are None."""
        where, params = scope_where(scope, "%s")

        def erase(conn: Any) -> EraseCounts:
            # jobs first: a job finishing meanwhile holds its row until it commits, and the
            # statements after this one then see (and erase) what it wrote
            n_jobs = conn.execute(f"DELETE FROM jobs WHERE {where}", params).rowcount
            gone = [r[0] for r in conn.execute(f"SELECT id FROM memories WHERE {where}",
                                               params).fetchall()]
            n_history = conn.execute("DELETE FROM history WHERE tenant = %s AND "
                                     "memory_id = ANY(%s)", (scope.tenant, gone)).rowcount
            n_memories = conn.execute(f"DELETE FROM memories WHERE {where}", params).rowcount
            counts = EraseCounts(
                messages=conn.execute(f"DELETE FROM messages WHERE {where}", params).rowcount,
                memories=n_memories, history=n_history, vectors=n_memories,
                adds=conn.execute(f"DELETE FROM adds WHERE {where}", params).rowcount,
                jobs=n_jobs)
            drop_scope_indexes(conn, where, params)
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
            self._index.clear()
        return counts

    def reset(self) -> None:
        def reset(conn: Any) -> None:
            drop_all_indexes(conn)
            conn.execute(f"TRUNCATE {', '.join(TABLES)}")
            conn.execute("UPDATE changes SET counter = counter + 1")

        self._retrying(reset)
        self._index.clear()


def _copy(cursor: Any, table: str, columns: str, rows: list[Sequence[Any]]) -> None:
    """Insert ``rows`` with COPY (each value in its text form, parsed by the column type)."""
    if rows:
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _above(admitted: Admitted, threshold: int | None) -> bool:
    return threshold is not None and len(admitted.ids) > threshold
