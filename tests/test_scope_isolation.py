"""No read or write reaches another user's memories, filters included."""

from __future__ import annotations

import pytest

from memlane import FakeEmbedder, Memory
from memlane.errors import NotFoundError
from memlane.store import Store


@pytest.fixture
def two_users(mem: Memory) -> tuple[Memory, str, str]:
    a = mem.add("my bank PIN is 4921", user_id="alice", metadata={"topic": "bank"})[0]
    b = mem.add("my bank PIN is 1234", user_id="bob", metadata={"topic": "bank"})[0]
    return mem, a.id, b.id


def test_search_sees_only_the_callers_scope(two_users: tuple[Memory, str, str]) -> None:
    mem, a, _ = two_users
    source = mem.get(a).source_ids
    assert [h.memory.source_ids for h in mem.search("bank PIN", user_id="alice")] == [source]
    assert [h.id for h in mem.search("bank PIN", user_id="alice", kinds=["turn"])] == [a]
    assert [r.id for r in mem.get_all(user_id="alice")] == [a]
    assert [m.id for m in mem.context("PIN", user_id="alice").memories] == [a]


@pytest.mark.parametrize("filters", [
    {"user_id": "bob"},
    {"or": [{"user_id": "bob"}, {"user_id": "alice"}]},
    {"not": {"user_id": "alice"}},
    {"metadata.topic": "bank"},
    {"user_id": {"in": ["alice", "bob"]}},
])
def test_filters_cannot_widen_a_scope(two_users: tuple[Memory, str, str],
                                      filters: dict[str, object]) -> None:
    mem, _, b = two_users
    found = {s for h in mem.search("bank PIN", user_id="alice", filters=filters)
             for s in h.memory.source_ids}
    found |= {r.id for r in mem.get_all(user_id="alice", filters=filters)}
    assert b not in found and not set(mem.get(b).source_ids) & found


def test_by_id_operations_respect_the_scope(two_users: tuple[Memory, str, str]) -> None:
    mem, _, b = two_users
    for call in (lambda: mem.get(b, user_id="alice"),
                 lambda: mem.update(b, "hacked", user_id="alice"),
                 lambda: mem.delete(b, user_id="alice"),
                 lambda: mem.history(b, user_id="alice")):
        with pytest.raises(NotFoundError):
            call()
    assert mem.get(b).text == "my bank PIN is 1234" and mem.get(b).version == 1


def test_bulk_operations_respect_the_scope(two_users: tuple[Memory, str, str]) -> None:
    mem, _, b = two_users
    mem.delete_all(user_id="alice")
    mem.forget(user_id="alice")
    assert mem.get(b).status == "active"
    assert len(mem.messages(user_id="bob")) == 1


def test_tenants_are_isolated(store: Store) -> None:
    with Memory(store=store, embedder=FakeEmbedder(), tenant="acme") as acme, \
            Memory(store=store, embedder=FakeEmbedder(), tenant="globex") as globex:
        r = acme.add("acme roadmap", user_id="u1")[0]
        assert globex.search("acme roadmap", user_id="u1") == []
        with pytest.raises(NotFoundError):
            globex.get(r.id)
        globex.forget(user_id="u1")
        assert acme.get(r.id).text == "acme roadmap"


@pytest.mark.embedded_only("a key is bound to one tenant (see test_remote.py)")
def test_a_tenant_view_shares_the_store_and_sees_only_its_tenant(mem: Memory) -> None:
    mine = mem.add("the vault code is 7731", user_id="alice")[0]
    other = mem.for_tenant("acme")
    assert other.tenant == "acme" and other.store is mem.store
    theirs = other.add("the vault code is 1200", user_id="alice")[0]
    assert [h.memory.id for h in other.search("vault code", user_id="alice", kinds="turn")] \
        == [theirs.id]
    with pytest.raises(NotFoundError):
        other.get(mine.id, user_id="alice")
    other.close()  # a view closes nothing: the store stays open for its owner
    assert [r.id for r in mem.get_all(user_id="alice")] == [mine.id]
    assert mem.for_tenant("acme").get(theirs.id).text == "the vault code is 1200"
