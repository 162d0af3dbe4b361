"""The in-process indexes of a SQL store follow every change made to its database: a store
that has searched before and reads only what changed since ranks exactly as a store opened
afresh on the same database, whoever wrote the changes (itself or another connection)."""

from __future__ import annotations

import random
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memlane.errors import StoreError
from memlane.ids import new_id
from memlane.store import RecordQuery, RecordUpdate, SQLiteStore, Store, WriteBatch
from memlane.store.derived import Delta, DerivedIndex
from memlane.store.sql_reads import SQLReads
from memlane.store.sqlite_sql import DIALECT
from memlane.types import MemoryRecord, Scope, content_hash
from tests.test_store_conformance import T0

DIM = 8
ALICE, BOB = Scope("default", "alice"), Scope("default", "bob")
WORDS = "apple pear plum fig kiwi lime date grape melon berry".split()


def vector(rng: random.Random) -> np.ndarray:
    v = np.array([rng.uniform(-1, 1) for _ in range(DIM)], dtype=np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))


def record(scope: Scope, words: str) -> MemoryRecord:
    return MemoryRecord(
        id=new_id(), tenant=scope.tenant, user_id=scope.user_id, agent_id=None,
        session_id=None, kind="turn", text=words, role="user", speaker=None,
        hash=content_hash(words), source_ids=(new_id(),), event_time=T0, valid_from=T0,
        created_at=T0, updated_at=T0)


def ranking(store: Store, probe: np.ndarray, words: str) -> list[Any]:
    query = RecordQuery(ALICE)
    return [[(h.record.id, h.record.version, round(h.score, 6)) for h in hits] for hits in (
        store.vector_search(query, probe, 7), store.keyword_search(query, words, 7),
        store.keyword_search(RecordQuery(ALICE, kinds=("turn",)), words, 3))]


class Walk:
    """Random writes to a database by two stores; one of them searches between them."""

    def __init__(self, open_store: Callable[[], Store], seed: int) -> None:
        self.open_store, self.rng = open_store, random.Random(seed)
        self.searcher, self.other = open_store(), open_store()
        self.ids: list[str] = []

    def step(self, op: str) -> None:
        writer = self.searcher if self.rng.random() < 0.5 else self.other
        if op == "add":
            scope = ALICE if self.rng.random() < 0.8 else BOB
            items = [(record(scope, text(self.rng)), vector(self.rng))
                     for _ in range(self.rng.randint(1, 4))]
            writer.write(WriteBatch(scope=scope, inserts=items))
            self.ids += [r.id for r, _ in items if scope == ALICE]
        elif op in ("update", "delete") and self.ids:
            old = writer.get("default", [self.rng.choice(self.ids)])[0]
            new = replace(old, text=text(self.rng), version=old.version + 1,
                          status="deleted" if op == "delete" else old.status)
            writer.write(WriteBatch(scope=ALICE, updates=[
                RecordUpdate(new, old.version, vector(self.rng))]))
        elif op == "erase":
            writer.erase(BOB if self.rng.random() < 0.7 else ALICE)
            if not writer.find(RecordQuery(ALICE)):
                self.ids = []
        elif op == "reset":
            writer.reset()
            self.ids = []

    def check(self) -> None:
        probe, words = vector(self.rng), text(self.rng)
        fresh = self.open_store()
        try:
            assert ranking(self.searcher, probe, words) == ranking(fresh, probe, words)
        finally:
            fresh.close()

    def close(self) -> None:
        self.searcher.close()
        self.other.close()


OPS = st.lists(st.sampled_from(["add", "add", "add", "update", "delete", "erase", "reset"]),
               min_size=1, max_size=25)


def walk(open_store: Callable[[], Store], seed: int, ops: list[str]) -> None:
    steps = Walk(open_store, seed)
    try:
        steps.step("add")
        steps.check()
        for op in ops:
            steps.step(op)
            steps.check()
    finally:
        steps.close()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ops=OPS)
def test_a_searching_sqlite_store_ranks_as_a_fresh_one_after_any_writes(
        seed: int, ops: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "walk.db"
        walk(lambda: SQLiteStore(path), seed, ops)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ops=OPS)
def test_a_searching_postgres_store_ranks_as_a_fresh_one_after_any_writes(
        postgres_server: str, seed: int, ops: list[str]) -> None:
    from memlane.dev.postgres import fresh_database
    from memlane.store.postgres import PostgresStore

    url = fresh_database(postgres_server)
    walk(lambda: PostgresStore(url), seed, ops)


class Counted:
    """A SQLite store's row source, counting how often everything is read again."""

    def __init__(self, source: SQLReads) -> None:
        self.source, self.full_reads = source, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def admitted_rows(self, query: RecordQuery) -> Any:
        self.full_reads += 1
        return self.source.admitted_rows(query)

    def changes(self, query: RecordQuery, since: Hashable, now: Hashable,
                most: int) -> Delta | None:
        return self.source.changes(query, since, now, most)


@contextmanager
def counted_index(path: Path) -> Iterator[tuple[SQLiteStore, DerivedIndex, Counted]]:
    """A store, and an index of its file on a connection of its own whose generation is
    new at every search (so every search asks what changed)."""
    store = SQLiteStore(path)
    db = sqlite3.connect(path, check_same_thread=False)
    reads = SQLReads(DIALECT, lambda sql, params: db.execute(sql, params).fetchall(),
                     lambda query: object())
    source = Counted(reads)
    try:
        yield store, DerivedIndex(source, query_cache_rows=100_000), source
    finally:
        db.close()
        store.close()


def test_only_the_rows_written_since_are_read_until_rows_are_removed(tmp_path: Path) -> None:
    rng = random.Random(7)
    with counted_index(tmp_path / "count.db") as (store, index, source):
        store.write(WriteBatch(scope=ALICE, inserts=[
            (record(ALICE, text(rng)), vector(rng)) for _ in range(50)]))
        store.write(WriteBatch(scope=BOB, inserts=[(record(BOB, "fig"), vector(rng))]))
        query = RecordQuery(ALICE)
        assert len(index.vector_search(query, vector(rng), 5)) == 5
        for n in range(3):  # adds, and an update, read as changes
            added = record(ALICE, f"quince{n}")
            store.write(WriteBatch(scope=ALICE, inserts=[(added, vector(rng))]))
            assert [h.record.id for h in index.keyword_search(query, f"quince{n}", 5)] == [
                added.id]
        store.write(WriteBatch(scope=ALICE, updates=[RecordUpdate(
            replace(added, text="melon", version=2), 1, vector(rng))]))
        assert index.keyword_search(query, "quince2", 5) == []
        assert source.full_reads == 1
        store.erase(BOB)  # nothing of Alice's removed, but rows were: all read again
        index.vector_search(query, vector(rng), 5)
        assert source.full_reads == 2


def test_a_file_written_before_rows_carried_their_change_is_searched_as_it_changes(
        tmp_path: Path) -> None:
    rng, path = random.Random(3), tmp_path / "v6.db"
    first = SQLiteStore(path)
    first.write(WriteBatch(scope=ALICE, inserts=[
        (record(ALICE, text(rng)), vector(rng)) for _ in range(20)]))
    first.close()
    db = sqlite3.connect(path, isolation_level=None)  # as schema 6 had it
    db.execute("DROP INDEX memories_seq")
    db.execute("DROP INDEX memories_tenant_seq")
    db.execute("ALTER TABLE memories DROP COLUMN seq")
    db.execute("PRAGMA user_version = 6")
    db.close()
    walk(lambda: SQLiteStore(path), 5, ["update", "add", "delete", "add"])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_searches_racing_writes_leave_a_store_that_ranks_as_a_fresh_one(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if kind == "postgres":
        from memlane.dev.postgres import fresh_database
        from memlane.store.postgres import PostgresStore

        url = fresh_database(request.getfixturevalue("postgres_server"))
        open_store: Callable[[], Store] = lambda: PostgresStore(url)  # noqa: E731
    else:
        open_store = lambda: SQLiteStore(tmp_path / "race.db")  # noqa: E731
    steps = Walk(open_store, seed=11)
    steps.step("add")
    stop = threading.Event()

    def search(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            ranking(steps.searcher, vector(rng), text(rng))

    searchers = [threading.Thread(target=search, args=(n,)) for n in range(4)]
    for thread in searchers:
        thread.start()
    try:
        for op in ["add", "add", "update", "add", "delete", "add"] * 5:
            steps.step(op)
    finally:
        stop.set()
        for thread in searchers:
            thread.join()
    try:
        for _ in range(3):
            steps.check()
    finally:
        steps.close()


def test_a_postgres_reset_is_seen_by_a_store_that_searched_before(
        postgres_server: str) -> None:
    """The tenant's change counter goes on after a reset: another process's index never
    takes the new rows for the old ones (the same number of writes after the reset)."""
    from memlane.dev.postgres import fresh_database
    from memlane.store.postgres import PostgresStore

    url = fresh_database(postgres_server)
    rng = random.Random(2)
    searcher, other = PostgresStore(url), PostgresStore(url)
    try:
        first = record(ALICE, "plum")
        other.write(WriteBatch(scope=ALICE, inserts=[(first, vector(rng))]))
        assert [h.record.id for h in searcher.keyword_search(RecordQuery(ALICE), "plum", 5)] \
            == [first.id]
        other.reset()
        second = record(ALICE, "plum")
        other.write(WriteBatch(scope=ALICE, inserts=[(second, vector(rng))]))
        assert [h.record.id for h in searcher.keyword_search(RecordQuery(ALICE), "plum", 5)] \
            == [second.id]
    finally:
        searcher.close()
        other.close()


def stale_index(path: Path) -> tuple[DerivedIndex, sqlite3.Connection]:
    """An index of a file whose generation never moves: what it read stays its view, as
    a search that read its rows just before a write sees them."""
    db = sqlite3.connect(path, check_same_thread=False)
    reads = SQLReads(DIALECT, lambda sql, params: db.execute(sql, params).fetchall(),
                     lambda query: "unchanged")
    return DerivedIndex(reads, query_cache_rows=100_000), db


def test_a_vector_search_racing_an_erasure_leaves_the_erased_rows_out(tmp_path: Path) -> None:
    rng, path = random.Random(4), tmp_path / "race-erase.db"
    store = SQLiteStore(path)
    kept = [replace(record(ALICE, text(rng)), session_id="s1") for _ in range(3)]
    erased = [replace(record(ALICE, text(rng)), session_id="s2") for _ in range(3)]
    store.write(WriteBatch(scope=ALICE, inserts=[(r, vector(rng)) for r in kept + erased]))
    index, db = stale_index(path)
    try:
        query = RecordQuery(ALICE)
        assert len(index.admitted(query).ids) == 6  # read, vectors not loaded yet
        store.erase(Scope("default", "alice", None, "s2"))
        hits = index.vector_search(query, vector(rng), 10)
        assert sorted(h.record.id for h in hits) == sorted(r.id for r in kept)
    finally:
        db.close()
        store.close()


def test_a_row_without_its_vector_is_reported_as_damage(tmp_path: Path) -> None:
    rng, path = random.Random(5), tmp_path / "damaged.db"
    store = SQLiteStore(path)
    store.write(WriteBatch(scope=ALICE, inserts=[(record(ALICE, "fig"), vector(rng))]))
    store.close()
    index, db = stale_index(path)
    try:
        db.execute("DELETE FROM memory_vectors")
        db.commit()
        with pytest.raises(StoreError, match="damaged"):
            index.vector_search(RecordQuery(ALICE), vector(rng), 5)
    finally:
        db.close()
