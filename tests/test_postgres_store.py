"""PostgreSQL-only behaviour: searches of large scopes in the database (HNSW, GIN),
schema upgrades, connection errors. Shared behaviour is in the conformance and congruence
suites."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from memlane.dev.postgres import fresh_database
from memlane.errors import StoreError
from memlane.filters import parse
from memlane.store import RecordQuery, WriteBatch
from memlane.store.postgres import SCHEMA_VERSION, PostgresStore

from .test_store_conformance import record
from .test_store_congruence import SCOPES, WORDS, _vector

OpenStore = Callable[..., PostgresStore]


@pytest.fixture
def open_pg(postgres_server: str) -> Iterator[OpenStore]:
    """Opens stores (on a new database unless given a location); closes them afterwards."""
    opened: list[PostgresStore] = []

    def open_store(location: str | None = None, **options: Any) -> PostgresStore:
        opened.append(PostgresStore(location or fresh_database(postgres_server), **options))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


def rows(store: PostgresStore, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """What ``sql`` returns, on a connection of its own to the store's database."""
    with psycopg.connect(store.location) as conn:
        return conn.execute(sql, params).fetchall()


def test_an_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(StoreError, match="cannot open the PostgreSQL store"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/none")


def test_postgres_hnsw_serves_large_scopes_and_small_ones_beside_them(open_pg: OpenStore) -> None:
    store = open_pg(index_threshold=20)
    rng = random.Random(5)
    big, small = SCOPES[0], SCOPES[1]
    vectors = [_vector(rng) for _ in range(300)]
    records = [record(f"note {i}", big, kind="fact" if i % 50 == 0 else "turn")
               for i in range(300)]
    store.write(WriteBatch(scope=big, inserts=list(zip(records, vectors, strict=True))))
    mine = [record(f"small {i}", small) for i in range(3)]
    store.write(WriteBatch(scope=small, inserts=[(r, _vector(rng)) for r in mine]))
    hits = store.vector_search(RecordQuery(big), vectors[42], 5)  # builds the scope's index
    assert hits[0].record.id == records[42].id and hits[0].score > 0.999
    name = store.ensure_ann_index(big, 8)
    with psycopg.connect(store.location) as conn:  # the partial index can serve the scope's
        conn.execute("SET LOCAL enable_sort = off")  # query (sorting 300 rows is cheaper;
        plan = " ".join(r[0] for r in conn.execute(  # not at scale)
            "EXPLAIN SELECT m.rid FROM memories m WHERE m.tenant = 'default' AND m.user_id = "
            "'alice' ORDER BY m.embedding::vector(8) <=> '[1,0,0,0,0,0,0,0]'::vector(8) "
            "LIMIT 10").fetchall())
    assert name in plan
    found = {h.record.id for h in store.ann_search(RecordQuery(big), vectors[7], 10)}
    exact = {h.record.id for h in store.vector_search_in_process(RecordQuery(big), vectors[7],
                                                                 10)}
    assert len(found & exact) >= 9
    # a filter inside the big scope still fills its top k (iterative scan): 6 facts of 300
    facts = store.ann_search(RecordQuery(big, kinds=("fact",)), vectors[0], 10)
    assert {h.record.id for h in facts} == {r.id for r in records if r.kind == "fact"}
    # a small scope beside the big one has no index and gets its full top k
    assert {h.record.id for h in store.ann_search(RecordQuery(small), vectors[0], 10)} == {
        r.id for r in mine}
    # erasing the scope drops its index: the index definition names the scope
    store.erase(big)
    assert rows(store, "SELECT count(*) FROM pg_indexes WHERE indexname = %s", (name,)) == [
        (0,)]
    assert rows(store, "SELECT count(*) FROM ann_indexes") == [(0,)]


def test_postgres_keyword_search_of_a_large_scope_runs_in_the_database(open_pg: OpenStore) -> None:
    store = open_pg(keyword_threshold=20)
    rng = random.Random(9)
    big, small = SCOPES[0], SCOPES[1]
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(200)]
    store.write(WriteBatch(scope=big, inserts=[
        (record(t, big, metadata={"n": i}, kind="fact" if i % 3 else "turn"), _vector(rng))
        for i, t in enumerate(texts)]))
    store.write(WriteBatch(scope=small, inserts=[(record("cats", small), _vector(rng))]))
    got = store.keyword_search(RecordQuery(big), "booking cats", 10, "stem")
    assert len(got) == 10 and store.keyword_indexes == 0  # nothing indexed in process
    assert len(store.keyword_search(RecordQuery(small), "cats", 10, "stem")) == 1
    assert store.keyword_indexes == 1  # a small scope is indexed in process
    in_process = store.keyword_search_in_process(RecordQuery(big), "booking cats", 10, "stem")
    assert [h.record.id for h in got] == [h.record.id for h in in_process]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in in_process], rtol=1e-5)
    # filters narrow the statistics as well as the results, on both paths
    narrow = RecordQuery(big, kinds=("fact",), filters=parse({"metadata.n": {"gte": 60}}))
    for analyzer in ("plain", "stem"):
        want = store.keyword_search_in_process(narrow, "cat booked rain", 20, analyzer)
        got = store.gin_keyword_search(narrow, "cat booked rain", 20, analyzer)
        assert len(got) == 20
        assert [h.record.id for h in got] == [h.record.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-5)


def test_postgres_schema_upgrade_fills_the_keyword_columns_of_old_rows(
        postgres_server: str, open_pg: OpenStore) -> None:
    url = fresh_database(postgres_server)
    store = open_pg(url, index_threshold=5)
    scope = SCOPES[0]
    rng = random.Random(3)
    texts = ["trams in lisbon", "cats and dogs", "booked the tram", "rain rain rain"] * 3
    store.write(WriteBatch(scope=scope, inserts=[(record(t, scope), _vector(rng))
                                                 for t in texts]))
    before = store.gin_keyword_search(RecordQuery(scope), "tram cat", 10, "stem")
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:  # as a version 1 database was
        conn.execute("ALTER TABLE memories DROP COLUMN kw_plain, DROP COLUMN kw_stem, "
                     "DROP COLUMN kw_len")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute("CREATE INDEX memories_hnsw_8 ON memories USING hnsw "  # version 1 had
                     "((embedding::vector(8)) vector_cosine_ops)")  # one table-wide index
    reopened = open_pg(url, index_threshold=5)
    after = reopened.gin_keyword_search(RecordQuery(scope), "tram cat", 10, "stem")
    assert len(before) == 9
    assert [(h.record.id, h.score) for h in after] == [(h.record.id, h.score) for h in before]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = "
                            "'memories_hnsw_8'").fetchone() == (0,)
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    reopened.close()
    with pytest.raises(StoreError, match="upgrade memlane"):
        PostgresStore(url)


def test_postgres_scope_index_builds_once_and_recovers_from_an_interrupted_build(
        open_pg: OpenStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = open_pg(index_threshold=20)
    rng = random.Random(11)
    big = SCOPES[0]
    store.write(WriteBatch(scope=big, inserts=[(record(f"n {i}", big), _vector(rng))
                                               for i in range(100)]))
    with ThreadPoolExecutor(4) as pool:  # four builders at once: one index, all see it
        names = set(pool.map(lambda _: store.ensure_ann_index(big, 8), range(4)))
    assert len(names) == 1
    (name,) = names
    count = "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'memories_ann_%%'"
    assert rows(store, count) == [(1,)]
    # a build that died half-way leaves an invalid index behind (CREATE INDEX CONCURRENTLY)
    rows(store, "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass "
         "RETURNING indisvalid", (name,))
    assert store.ensure_ann_index(big, 8) == name
    assert rows(store, "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = "
                "%s::regclass", (name,)) == [(True,)]
    assert rows(store, count) == [(1,)]


@pytest.mark.parametrize("text", [
    "common lisbon",         # the best rows holding "lisbon" outscore "common" alone
    "common zebra",          # too few rows hold "zebra": every matching row is scored
    "common usual lisbon",   # two frequent terms left out of the candidates
    "common usual",          # only frequent terms: the rarer of them stays a candidate
])
def test_postgres_in_database_bm25_with_frequent_terms_is_exact(open_pg: OpenStore,
                                                                text: str) -> None:
    store = open_pg(keyword_threshold=0)
    rng = random.Random(4)
    scope = SCOPES[0]
    texts = []
    for i in range(400):
        words = ["common"] * rng.randint(1, 3) + rng.choices(WORDS, k=rng.randint(2, 9))
        words += ["usual"] if i % 2 else []
        words += ["zebra"] if i % 100 == 0 else []
        texts.append(" ".join(rng.sample(words, len(words))))
    store.write(WriteBatch(scope=scope, inserts=[(record(t, scope), _vector(rng))
                                                 for t in texts]))
    for limit in (5, 50):
        want = store.keyword_search_in_process(RecordQuery(scope), text, limit)
        got = store.keyword_search(RecordQuery(scope), text, limit)
        assert [h.record.id for h in got] == [h.record.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-5)
