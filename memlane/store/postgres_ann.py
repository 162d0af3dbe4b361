"""Approximate vector search of large scopes in PostgreSQL: one partial pgvector HNSW index
per large scope, built on first need, and kept until its scope is erased."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from ..types import Scope
from . import rows as codec
from .base import Vector
from .postgres_schema import SCHEMA_LOCK

T = TypeVar("T")
VALID_INDEX = ("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
               "WHERE c.relname = %s")


class Transact(Protocol):
    """Run ``work(conn)`` in a transaction (retried on serialization failure)."""

    def __call__(self, work: Callable[[Any], T]) -> T: ...


Reader = Callable[[str, Sequence[Any]], list[Any]]


def available(pool: Any, errors: type[Exception]) -> bool:
    """Add the pgvector column if the extension can be used; False if it cannot."""
    try:
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("ALTER TABLE memories ADD COLUMN IF NOT EXISTS embedding vector")
        return True
    except errors:
        return False


def ann_name(scope: Scope, dim: int) -> str:
    """A stable index name for a scope's HNSW index (scope values hashed, not spelled)."""
    key = "\0".join([scope.tenant, scope.user_id or "", scope.agent_id or "",
                     scope.session_id or "", str(dim)])
    return "memories_ann_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@functools.cache
def _vector_format(dim: int) -> str:
    return "[" + ",".join(["%.7g"] * dim) + "]"


def vector_literal(vector: Vector) -> str:
    """pgvector's text form (one format call: the rows of a bulk load spend their time here)."""
    return _vector_format(len(vector)) % tuple(vector.tolist())


def drop_scope_indexes(conn: Any, where: str, params: Sequence[Any]) -> None:
    """Drop the HNSW indexes of the scopes ``where`` selects (their definitions name the
    scope's values: an erased scope must not leave them)."""
    for (name,) in conn.execute(f"DELETE FROM ann_indexes WHERE {where} RETURNING name",
                                params).fetchall():
        conn.execute(f'DROP INDEX IF EXISTS "{name}"')


def drop_all_indexes(conn: Any) -> None:
    for (name,) in conn.execute("SELECT name FROM ann_indexes").fetchall():
        conn.execute(f'DROP INDEX IF EXISTS "{name}"')


class AnnIndexes:
    """Builds and searches the per-scope HNSW indexes of one store."""

    def __init__(self, psycopg: Any, pool: Any, read: Reader, transact: Transact) -> None:
        self._psycopg, self._pool, self._read, self._transact = psycopg, pool, read, transact
        self._checked: dict[str, Hashable] = {}

    def ensure(self, scope: Scope, dim: int, build_memory: str) -> str:
        """Build the HNSW index of ``scope`` for vectors of ``dim`` dimensions if missing;
        its name. Built ``CONCURRENTLY``: writers are not blocked meanwhile."""
        name = ann_name(scope, dim)
        if self._read(VALID_INDEX, (name,)) == [(True,)]:
            return name
        with self._pool.connection() as conn:
            conn.autocommit = True  # CREATE INDEX CONCURRENTLY runs outside a transaction
            try:
                self._build(conn, name, scope, dim, build_memory)
            finally:
                conn.autocommit = False
        return name

    def ensure_since(self, scope: Scope, dim: int, generation: Hashable,
                     build_memory: str) -> None:
        """``ensure``, checked once per generation of the scope's rows (an erasure, which
        drops the index, changes the generation)."""
        name = ann_name(scope, dim)
        if self._checked.get(name) != generation:  # built, and not dropped since
            self.ensure(scope, dim, build_memory)
            self._checked[name] = generation

    def _build(self, conn: Any, name: str, scope: Scope, dim: int, build_memory: str) -> None:
        # poll, not wait: a session waiting on the lock would hold a snapshot that the
        # holder's CREATE INDEX CONCURRENTLY waits for (a deadlock)
        while not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                               (name,)).fetchone()[0]:
            time.sleep(0.1)
            if conn.execute(VALID_INDEX, (name,)).fetchone() == (True,):
                return  # another session built it
        try:
            state = conn.execute(VALID_INDEX, (name,)).fetchone()
            if state == (True,):
                return
            if state is not None:  # an interrupted build left an invalid index
                conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            self._create(conn, name, scope, dim, build_memory)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))

    def _create(self, conn: Any, name: str, scope: Scope, dim: int, build_memory: str) -> None:
        sql = self._psycopg.sql
        conn.execute(
            "INSERT INTO ann_indexes (tenant, name, user_id, agent_id, session_id, dim) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (scope.tenant, name, scope.user_id, scope.agent_id, scope.session_id, dim))
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(build_memory)))
        conn.execute(sql.SQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON memories USING hnsw "
            "((embedding::vector({})) vector_cosine_ops) WHERE {}").format(
                sql.Identifier(name), sql.Literal(int(dim)), sql.SQL(" AND ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(c), sql.Literal(v))
                    for c, v in codec.scope_pairs(scope))))
        conn.execute("RESET maintenance_work_mem")
        conn.execute("ANALYZE memories")  # or the planner may sort the scope instead

    def search(self, scope: Scope, where: tuple[str, list[Any]], vector: Vector, limit: int,
               ef_search: int) -> list[Any]:
        """The nearest (row id, version, cosine distance) rows that ``where`` admits, by the
        HNSW index of ``scope`` (iterative scans, so filters inside the scope still fill
        the top k)."""
        dim, literal, sql = len(vector), vector_literal(vector), self._psycopg.sql

        def search(conn: Any) -> list[Any]:
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            # the scope as literals too, so the planner can match the scope's partial index
            literals = " AND ".join(
                sql.SQL("m.{} = {}").format(sql.Identifier(c), sql.Literal(v)).as_string(conn)
                for c, v in codec.scope_pairs(scope))
            return conn.execute(  # type: ignore[no-any-return]
                f"SELECT m.rid, m.version, m.embedding::vector({dim}) <=> %s::vector({dim}) "
                f"AS d FROM memories m WHERE {literals} AND {where[0]} ORDER BY d LIMIT %s",
                (literal, *where[1], limit)).fetchall()

        return self._transact(search)
