"""The store conformance suite: written once, run against every store (see conftest)."""

from __future__ import annotations

import ast
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from memlane.errors import ConflictError, InvalidInputError
from memlane.ids import new_id
from memlane.store import ApiKey, RecordQuery, RecordUpdate, ScopeCounts, Store, WriteBatch
from memlane.store.base import JobFinish, JobReleased
from memlane.types import (
    STATUSES,
    HistoryEvent,
    Job,
    MemoryRecord,
    Message,
    Scope,
    content_hash,
)

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
DIM = 8


def vec(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return (v / np.linalg.norm(v)).astype(np.float32)


def record(text: str, scope: Scope, *, when: datetime = T0, **fields: object) -> MemoryRecord:
    base = MemoryRecord(
        id=new_id(), tenant=scope.tenant, user_id=scope.user_id, agent_id=scope.agent_id,
        session_id=scope.session_id, kind="turn", text=text, role="user", speaker=None,
        hash=content_hash(text), source_ids=(new_id(),), event_time=when, valid_from=when,
        created_at=when, updated_at=when,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


ALICE = Scope("default", "alice")
BOB = Scope("default", "bob")


def put(store: Store, scope: Scope, *items: tuple[MemoryRecord, np.ndarray],
        key: str | None = None) -> None:
    store.write(WriteBatch(scope=scope, add_key=key, inserts=list(items)))


def test_round_trip_keeps_every_field(store: Store) -> None:
    r = record("I moved to Lisbon", ALICE, speaker="alice", tags=("home", "move"),
               metadata={"topic": "travel", "n": 3, "nested": {"a": [1, "x"]}},
               valid_to=T0 + timedelta(days=3), importance=0.9, pinned=True,
               expires_at=T0 + timedelta(days=30), last_accessed_at=T0, access_count=2)
    put(store, ALICE, (r, vec(1)))
    assert store.get("default", [r.id]) == [r]
    assert store.get("other-tenant", [r.id]) == []


def test_scores_are_similarities_in_unit_interval_best_first(store: Store) -> None:
    texts = ["lisbon is sunny", "paris has rain", "lisbon lisbon trams", "cats sleep"]
    vectors = [vec(1, 0.1), vec(0, 1), vec(1, 0.5), vec(-1, 0)]
    put(store, ALICE, *[(record(t, ALICE), v) for t, v in zip(texts, vectors, strict=True)])
    q = RecordQuery(ALICE)
    dense = store.vector_search(q, vec(1, 0.1), 10)
    assert dense[0].record.text == "lisbon is sunny"
    assert dense[0].score == pytest.approx(1.0, abs=1e-5)
    assert dense[-1].record.text == "cats sleep"
    keyword = store.keyword_search(q, "lisbon", 10)
    assert {h.record.text for h in keyword} == {"lisbon is sunny", "lisbon lisbon trams"}
    for hits in (dense, keyword):
        scores = [h.score for h in hits]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)


def test_search_is_restricted_to_scope_before_ranking(store: Store) -> None:
    put(store, BOB, *[(record(f"lisbon fact {i}", BOB), vec(1, i / 100)) for i in range(60)])
    mine = record("I like lisbon too", ALICE)
    put(store, ALICE, (mine, vec(0, 1)))
    for hits in (store.vector_search(RecordQuery(ALICE), vec(1), 10),
                 store.keyword_search(RecordQuery(ALICE), "lisbon", 10)):
        assert [h.record.id for h in hits] == [mine.id]
    # a small scope beside a big one still gets a full top-k from its own records
    assert len(store.vector_search(RecordQuery(BOB), vec(0, 1), 50)) == 50


def test_scope_fields_narrow_independently(store: Store) -> None:
    s1 = Scope("default", "alice", "agent-a", "s1")
    s2 = Scope("default", "alice", "agent-b", "s2")
    a, b = record("one", s1), record("two", s2)
    put(store, s1, (a, vec(1)))
    put(store, s2, (b, vec(1)))
    assert {r.id for r in store.find(RecordQuery(ALICE))} == {a.id, b.id}
    assert [r.id for r in store.find(RecordQuery(Scope("default", agent_id="agent-b")))] == [b.id]
    assert [r.id for r in store.find(RecordQuery(Scope("default", "alice", session_id="s1")))
            ] == [a.id]
    assert store.find(RecordQuery(Scope("other", "alice"))) == []


def test_find_orders_by_event_time_and_pages(store: Store) -> None:
    items = [(record(f"m{i}", ALICE, when=T0 + timedelta(minutes=10 - i)), vec(1))
             for i in range(10)]
    put(store, ALICE, *items)
    q = RecordQuery(ALICE)
    everything = store.find(q)
    assert [r.text for r in everything] == [f"m{i}" for i in reversed(range(10))]
    pages = store.find(q, limit=4) + store.find(q, limit=4, offset=4) + store.find(q, offset=8)
    assert pages == everything
    assert store.find(q, newest_first=True) == everything[::-1]
    assert store.count(q) == 10


def test_add_key_makes_writes_idempotent(store: Store) -> None:
    first = record("hello", ALICE)
    outcome = store.write(WriteBatch(scope=ALICE, add_key="k1", inserts=[(first, vec(1))]))
    assert outcome.applied and outcome.memory_ids == (first.id,)
    again = store.write(WriteBatch(scope=ALICE, add_key="k1",
                                   inserts=[(record("hello", ALICE), vec(1))]))
    assert not again.applied and again.memory_ids == (first.id,)
    assert store.count(RecordQuery(ALICE)) == 1


def test_add_key_is_bound_to_its_scope_and_content(store: Store) -> None:
    secret = record("Alice secret: code 9911", ALICE)
    store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="alice-add",
                           inserts=[(secret, vec(1))]))
    with pytest.raises(ConflictError, match="req-1"):  # same scope, another add
        store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="another-add",
                               inserts=[(record("Alice: buy milk", ALICE), vec(1))]))
    assert [r.id for r in store.find(RecordQuery(ALICE))] == [secret.id]
    again = store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="alice-add",
                                   inserts=[(record("Alice secret: code 9911", ALICE), vec(1))]))
    assert not again.applied and again.memory_ids == (secret.id,)
    # a key stored without a fingerprint (written before fingerprints) names its scope's add
    old = record("x", ALICE)
    store.write(WriteBatch(scope=ALICE, add_key="old", inserts=[(old, vec(1))]))
    retried = store.write(WriteBatch(scope=ALICE, add_key="old", add_fingerprint="f"))
    assert not retried.applied and retried.memory_ids == (old.id,)


def test_the_same_add_key_in_another_scope_is_another_key(store: Store) -> None:
    secret = record("Alice secret: code 9911", ALICE)
    store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="alice-add",
                           inserts=[(secret, vec(1))]))
    alice_s1, other = Scope("default", "alice", None, "s1"), Scope("other", "alice")
    stored = {}
    for scope in (BOB, Scope("default", "bob", "agent"), alice_s1, other):
        mine = record(f"{scope}: buy milk", scope)
        outcome = store.write(WriteBatch(scope=scope, add_key="req-1", add_fingerprint="f",
                                         inserts=[(mine, vec(1))]))
        assert outcome.applied and outcome.memory_ids == (mine.id,)  # no conflict, no leak
        stored[scope] = mine.id
    for scope, memory_id in stored.items():  # each scope's retry answers with its own add
        retried = store.write(WriteBatch(scope=scope, add_key="req-1", add_fingerprint="f"))
        assert not retried.applied and retried.memory_ids == (memory_id,)
    assert [r.id for r in store.find(RecordQuery(ALICE, statuses=STATUSES))
            if r.scope == ALICE] == [secret.id]
    assert store.erase(BOB).adds == 2  # bob's keys, not alice's
    again = store.write(WriteBatch(scope=ALICE, add_key="req-1", add_fingerprint="alice-add"))
    assert not again.applied and again.memory_ids == (secret.id,)


def test_batch_is_all_or_nothing(store: Store) -> None:
    message = Message(id="m1", tenant="default", user_id="alice", agent_id=None,
                      session_id=None, role="user", name=None, content="hi", event_time=T0,
                      created_at=T0)
    store.write(WriteBatch(scope=ALICE, messages=[message]))
    with pytest.raises(InvalidInputError):
        store.write(WriteBatch(scope=ALICE, add_key="k", messages=[message],
                               inserts=[(record("hi", ALICE), vec(1))]))
    assert store.count(RecordQuery(ALICE)) == 0
    assert len(store.messages(ALICE)) == 1
    # the failed batch did not consume its key
    assert store.write(WriteBatch(scope=ALICE, add_key="k")).applied


def test_update_checks_the_expected_version(store: Store) -> None:
    r = record("old", ALICE)
    put(store, ALICE, (r, vec(1)))
    new = replace(r, text="new", version=2)
    store.write(WriteBatch(scope=ALICE, updates=[RecordUpdate(new, 1, vec(0, 1))]))
    assert store.get("default", [r.id])[0].text == "new"
    assert store.keyword_search(RecordQuery(ALICE), "old", 5) == []
    assert [h.record.id for h in store.keyword_search(RecordQuery(ALICE), "new", 5)] == [r.id]
    assert store.vector_search(RecordQuery(ALICE), vec(0, 1), 1)[0].score == pytest.approx(1.0)
    with pytest.raises(ConflictError):
        store.write(WriteBatch(scope=ALICE, updates=[RecordUpdate(replace(new, version=3), 1)]))
    assert store.get("default", [r.id])[0].version == 2


def test_statuses_and_as_of(store: Store) -> None:
    old = record("lives in paris", ALICE, valid_to=T0 + timedelta(days=10), status="superseded")
    cur = record("lives in lisbon", ALICE, when=T0 + timedelta(days=10))
    gone = record("deleted thing", ALICE, status="deleted")
    put(store, ALICE, (old, vec(1)), (cur, vec(1)), (gone, vec(1)))
    assert [r.id for r in store.find(RecordQuery(ALICE))] == [cur.id]
    before = RecordQuery(ALICE, as_of=T0 + timedelta(days=5))
    assert [r.id for r in store.find(before)] == [old.id]
    assert [h.record.id for h in store.keyword_search(before, "lives", 5)] == [old.id]
    after = RecordQuery(ALICE, as_of=T0 + timedelta(days=11))
    assert [h.record.id for h in store.vector_search(after, vec(1), 5)] == [cur.id]
    every = RecordQuery(ALICE, statuses=("active", "superseded", "deleted"))
    assert store.count(every) == 3


def test_kinds_narrow(store: Store) -> None:
    turn, fact = record("a turn", ALICE), record("a fact", ALICE, kind="fact")
    put(store, ALICE, (turn, vec(1)), (fact, vec(1)))
    assert [r.id for r in store.find(RecordQuery(ALICE, kinds=("fact",)))] == [fact.id]


def test_history_is_kept_in_order(store: Store) -> None:
    r = record("x", ALICE)
    events = [HistoryEvent(new_id(), r.id, "default", op, n, None, "x", "system", None, T0)
              for n, op in enumerate(("add", "update", "delete"), start=1)]
    store.write(WriteBatch(scope=ALICE, inserts=[(r, vec(1))], events=events[:1]))
    store.write(WriteBatch(scope=ALICE, events=events[1:]))
    assert store.history("default", r.id) == events
    assert store.history("other", r.id) == []


def test_erase_removes_the_scope_and_nothing_else(store: Store) -> None:
    a, b = record("alice secret", ALICE), record("bob note", BOB)
    message = Message(id="m1", tenant="default", user_id="alice", agent_id=None,
                      session_id=None, role="user", name=None, content="alice secret",
                      event_time=T0, created_at=T0)
    event = HistoryEvent(new_id(), a.id, "default", "add", 1, None, "x", "system", None, T0)
    store.write(WriteBatch(scope=ALICE, add_key="ka", messages=[message],
                           inserts=[(a, vec(1))], events=[event]))
    put(store, BOB, (b, vec(1)))
    counts = store.erase(ALICE)
    assert (counts.messages, counts.memories, counts.history) == (1, 1, 1)
    assert (counts.vectors, counts.adds, counts.jobs) == (1, 1, 0)
    checked = True if store.capabilities.verified_erasure else None  # None: cannot check
    assert counts.wal_truncated is checked and counts.verified_clean is checked
    assert store.get("default", [a.id]) == []
    assert store.messages(ALICE) == []
    assert store.history("default", a.id) == []
    assert store.keyword_search(RecordQuery(ALICE), "secret", 5) == []
    assert store.vectors("default", [a.id]) == {}
    assert [r.id for r in store.find(RecordQuery(BOB))] == [b.id]
    # after erasure the same add can be stored again
    assert store.write(WriteBatch(scope=ALICE, add_key="ka", inserts=[(a, vec(1))])).applied


def test_vectors_round_trip(store: Store) -> None:
    r = record("v", ALICE)
    put(store, ALICE, (r, vec(0.3, 0.4)))
    np.testing.assert_allclose(store.vectors("default", [r.id])[r.id], vec(0.3, 0.4))


def test_meta_and_reset(store: Store) -> None:
    store.set_meta("embedder", "x/8")
    put(store, ALICE, (record("x", ALICE), vec(1)))
    assert store.get_meta("embedder") == "x/8"
    assert store.tenants() == ["default"]
    store.reset()
    assert store.get_meta("embedder") is None
    assert store.count(RecordQuery(ALICE)) == 0


def test_tally_counts_kinds_and_statuses(store: Store) -> None:
    put(store, ALICE, (record("a", ALICE), vec(1)), (record("b", ALICE, kind="fact"), vec(1)),
        (record("c", ALICE, kind="fact", status="superseded"), vec(1)))
    put(store, BOB, (record("d", BOB), vec(1)))
    every = RecordQuery(ALICE, statuses=("active", "superseded", "archived", "deleted"))
    assert store.tally(every) == {("turn", "active"): 1, ("fact", "active"): 1,
                                  ("fact", "superseded"): 1}


def test_count_messages_follows_the_scope(store: Store) -> None:
    def message(mid: str, user: str, session: str | None) -> Message:
        return Message(id=mid, tenant="default", user_id=user, agent_id=None,
                       session_id=session, role="user", name=None, content=mid,
                       event_time=T0, created_at=T0)

    store.write(WriteBatch(scope=ALICE, messages=[message("a1", "alice", "s1"),
                                                  message("a2", "alice", "s2"),
                                                  message("a3", "alice", "s2")]))
    store.write(WriteBatch(scope=BOB, messages=[message("b1", "bob", None)]))
    assert store.count_messages(ALICE) == 3 == len(store.messages(ALICE))
    assert store.count_messages(Scope("default", "alice", session_id="s2")) == 2
    assert store.count_messages(BOB) == 1
    assert store.count_messages(Scope("default")) == 4
    assert store.count_messages(Scope("other")) == 0


def test_long_tokens_and_any_script_are_searchable(store: Store) -> None:
    blob = record("key " + "a" * 5000 + " in lisbon", ALICE)  # a token no one searches for
    greek = record("Το καφέ στη Λισαβόνα", ALICE)
    german = record("Die Straße am Fluss", ALICE)
    put(store, ALICE, (blob, vec(1)), (greek, vec(2)), (german, vec(3)))
    query = RecordQuery(ALICE)
    assert [h.record.id for h in store.keyword_search(query, "lisbon", 5)] == [blob.id]
    assert [h.record.id for h in store.keyword_search(query, "ΛΙΣΑΒΌΝΑ", 5)] == [greek.id]
    assert [h.record.id for h in store.keyword_search(query, "strasse", 5)] == [german.id]


def test_tally_jobs_counts_statuses_and_sums_usage_within_the_scope(store: Store) -> None:
    def job(user: str, session: str | None, status: str, usage: dict[str, int]) -> Job:
        return Job(id=new_id(), tenant="default", user_id=user, agent_id=None,
                   session_id=session, add_key=new_id(), memory_ids=(), status=status,
                   attempts=1, created_at=T0, updated_at=T0, usage=usage)

    alice = [job("alice", "s1", "done", {"calls": 2, "prompt_tokens": 900,
                                         "completion_tokens": 80}),
             job("alice", "s2", "done", {"calls": 1, "prompt_tokens": 400}),
             job("alice", "s2", "failed", {})]
    store.write(WriteBatch(scope=ALICE, jobs=alice))
    store.write(WriteBatch(scope=BOB, jobs=[job("bob", None, "pending", {"calls": 5})]))
    none = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    assert store.tally_jobs(ALICE) == {
        "done": (2, {"calls": 3, "prompt_tokens": 1300, "completion_tokens": 80}),
        "failed": (1, none)}
    assert store.tally_jobs(Scope("default", "alice", session_id="s1")) == {
        "done": (1, {"calls": 2, "prompt_tokens": 900, "completion_tokens": 80})}
    assert store.tally_jobs(Scope("default"))["pending"] == (1, {**none, "calls": 5})
    assert store.tally_jobs(Scope("other")) == {}


def test_scopes_count_memories_and_messages_of_each_scope(store: Store) -> None:
    def message(mid: str, scope: Scope) -> Message:
        return Message(id=mid, tenant=scope.tenant, user_id=scope.user_id,
                       agent_id=scope.agent_id, session_id=scope.session_id, role="user",
                       name=None, content=mid, event_time=T0, created_at=T0)

    s1 = Scope("default", "alice", session_id="s1")
    s2 = Scope("default", "alice", "agent-a", "s2")
    store.write(WriteBatch(scope=s1, messages=[message("m1", s1), message("m2", s1)],
                           inserts=[(record("one", s1), vec(1)), (record("two", s1), vec(1)),
                                    (record("gone", s1, status="deleted"), vec(1))]))
    put(store, s2, (record("three", s2, kind="fact"), vec(1)))
    store.write(WriteBatch(scope=BOB, messages=[message("b1", BOB)]))
    put(store, Scope("other", "alice"), (record("elsewhere", Scope("other", "alice")), vec(1)))
    every = RecordQuery(Scope("default"), statuses=STATUSES)
    assert store.scopes(every) == [ScopeCounts("alice", None, "s1", 3, 2),
                                   ScopeCounts("alice", "agent-a", "s2", 1, 0),
                                   ScopeCounts("bob", None, None, 0, 1)]
    # memories counted as the query admits them; a scope outside the query's is left out
    assert store.scopes(RecordQuery(ALICE, kinds=("turn",))) == [
        ScopeCounts("alice", None, "s1", 2, 2)]
    assert store.scopes(RecordQuery(Scope("default", agent_id="agent-a"))) == [
        ScopeCounts("alice", "agent-a", "s2", 1, 0)]
    assert store.scopes(RecordQuery(Scope("nobody"))) == []


def said(message_id: str, scope: Scope, text: str, minute: int) -> Message:
    return Message(id=message_id, tenant=scope.tenant, user_id=scope.user_id,
                   agent_id=scope.agent_id, session_id=scope.session_id, role="user",
                   name=None, content=text, event_time=T0 + timedelta(minutes=minute),
                   created_at=T0)


def test_a_deleted_turn_hides_its_raw_message(store: Store) -> None:
    other_session = Scope("default", "alice", None, "s2")
    kept, hidden = said("m1", ALICE, "keep me", 1), said("m2", ALICE, "hide me", 2)
    same_id = said("m2", other_session, "same id, other session", 3)  # ids are per scope
    turns = [record(m.content, scope, source_ids=(m.id,))
             for m, scope in ((kept, ALICE), (hidden, ALICE), (same_id, other_session))]
    fact = record("a fact read from m1", ALICE, kind="fact", source_ids=("m1",))
    store.write(WriteBatch(scope=ALICE, messages=[kept, hidden],
                           inserts=[(turns[0], vec(1)), (turns[1], vec(1)), (fact, vec(1))]))
    store.write(WriteBatch(scope=other_session, messages=[same_id],
                           inserts=[(turns[2], vec(1))]))
    store.write(WriteBatch(scope=BOB, messages=[said("m2", BOB, "bob's m2", 4)]))
    gone = [replace(r, status="deleted", version=2) for r in (turns[1], fact)]
    store.write(WriteBatch(scope=ALICE, updates=[RecordUpdate(r, 1) for r in gone]))
    # deleting a turn hides what was said; deleting a fact read from it does not
    assert store.messages(ALICE) == [kept, same_id]
    assert store.messages(ALICE, limit=1, offset=1) == [same_id]
    assert store.count_messages(ALICE) == 2
    assert store.recent_messages(ALICE, 5) == [kept]
    assert store.messages(other_session) == [same_id]
    assert [m.content for m in store.messages(BOB)] == ["bob's m2"]
    # the message is kept (for history, export and restore) until the scope is erased
    assert store.messages(ALICE, include_deleted=True) == [kept, hidden, same_id]
    assert store.erase(ALICE).messages == 3
    assert store.messages(ALICE, include_deleted=True) == []


def job(scope: Scope, *, status: str = "pending", created: datetime = T0,
        updated: datetime = T0) -> Job:
    return Job(id=new_id(), tenant=scope.tenant, user_id=scope.user_id,
               agent_id=scope.agent_id, session_id=scope.session_id, add_key=new_id(),
               memory_ids=(), status=status, attempts=0, created_at=created,
               updated_at=updated)


def test_claim_job_takes_a_pending_job_once_and_a_stale_running_one_again(
        store: Store) -> None:
    pending = job(ALICE)
    stale = job(ALICE, status="running", updated=T0)
    fresh = job(ALICE, status="running", updated=T0 + timedelta(minutes=9))
    done = job(ALICE, status="done")
    store.write(WriteBatch(scope=ALICE, jobs=[pending, stale, fresh, done]))
    now, lease_start = T0 + timedelta(minutes=10), T0 + timedelta(minutes=5)
    claimed = store.claim_job("default", pending.id, now, lease_start)
    assert claimed == replace(pending, status="running", updated_at=now)
    assert store.claim_job("default", pending.id, now, lease_start) is None  # taken
    # a running job untouched since before the lease started: its worker died
    assert store.claim_job("default", stale.id, now, lease_start) == replace(
        stale, updated_at=now)
    assert store.claim_job("default", fresh.id, now, lease_start) is None
    assert store.claim_job("default", done.id, now, lease_start) is None
    assert store.claim_job("other", job(ALICE).id, now, lease_start) is None
    assert store.claim_job("other", fresh.id, now, now) is None  # another tenant's job
    running = store.find_jobs("default", statuses=["running"])
    assert {j.id: j.updated_at for j in running} == {pending.id: now, stale.id: now,
                                                     fresh.id: fresh.updated_at}


def claimed_job(store: Store, scope: Scope, now: datetime = T0) -> Job:
    pending = job(scope)
    store.write(WriteBatch(scope=scope, jobs=[pending]))
    claimed = store.claim_job(scope.tenant, pending.id, now, now - timedelta(minutes=10))
    assert claimed is not None
    return claimed


def finishing(claimed: Job, *items: tuple[MemoryRecord, np.ndarray],
              status: str = "done", error: str | None = None) -> WriteBatch:
    result = replace(claimed, status=status, attempts=claimed.attempts + 1, error=error,
                     updated_at=claimed.updated_at + timedelta(seconds=5),
                     usage={"calls": 1})
    return WriteBatch(scope=claimed.scope, inserts=list(items),
                      finish=JobFinish(claimed=claimed, result=result))


def test_a_job_finishes_in_place_with_its_facts_while_its_claim_holds(store: Store) -> None:
    claimed = claimed_job(store, ALICE)
    fact = record("Alice lives in Lisbon.", ALICE, kind="fact")
    store.write(finishing(claimed, (fact, vec(1))))
    assert [r.id for r in store.find(RecordQuery(ALICE, kinds=("fact",)))] == [fact.id]
    [stored] = store.find_jobs("default")
    assert (stored.id, stored.status, stored.attempts, stored.usage) == (
        claimed.id, "done", 1, {"calls": 1})
    with pytest.raises(JobReleased):  # finished: no claim left to finish again
        store.write(finishing(claimed))


def test_a_job_erased_while_it_ran_writes_nothing_and_comes_back_nowhere(
        store: Store) -> None:
    claimed = claimed_job(store, ALICE)
    assert store.erase(ALICE).jobs == 1
    fact = record("Alice lives in Lisbon.", ALICE, kind="fact")
    with pytest.raises(JobReleased):
        store.write(finishing(claimed, (fact, vec(1))))
    with pytest.raises(JobReleased):
        store.write(finishing(claimed, status="failed", error="the model's raw answer"))
    assert store.find(RecordQuery(ALICE, statuses=STATUSES)) == []
    assert store.find_jobs("default") == [] and store.tally_jobs(ALICE) == {}


def test_a_job_reset_while_it_ran_writes_nothing(store: Store) -> None:
    claimed = claimed_job(store, ALICE)
    store.reset()
    with pytest.raises(JobReleased):
        store.write(finishing(claimed, (record("Alice lives in Lisbon.", ALICE,
                                               kind="fact"), vec(1))))
    assert store.find(RecordQuery(ALICE, statuses=STATUSES)) == []
    assert store.find_jobs("default") == []


def test_a_job_taken_over_after_its_lease_is_finished_by_its_new_runner_only(
        store: Store) -> None:
    first = claimed_job(store, ALICE)
    later = T0 + timedelta(minutes=20)
    second = store.claim_job("default", first.id, later, later - timedelta(minutes=10))
    assert second is not None and second.updated_at == later
    with pytest.raises(JobReleased):
        store.write(finishing(first, (record("stale run", ALICE, kind="fact"), vec(1))))
    assert store.find(RecordQuery(ALICE, kinds=("fact",))) == []
    store.write(finishing(second, (record("new run", ALICE, kind="fact"), vec(1))))
    assert [r.text for r in store.find(RecordQuery(ALICE, kinds=("fact",)))] == ["new run"]
    assert [j.status for j in store.find_jobs("default")] == ["done"]


def test_an_unclaimed_job_cannot_be_finished(store: Store) -> None:
    pending = job(ALICE)
    store.write(WriteBatch(scope=ALICE, jobs=[pending]))
    with pytest.raises(JobReleased):
        store.write(finishing(replace(pending, status="running")))
    assert store.find_jobs("default") == [pending]


def test_find_jobs_lists_a_tenants_jobs_oldest_first(store: Store) -> None:
    jobs = [job(ALICE, status=status, created=T0 + timedelta(minutes=minute))
            for status, minute in (("done", 3), ("pending", 1), ("running", 2),
                                   ("failed", 0), ("pending", 4))]
    store.write(WriteBatch(scope=ALICE, jobs=jobs[:3]))
    store.write(WriteBatch(scope=BOB, jobs=jobs[3:]))  # same tenant, another user
    elsewhere = job(Scope("other", "alice"), created=T0 - timedelta(minutes=1))
    store.write(WriteBatch(scope=Scope("other", "alice"), jobs=[elsewhere]))
    oldest_first = [jobs[3], jobs[1], jobs[2], jobs[0], jobs[4]]
    assert store.find_jobs("default") == oldest_first
    assert store.find_jobs("default", limit=2) == oldest_first[:2]
    assert store.find_jobs("default", statuses=["pending", "running"]) == [
        jobs[1], jobs[2], jobs[4]]
    assert store.find_jobs("default", statuses=["pending"], limit=1) == [jobs[1]]
    assert store.find_jobs("default", statuses=[]) == []
    assert store.find_jobs("other") == [elsewhere]
    assert store.find_jobs("nobody") == []


def test_recent_messages_are_one_conversations_newest_first(store: Store) -> None:
    s1 = Scope("default", "alice", None, "s1")
    mine = [said(f"m{i}", ALICE, f"mine {i}", minute) for i, minute in enumerate((2, 0, 1, 3))]
    deleted = said("m9", ALICE, "deleted turn", 4)
    turn = record(deleted.content, ALICE, source_ids=(deleted.id,))
    store.write(WriteBatch(scope=ALICE, messages=[*mine, deleted], inserts=[(turn, vec(1))]))
    store.write(WriteBatch(scope=ALICE, updates=[
        RecordUpdate(replace(turn, status="deleted", version=2), 1)]))
    # the user's other sessions, other users and tenants are other conversations
    store.write(WriteBatch(scope=s1, messages=[said("s", s1, "a session of alice", 9)]))
    store.write(WriteBatch(scope=BOB, messages=[said("b", BOB, "bob", 8)]))
    other = Scope("other", "alice")
    store.write(WriteBatch(scope=other, messages=[said("o", other, "other tenant", 7)]))
    assert store.recent_messages(ALICE, 10) == [mine[3], mine[0], mine[2], mine[1]]
    assert store.recent_messages(ALICE, 2) == [mine[3], mine[0]]
    assert [m.id for m in store.recent_messages(s1, 10)] == ["s"]
    assert store.recent_messages(Scope("default"), 10) == []  # no user: not alice's
    assert store.recent_messages(Scope("nobody", "alice"), 10) == []


def test_iter_history_yields_a_tenants_events_in_order(store: Store) -> None:
    a, b = record("a", ALICE), record("b", BOB)
    other = Scope("other", "alice")
    c = record("c", other)

    def event(r: MemoryRecord, op: str, n: int) -> HistoryEvent:
        return HistoryEvent(new_id(), r.id, r.tenant, op, n, None, r.text, "system", None, T0)

    first = [event(a, "add", 1), event(b, "add", 1)]
    store.write(WriteBatch(scope=ALICE, inserts=[(a, vec(1)), (b, vec(1))], events=first))
    store.write(WriteBatch(scope=other, inserts=[(c, vec(1))], events=[event(c, "add", 1)]))
    later = [event(a, "update", 2), event(b, "delete", 2), event(a, "delete", 3)]
    store.write(WriteBatch(scope=ALICE, events=later))
    assert list(store.iter_history("default")) == [*first, *later]
    assert [e.memory_id for e in store.iter_history("other")] == [c.id]
    assert list(store.iter_history("nobody")) == []


STORE_PACKAGE = Path(__file__).resolve().parent.parent / "memlane" / "store"
BELOW_THE_STORE = {"erasure", "errors", "filters", "ids", "kinds", "text", "timeutil", "types"}


def _store_imports() -> dict[str, set[str]]:
    """Each module of the store package and the modules it imports relatively: a store
    module's own name, or ``..name`` for a module of the library outside the package."""
    graph: dict[str, set[str]] = {}
    for path in STORE_PACKAGE.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split(".")[0]] if node.module
                             else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and node.level == 2:
                found.add(".." + (node.module or "").split(".")[0])
        graph[path.stem] = found
    return graph


def test_the_store_imports_only_what_lies_below_it_and_no_cycle() -> None:
    graph = _store_imports()
    outside = {m for deps in graph.values() for m in deps if m.startswith("..")}
    assert outside and outside <= {".." + name for name in BELOW_THE_STORE}  # no read stage
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done or module not in graph:
            return
        for dep in graph[module]:
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_turns_citing_finds_the_turns_of_exactly_one_conversation(store: Store) -> None:
    session = Scope("default", "alice", None, "s1")
    other = Scope("default", "alice", None, "s2")
    mine = [record(f"turn {i}", session, source_ids=(f"m{i}",)) for i in range(3)]
    gone = replace(record("deleted turn", session, source_ids=("m3",)), status="deleted")
    fact = record("a fact", session, kind="fact", source_ids=("m1",))
    put(store, session, *((r, vec(1)) for r in (*mine, gone, fact)))
    put(store, other, (record("same id elsewhere", other, source_ids=("m1",)), vec(1)))
    found = store.turns_citing(session, ["m1", "m2", "m3", "nope"])
    assert sorted(r.text for r in found) == ["deleted turn", "turn 1", "turn 2"]
    assert [r.text for r in store.turns_citing(other, ["m1"])] == ["same id elsewhere"]
    assert store.turns_citing(Scope("default", "alice"), ["m1"]) == []  # exact, not "any"
    assert store.turns_citing(Scope("other", "alice", None, "s1"), ["m1"]) == []


def test_job_tenants_name_the_tenants_with_jobs_in_those_statuses(store: Store) -> None:
    elsewhere = Scope("other", "alice")
    store.write(WriteBatch(scope=ALICE, jobs=[job(ALICE), job(ALICE, status="done")]))
    store.write(WriteBatch(scope=elsewhere, jobs=[job(elsewhere, status="running")]))
    assert store.job_tenants(["pending", "running"]) == ["default", "other"]
    assert store.job_tenants(["pending"]) == ["default"]
    assert store.job_tenants(["failed"]) == []
    assert store.job_tenants([]) == []


def api_key(tenant: str = "acme", *, created: datetime = T0, **fields: object) -> ApiKey:
    key_id = new_id()
    base = ApiKey(id=key_id, tenant=tenant, hash=content_hash(key_id), prefix="mlk_ab12",
                  created_at=created)
    return replace(base, **fields)  # type: ignore[arg-type]


def test_keys_are_kept_found_by_hash_listed_and_revoked(store: Store) -> None:
    first = api_key(users=("alice", "bob"), read_only=True, label="reader")
    second = api_key(created=T0 + timedelta(seconds=1), admin=True)
    other = api_key("globex", created=T0 - timedelta(seconds=1))
    for key in (first, second, other):
        store.put_key(key)
    assert store.find_key(first.hash) == first
    assert store.find_key(content_hash("no such key")) is None
    assert store.list_keys("acme") == [first, second]
    assert store.list_keys() == [other, first, second]
    assert store.list_keys("nobody") == []
    when = T0 + timedelta(hours=1)
    assert store.revoke_key(first.id, when) == replace(first, revoked_at=when)
    # revoking again keeps the first time; an unknown id is None
    assert store.revoke_key(first.id, when + timedelta(hours=1)) == replace(first,
                                                                            revoked_at=when)
    assert store.revoke_key("no-such-id", when) is None
    assert store.find_key(first.hash) == replace(first, revoked_at=when)
    assert store.find_key(second.hash) == second


def test_a_key_id_or_hash_is_kept_once(store: Store) -> None:
    key = api_key()
    store.put_key(key)
    with pytest.raises(InvalidInputError):
        store.put_key(replace(key, hash=content_hash("another")))
    with pytest.raises(InvalidInputError):
        store.put_key(replace(key, id=new_id()))
    assert store.list_keys() == [key]


def test_keys_are_credentials_not_memories_erase_and_reset_keep_them(store: Store) -> None:
    key = api_key("default", users=("alice",))
    store.put_key(key)
    put(store, ALICE, (record("x", ALICE), vec(1)))
    store.erase(Scope("default", "alice"))
    store.reset()
    assert store.list_keys() == [key]
    assert store.find_key(key.hash) == key


def test_taken_ids_answers_which_ids_any_tenant_holds(store: Store) -> None:
    mine = record("alice's", ALICE)
    theirs = record("globex's", Scope("globex", "carol"))
    put(store, ALICE, (mine, vec(1)))
    put(store, Scope("globex", "carol"), (theirs, vec(2)))
    event = HistoryEvent(new_id(), theirs.id, "globex", "add", 1, None, "x", "system", None, T0)
    store.write(WriteBatch(scope=Scope("globex", "carol"), events=[event]))
    unknown = new_id()
    assert store.taken_ids("memories", [mine.id, theirs.id, unknown]) == {mine.id, theirs.id}
    assert store.taken_ids("history", [event.id, unknown]) == {event.id}
    assert store.taken_ids("memories", []) == set()
    with pytest.raises(ValueError):
        store.taken_ids("api_keys", [unknown])
