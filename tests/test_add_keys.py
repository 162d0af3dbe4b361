"""Idempotency keys written before keys were bound to their add's content: a store opened
after the upgrade still honours them, bound to their scope."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memlane.errors import ConflictError
from memlane.store import RecordQuery, Store, WriteBatch
from memlane.store.sqlite import SQLiteStore
from memlane.store.sqlite_schema import MIGRATIONS

from .test_store_conformance import ALICE, BOB, record, vec


def _old_key_is_bound_to_its_scope(store: Store, memory_id: str) -> None:
    retried = store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="f"))
    assert not retried.applied and retried.memory_ids == (memory_id,)
    with pytest.raises(ConflictError):
        store.write(WriteBatch(scope=BOB, add_key="req-1", add_fingerprint="f",
                               inserts=[(record("bob", BOB), vec(1))]))
    assert store.find(RecordQuery(BOB)) == []


def test_sqlite_keys_of_a_version_2_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    for number, migration in enumerate(MIGRATIONS[:2], start=1):
        migration(db)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute("INSERT INTO adds (tenant, key, memory_ids, user_id, agent_id, session_id, "
               "created_at) VALUES ('default', 'req-1', '[\"m1\"]', 'alice', '', '', 'x')")
    db.execute("COMMIT")
    db.close()
    store = SQLiteStore(path)
    try:
        _old_key_is_bound_to_its_scope(store, "m1")
    finally:
        store.close()


def test_postgres_keys_of_a_version_3_database(postgres_server: str) -> None:
    import psycopg

    from memlane.dev.postgres import fresh_database
    from memlane.store.postgres import SCHEMA_VERSION, PostgresStore

    url = fresh_database(postgres_server)
    PostgresStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:  # as a version 3 database was
        conn.execute("ALTER TABLE adds DROP COLUMN fingerprint")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        conn.execute("INSERT INTO adds (tenant, key, memory_ids, user_id, agent_id, "
                     "session_id) VALUES ('default', 'req-1', '[\"m1\"]', 'alice', '', '')")
    store = PostgresStore(url)
    try:
        _old_key_is_bound_to_its_scope(store, "m1")
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    finally:
        store.close()
