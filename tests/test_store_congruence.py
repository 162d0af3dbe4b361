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
from memlane.store.postgres import PostgresStore
from memlane.types import Scope

from .test_store_conformance import record

WORDS = ("lisbon paris trams tram coffee river cat cats dog garden books booked music rain "
         "sun").split()
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

        sqlite = PostgresStore(fresh_database(request.getfixturevalue("postgres_server")))
    request.addfinalizer(sqlite.close)
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
            for analyzer in ("plain", "stem"):
                want = reference.keyword_search(query, text, 10, analyzer)
                searches = [sqlite.keyword_search]
                if isinstance(sqlite, PostgresStore):  # BM25 over tsvector + GIN as well
                    searches.append(sqlite.gin_keyword_search)
                for search in searches:
                    got = search(query, text, 10, analyzer)
                    assert [h.record.id for h in got] == [h.record.id for h in want]
                    np.testing.assert_allclose([h.score for h in got],
                                               [h.score for h in want], rtol=1e-5)
            vec = _vector(rng)
            got_v = sqlite.vector_search(query, vec, 5)
            want_v = reference.vector_search(query, vec, 5)
            assert [h.record.id for h in got_v] == [h.record.id for h in want_v]


def test_a_write_by_another_connection_is_seen(tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    reader, writer = SQLiteStore(tmp_path / "two.db"), SQLiteStore(tmp_path / "two.db")
    request.addfinalizer(reader.close)
    request.addfinalizer(writer.close)
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
