"""Idempotency keys: each scope has its own, and keys written before keys were bound to
their add's content or scoped so are still honoured after the upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memlane import Memory
from memlane.errors import ConflictError
from memlane.store import RecordQuery, Store, WriteBatch
from memlane.store.sqlite import SQLiteStore
from memlane.store.sqlite_schema import MIGRATIONS

from .test_store_conformance import ALICE, BOB, record, vec


def _old_key_is_bound_to_its_scope(store: Store, memory_id: str) -> None:
    retried = store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="f"))
    assert not retried.applied and retried.memory_ids == (memory_id,)
    bobs = record("bob", BOB)  # another scope: another key
    outcome = store.write(WriteBatch(scope=BOB, add_key="req-1", add_fingerprint="f",
                                     inserts=[(bobs, vec(1))]))
    assert outcome.applied and [r.id for r in store.find(RecordQuery(BOB))] == [bobs.id]
    with pytest.raises(ConflictError):  # bob's own key, now bound to bob's add
        store.write(WriteBatch(scope=BOB, add_key="req-1", add_fingerprint="g"))
    retried = store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="f"))
    assert not retried.applied and retried.memory_ids == (memory_id,)


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
        conn.execute("ALTER TABLE adds DROP COLUMN fingerprint, DROP CONSTRAINT adds_pkey, "
                     "ADD PRIMARY KEY (tenant, key)")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        conn.execute("INSERT INTO adds (tenant, key, memory_ids, user_id, agent_id, "
                     "session_id) VALUES ('default', 'req-1', '[\"m1\"]', 'alice', '', '')")
    store = PostgresStore(url)
    try:
        _old_key_is_bound_to_its_scope(store, "m1")
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    finally:
        store.close()


def test_alice_and_bob_may_use_the_same_key(mem: Memory) -> None:
    alice = mem.add("I live in Oslo.", user_id="alice", idempotency_key="req-1")
    bob = mem.add("I live in Lima.", user_id="bob", idempotency_key="req-1")
    assert [r.text for r in alice] == ["I live in Oslo."]
    assert [r.text for r in bob] == ["I live in Lima."] and bob[0].id != alice[0].id
    assert [r.id for r in mem.add("I live in Lima.", user_id="bob",
                                  idempotency_key="req-1")] == [bob[0].id]
    with pytest.raises(ConflictError):
        mem.add("I live in Rome.", user_id="bob", idempotency_key="req-1")
    assert [r.text for r in mem.get_all(user_id="alice")] == ["I live in Oslo."]
    assert [r.text for r in mem.get_all(user_id="bob")] == ["I live in Lima."]
