"""The SQLite store's derived in-process indexes agree with a from-scratch computation."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from memlane.store import (
    InMemoryStore,
    RecordQuery,
    RecordUpdate,
    SQLiteStore,
    Store,
    WriteBatch,
)
from memlane.store.derived import DerivedSearch
from memlane.types import Scope

from .test_store_conformance import record

WORDS = "lisbon paris trams coffee river cat dog garden books music rain sun".split()
SCOPES = [Scope("default", "alice"), Scope("default", "bob"), Scope("default", "alice", "a1")]


def _vector(rng: random.Random) -> np.ndarray:
    v = np.array([rng.gauss(0, 1) for _ in range(8)], dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_random_workload_matches_the_reference_store(tmp_path: Path, seed: int, kind: str,
                                                     request: pytest.FixtureRequest) -> None:
    """Same writes, same queries: ids, order and scores (to 1e-5) agree with the reference
    store, so SQLite and PostgreSQL agree with each other."""
    rng = random.Random(seed)
    reference = InMemoryStore()
    if kind == "sqlite":
        sqlite: Store = SQLiteStore(tmp_path / "c.db")
    else:
        from memlane.dev.postgres import fresh_database
        from memlane.store.postgres import PostgresStore

        sqlite = PostgresStore(fresh_database(request.getfixturevalue("postgres_server")))
    live = []
    for step in range(120):
        scope = rng.choice(SCOPES)
        roll = rng.random()
        if roll < 0.6 or not live:
            r = record(" ".join(rng.choices(WORDS, k=rng.randint(1, 8))), scope)
            batch = WriteBatch(scope=scope, inserts=[(r, _vector(rng))])
            live.append(r)
        else:
            old = live.pop(rng.randrange(len(live)))
            if roll < 0.8:
                new = replace(old, text=" ".join(rng.choices(WORDS, k=3)),
                              version=old.version + 1)
                live.append(new)
                batch = WriteBatch(scope=old.scope,
                                   updates=[RecordUpdate(new, old.version, _vector(rng))])
            else:
                new = replace(old, status="deleted", version=old.version + 1)
                batch = WriteBatch(scope=old.scope, updates=[RecordUpdate(new, old.version)])
        sqlite.write(batch)
        reference.write(batch)
        if step % 5 == 0:
            query = RecordQuery(rng.choice(SCOPES))
            text = " ".join(rng.choices(WORDS, k=2))
            got = sqlite.keyword_search(query, text, 10)
            want = reference.keyword_search(query, text, 10)
            assert [h.record.id for h in got] == [h.record.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want],
                                       rtol=1e-5)
            vec = _vector(rng)
            got_v = sqlite.vector_search(query, vec, 5)
            want_v = reference.vector_search(query, vec, 5)
            assert [h.record.id for h in got_v] == [h.record.id for h in want_v]
    sqlite.close()


def test_a_write_by_another_connection_is_seen(tmp_path: Path) -> None:
    reader, writer = SQLiteStore(tmp_path / "two.db"), SQLiteStore(tmp_path / "two.db")
    scope = SCOPES[0]
    first = record("coffee in lisbon", scope)
    writer.write(WriteBatch(scope=scope, inserts=[(first, _vector(random.Random(1)))]))
    assert [h.record.id for h in reader.keyword_search(RecordQuery(scope), "coffee", 5)] == [
        first.id]
    second = record("more coffee", scope)
    writer.write(WriteBatch(scope=scope, inserts=[(second, _vector(random.Random(2)))]))
    writer.write(WriteBatch(scope=scope, updates=[
        RecordUpdate(replace(first, text="tea in lisbon", version=2), 1)]))
    assert [h.record.id for h in reader.keyword_search(RecordQuery(scope), "coffee", 5)] == [
        second.id]
    assert len(reader.vector_search(RecordQuery(scope), _vector(random.Random(3)), 5)) == 2


def test_postgres_hnsw_serves_large_scopes_and_small_ones_beside_them(
        postgres_server: str) -> None:
    from memlane.dev.postgres import fresh_database
    from memlane.store.postgres import PostgresStore

    store = PostgresStore(fresh_database(postgres_server), ann_threshold=20)
    rng = random.Random(5)
    big, small = SCOPES[0], SCOPES[1]
    vectors = [_vector(rng) for _ in range(300)]
    records = [record(f"note {i}", big) for i in range(300)]
    store.write(WriteBatch(scope=big, inserts=list(zip(records, vectors, strict=True))))
    mine = [record(f"small {i}", small) for i in range(3)]
    store.write(WriteBatch(scope=small, inserts=[(r, _vector(rng)) for r in mine]))
    hits = store.vector_search(RecordQuery(big), vectors[42], 5)  # builds the index
    assert hits[0].record.id == records[42].id and hits[0].score > 0.999
    found = {h.record.id for h in store.ann_search(RecordQuery(big), vectors[7], 10)}
    exact = {h.record.id for h in DerivedSearch.vector_search(store, RecordQuery(big),
                                                               vectors[7], 10)}
    assert len(found & exact) >= 9
    # a small scope beside a big one gets its full top k (iterative scan)
    assert {h.record.id for h in store.ann_search(RecordQuery(small), vectors[0], 10)} == {
        r.id for r in mine}
    store.close()
