"""The filter language: parsing, and every store agreeing with the reference semantics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memlane import filters
from memlane.errors import FilterError
from memlane.ids import new_id
from memlane.store import InMemoryStore, RecordQuery, SQLiteStore, WriteBatch
from memlane.types import MemoryRecord, Scope

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCOPE = Scope("default", "u")

words = st.sampled_from(["a", "b", "lisbon", "Lisbon", "x y", ""])
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from([0.5, 1.0, -2.5]), words,
)
json_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=3))


@st.composite
def records(draw: st.DrawFn) -> MemoryRecord:
    meta_keys = draw(st.lists(st.sampled_from(["k", "n", "tags"]), unique=True))
    metadata: dict[str, Any] = {k: draw(json_values) for k in meta_keys}
    if draw(st.booleans()):
        metadata["deep"] = {"k": draw(json_scalars)}
    when = T0 + timedelta(days=draw(st.integers(0, 5)))
    return MemoryRecord(
        id=new_id(), tenant="default", user_id="u",
        agent_id=draw(st.sampled_from([None, "agent"])),
        session_id=draw(st.sampled_from([None, "s1", "s2"])),
        kind=draw(st.sampled_from(["turn", "fact"])), text=draw(words) or "t",
        role="user", speaker=draw(st.sampled_from([None, "alice", "bob"])), hash="h",
        source_ids=("m1",), event_time=when, valid_from=when, created_at=T0, updated_at=T0,
        importance=draw(st.sampled_from([0.1, 0.5, 0.9])), pinned=draw(st.booleans()),
        tags=tuple(draw(st.lists(st.sampled_from(["home", "work"]), max_size=2))),
        metadata=metadata,
    )


def leaf() -> st.SearchStrategy[dict[str, Any]]:
    ops = ["eq", "ne", "gt", "gte", "lt", "lte", "contains", "in", "nin"]
    meta = st.builds(
        lambda key, op, v, vs: {key: {op: vs if op in ("in", "nin") else v}},
        st.sampled_from(["metadata.k", "metadata.n", "metadata.tags", "metadata.deep.k"]),
        st.sampled_from(ops), json_scalars.filter(lambda v: v is not None and v != ""),
        st.lists(json_scalars, max_size=3),
    ).filter(_valid)
    fields = st.one_of(
        st.builds(lambda v: {"speaker": v}, st.sampled_from([None, "alice", "bob"])),
        st.builds(lambda op, v: {"speaker": {op: v}}, st.sampled_from(ops[:7]),
                  st.sampled_from(["alice", "b"])),
        st.builds(lambda v: {"session_id": v}, st.sampled_from([None, "s1"])),
        st.builds(lambda v: {"agent_id": {"ne": v}}, st.sampled_from([None, "agent"])),
        st.builds(lambda op, v: {"importance": {op: v}}, st.sampled_from(ops[:6]),
                  st.sampled_from([0.1, 0.5, 1])),
        st.builds(lambda v: {"pinned": v}, st.booleans()),
        st.builds(lambda v: {"tags": {"contains": v}}, st.sampled_from(["home", "work"])),
        st.builds(lambda v: {"kind": {"in": v}}, st.lists(st.sampled_from(["turn", "fact"]))),
        st.builds(lambda op, d: {"event_time": {op: (T0 + timedelta(days=d)).isoformat()}},
                  st.sampled_from(ops[:6]), st.integers(0, 5)),
        st.builds(lambda v: {"text": {"contains": v}}, words),
    )
    return st.one_of(meta, fields)


def _valid(spec: dict[str, Any]) -> bool:
    try:
        filters.parse(spec)
    except FilterError:
        return False
    return True


filter_specs = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory,
           postgres_server: str) -> Iterator[list[Any]]:
    from memlane.dev.postgres import fresh_database
    from memlane.store.postgres import PostgresStore

    opened = [InMemoryStore(), SQLiteStore(tmp_path_factory.mktemp("f") / "f.db"),
              PostgresStore(fresh_database(postgres_server))]
    yield opened
    for store in opened:
        store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(records(), min_size=1, max_size=8), spec=filter_specs)
def test_stores_agree_with_reference_semantics(stores: list[Any], rows: list[MemoryRecord],
                                               spec: dict[str, Any]) -> None:
    node = filters.parse(spec)
    expected = {r.id for r in rows if filters.matches(node, r)}
    for store in stores:
        store.reset()
        store.write(WriteBatch(scope=SCOPE, inserts=[(r, np.ones(4, np.float32) / 2)
                                                     for r in rows]))
        found = {r.id for r in store.find(RecordQuery(SCOPE, filters=node))}
        assert found == expected, (type(store).__name__, spec)


def test_literal_means_equality_and_keys_are_anded() -> None:
    node = filters.parse({"kind": "fact", "metadata.topic": "x"})
    base = MemoryRecord(
        id="1", tenant="default", user_id="u", agent_id=None, session_id=None, kind="fact",
        text="t", role=None, speaker=None, hash="h", source_ids=(), event_time=T0,
        valid_from=T0, created_at=T0, updated_at=T0, metadata={"topic": "x"})
    assert filters.matches(node, base)
    assert not filters.matches(node, replace(base, kind="turn"))
    assert not filters.matches(node, replace(base, metadata={"topic": "y"}))


def test_types_never_coerce() -> None:
    node = filters.parse({"metadata.n": {"gt": 4}})
    base = MemoryRecord(
        id="1", tenant="default", user_id="u", agent_id=None, session_id=None, kind="fact",
        text="t", role=None, speaker=None, hash="h", source_ids=(), event_time=T0,
        valid_from=T0, created_at=T0, updated_at=T0)
    assert filters.matches(node, replace(base, metadata={"n": 5}))
    assert not filters.matches(node, replace(base, metadata={"n": "5"}))
    assert not filters.matches(filters.parse({"metadata.n": 1}),
                               replace(base, metadata={"n": True}))


def test_empty_filter_is_no_filter() -> None:
    assert filters.parse({}) is None and filters.parse(None) is None


@pytest.mark.parametrize("spec, message", [
    ({"color": "red"}, "unknown filter field 'color'"),
    ({"kind": {"regex": "x"}}, "unknown operator 'regex'"),
    ({"tags": {"eq": "x"}}, "does not apply"),
    ({"metadata.n": {"gt": None}}, "needs a number or a string"),
    ({"kind": {"in": "turn"}}, "takes a list"),
    ({"not": []}, "non-empty filter"),
])
def test_parse_errors_say_what_is_wrong(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        filters.parse(spec)


def _row(kind: str, speaker: str | None, importance: float, meta: dict[str, Any]) -> MemoryRecord:
    return MemoryRecord(
        id=new_id(), tenant="default", user_id="u", agent_id=None, session_id=None, kind=kind,
        text="t", role="user", speaker=speaker, hash="h", source_ids=("m1",), event_time=T0,
        valid_from=T0, created_at=T0, updated_at=T0, importance=importance, metadata=meta)


def test_in_and_nin_take_thousands_of_values_on_every_store(stores: list[Any]) -> None:
    """One bound parameter per type of value, not one per value: no store has a limit."""
    rows = [_row("turn", "alice", 0.5, {"k": 7}), _row("fact", None, 0.25, {"k": "7"}),
            _row("fact", "bob", 1.0, {"k": True}), _row("note", "bo😀b", 0.1, {"k": None}),
            _row("turn", "carol", 0.75, {"k": 2.5}), _row("turn", "dan", 0.5, {})]
    many_words = [f"w{i}" for i in range(5_000)]
    many_numbers: list[Any] = [*range(1000, 4_000), *(i + 0.5 for i in range(3, 2_000))]
    specs: list[dict[str, Any]] = [
        {"kind": {"in": [*many_words, "fact"]}},
        {"kind": {"nin": [*many_words, "turn"]}},
        {"speaker": {"in": [*many_words, None, "bo😀b"]}},
        {"speaker": {"nin": [*many_words, None]}},
        {"importance": {"in": [*many_numbers, 1, 0.25]}},
        {"importance": {"nin": [*many_numbers, 0.5]}},
        {"event_time": {"in": [*(f"20{i:02d}-01-01T00:00:00Z" for i in range(99)),
                               T0.isoformat()]}},
        {"metadata.k": {"in": [*many_words, *many_numbers, 7, "7"]}},
        {"metadata.k": {"in": [*many_numbers, 2.5, True, None]}},
        {"metadata.k": {"nin": [*many_words, *many_numbers, 7.0, False]}},
        {"metadata.k": {"in": [*many_words, "x\u00e9\"'\\"]}},
        {"metadata.k": {"in": [*range(30_000), 7]}},  # 90,000 parameters, one each
        {"metadata.k": {"nin": []}},
        {"kind": {"in": []}},
        {"pinned": {"in": [False]}},
        {"pinned": {"nin": [True, False]}},
        {"version": {"in": [1.0, 2**62, -(2**63)]}},
        {"version": {"nin": [*many_numbers, 2**63 - 1]}},
    ]
    for store in stores:
        store.reset()
        store.write(WriteBatch(scope=SCOPE, inserts=[(r, np.ones(4, np.float32) / 2)
                                                     for r in rows]))
    for spec in specs:
        node = filters.parse(spec)
        expected = {r.id for r in rows if filters.matches(node, r)}
        for store in stores:
            found = {r.id for r in store.find(RecordQuery(SCOPE, filters=node))}
            assert found == expected, (type(store).__name__, str(spec)[-80:])
    kinds = RecordQuery(SCOPE, kinds=(*(f"k{i}" for i in range(300_000)), "note"))
    for store in stores:
        assert [r.kind for r in store.find(kinds)] == ["note"]
