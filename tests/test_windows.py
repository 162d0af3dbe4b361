"""Windows: each turn's window holds it and the two turns before it in the conversation's
order (event time, then insertion order), whatever the concurrency and the arrival order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memlane import FakeEmbedder, Memory
from memlane.errors import ConflictError
from memlane.store import InMemoryStore, SQLiteStore, Store, WriteBatch
from memlane.store.base import Basis, depended
from memlane.timeutil import utcnow
from memlane.types import Message, Scope, index_text
from memlane.write import ingest

from .conftest import run_processes

CONVERSATION = {"user_id": "alice", "agent_id": "helper", "session_id": "s1"}
START = datetime(2026, 3, 1, tzinfo=UTC)


def check_windows(mem: Memory, expected_messages: int) -> None:
    """Every message has exactly one window: it and the two messages before it in the
    store's order, with their texts; nothing lost or doubled."""
    messages = mem.messages(**CONVERSATION)
    assert len(messages) == expected_messages
    assert len({m.content for m in messages}) == expected_messages
    found = mem.get_all(**CONVERSATION, kinds=["window"], limit=1000)
    assert len(mem.get_all(**CONVERSATION, kinds=["turn"], limit=1000)) == expected_messages
    texts = {m.id: index_text(m.content, m.name) for m in messages}
    ids = [m.id for m in messages]
    expected = [tuple(ids[max(0, i - 2):i + 1]) for i in range(len(ids))]
    got = sorted((w.source_ids for w in found), key=lambda s: ids.index(s[-1]))
    wrong = [(e, g) for e, g in zip(expected, got, strict=False) if e != g]
    assert not wrong, f"{len(wrong)} of {len(expected)} windows wrong, e.g. {wrong[:3]}"
    assert got == expected
    for window in found:
        assert window.text == "\n".join(texts[s] for s in window.source_ids)


def _adds(mem: Memory, name: str, adds: int, stamped: bool) -> None:
    """Adds of one or two messages, stamped with the time of the call or not stamped."""
    for i in range(adds):
        batch = [{"content": f"{name} add {i} part {p}"} for p in range(1 + i % 2)]
        mem.add(batch, **CONVERSATION, timestamp=utcnow() if stamped else None)


def _threads(target: Callable[[int], None], count: int) -> None:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


PROCESSES, THREADS, ADDS = 3, 2, 12
PER_THREAD = ADDS + ADDS // 2  # messages: adds alternate one and two messages


def _process(path: str, worker: int) -> None:
    with Memory(path, embedder=FakeEmbedder()) as mem:
        _threads(lambda n: _adds(mem, f"p{worker}t{n}", ADDS, stamped=(worker + n) % 2 == 0),
                 THREADS)


def test_windows_of_concurrent_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Memory(path, embedder=FakeEmbedder()).close()
    assert run_processes(_process, [(path, w) for w in range(PROCESSES)]) == [0] * PROCESSES
    with Memory(path, embedder=FakeEmbedder()) as mem:
        check_windows(mem, PROCESSES * THREADS * PER_THREAD)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Stores that are each a new connection to one database (for the in-process store,
    the same store again)."""
    if request.param == "memory":
        shared = InMemoryStore()
        return lambda: shared
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "shared.db")
    from memlane.dev.postgres import fresh_database
    from memlane.store.postgres import PostgresStore

    uri = fresh_database(request.getfixturevalue("postgres_server"))
    return lambda: PostgresStore(uri)


def test_windows_of_concurrent_threads(connect: Callable[[], Store]) -> None:
    mems = [Memory(store=connect(), embedder=FakeEmbedder()) for _ in range(4)]
    try:
        _threads(lambda n: _adds(mems[n], f"t{n}", ADDS, stamped=n % 2 == 0), 4)
        check_windows(mems[0], 4 * PER_THREAD)
    finally:
        for mem in mems:
            mem.close()


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def test_a_turn_added_into_the_past_takes_its_place_in_time(mem: Memory) -> None:
    """An add older than stored turns: its window reaches back in time, and the windows of
    the (up to) two turns after it are rebuilt to show it."""
    for m in (10, 20, 30, 40, 50):
        mem.add(f"said at {m}", **CONVERSATION, timestamp=at(m))
    mem.add("said at 25", **CONVERSATION, timestamp=at(25))
    check_windows(mem, 6)
    windows = {w.source_ids[-1]: w for w in mem.get_all(**CONVERSATION, kinds=["window"])}
    messages = {m.content: m.id for m in mem.messages(**CONVERSATION)}
    rebuilt = windows[messages["said at 30"]]
    assert rebuilt.version == 2
    assert [e.op for e in mem.history(rebuilt.id, **CONVERSATION)] == ["add", "update"]
    assert windows[messages["said at 50"]].version == 1  # three turns after: unchanged
    mem.add("said at 0", **CONVERSATION, timestamp=at(0))  # before everything
    mem.add("also said at 50", **CONVERSATION, timestamp=at(50))  # a tie goes after
    mem.add([{"content": "said at 5", "timestamp": at(5)},  # one add, out of order
             {"content": "said at 60", "timestamp": at(60)},
             {"content": "said at 1", "timestamp": at(1)}], **CONVERSATION)
    check_windows(mem, 11)
    assert [m.content for m in mem.messages(**CONVERSATION)][:4] == [
        "said at 0", "said at 1", "said at 5", "said at 10"]


def test_only_the_exact_conversation_counts(mem: Memory) -> None:
    mem.add("one", **CONVERSATION, timestamp=at(1))
    mem.add("other session", user_id="alice", agent_id="helper", session_id="s2",
            timestamp=at(2))
    mem.add("no agent", user_id="alice", session_id="s1", timestamp=at(3))
    mem.add("two", **CONVERSATION, timestamp=at(4))
    check_windows(mem, 2)


def _stale_batch(store: Store) -> tuple[WriteBatch, Scope]:
    scope = Scope("default", "alice", None, "s1")
    msgs, turns = ingest.build(scope, ingest.normalize("first"), timestamp=at(1),
                               metadata={}, now=utcnow())
    vectors = FakeEmbedder().embed([t.text for t in turns])
    store.write(WriteBatch(scope=scope, messages=msgs, inserts=list(zip(turns, vectors,
                                                                       strict=True))))
    msgs, turns = ingest.build(scope, ingest.normalize("second"), timestamp=at(2),
                               metadata={}, now=utcnow())
    built_on_nothing = Basis(ids=(), earliest=at(2), back=2)
    return WriteBatch(scope=scope, messages=msgs, after=built_on_nothing,
                      inserts=list(zip(turns, vectors, strict=True))), scope


def test_a_store_refuses_an_add_built_on_a_conversation_that_moved(store: Store) -> None:
    batch, scope = _stale_batch(store)
    with pytest.raises(ConflictError):
        store.write(batch)
    assert [m.content for m in store.messages(scope)] == ["first"]
    fresh = Basis(ids=tuple(m.id for m in store.recent_messages(scope, 3)),
                  earliest=at(2), back=2)
    batch.after = fresh
    assert store.write(batch).applied
    assert [m.content for m in store.messages(scope)] == ["first", "second"]


def test_an_add_that_keeps_losing_the_race_raises_conflict(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    monkeypatch.setattr("memlane.write.adding.ADD_PATIENCE", 0.3)

    class Moving(SQLiteStore):
        """A store whose conversation changes between every read and every write."""

        def write(self, batch: WriteBatch) -> Any:
            if batch.after is not None:
                other = Memory(store=SQLiteStore(self.path), embedder=FakeEmbedder())
                other.add("meanwhile", **CONVERSATION, idempotency_key=utcnow().isoformat())
                other.close()
            return super().write(batch)

    with Memory(store=Moving(tmp_path / "m.db"), embedder=FakeEmbedder()) as mem, \
            pytest.raises(ConflictError, match="kept changing"):
        mem.add("mine", **CONVERSATION)


def _said(name: str, minutes: int) -> Message:
    return Message(id=name, tenant="default", user_id="alice", agent_id=None, session_id="s1",
                   role="user", name=None, content=name, event_time=at(minutes),
                   created_at=at(minutes), metadata={})


def test_a_basis_covers_what_the_windows_depend_on_and_no_more() -> None:
    x, y, z = _said("x", 10), _said("y", 20), _said("z", 30)
    # an add at 25 depends on z (it goes before it) and on x, y (its predecessors)
    assert depended([z, y, x], at(25), 2) == 3
    assert depended([z, y, x], at(30), 2) == 2  # a tie goes after z
    basis = Basis(ids=("z", "y", "x"), earliest=at(25), back=2)
    assert basis.holds([z, y, x, _said("w", 0)])  # older than the predecessors: no matter
    assert not basis.holds([_said("n", 40), z, y, x])  # a newer message changes z's window
    assert not basis.holds([z, _said("n", 22), y, x])  # a new predecessor
    # a conversation shorter than the look-back: any older message is a predecessor
    short = Basis(ids=("x",), earliest=at(25), back=2)
    assert short.holds([x])
    assert not short.holds([x, _said("w", 0)])


def test_a_retried_add_returns_what_it_stored_after_the_conversation_moved(mem: Memory,
                                                                          ) -> None:
    first = mem.add("hello", **CONVERSATION, idempotency_key="k1")
    mem.add("later", **CONVERSATION)
    again = mem.add("hello", **CONVERSATION, idempotency_key="k1")
    assert [r.id for r in again] == [r.id for r in first]
    check_windows(mem, 2)
