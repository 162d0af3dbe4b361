"""What a search hit names and what the redundancy filter keeps, on every store."""

from __future__ import annotations

from memlane import Memory
from memlane.read.fusion import Fused
from memlane.read.search import thin

PEPPER = [
    {"role": "user", "name": "alice", "content": "I adopted a greyhound called Pepper."},
    {"role": "assistant", "content": "What a lovely name for a dog."},
    {"role": "user", "name": "alice", "content": "She sleeps on the sofa all day."},
]


def test_a_window_hit_names_the_turns_a_caller_can_act_on(mem: Memory) -> None:
    turns = mem.add(PEPPER, user_id="alice", session_id="s1")
    hits = mem.search("greyhound sofa", user_id="alice")
    whole = next(h for h in hits if len(h.memory.source_ids) == 3)
    assert whole.memory.kind == "window"
    assert whole.memory_ids == tuple(t.id for t in turns)
    assert whole.id == turns[2].id  # the turn the window was built for
    for hit in hits:
        shown = [mem.get(i, user_id="alice") for i in hit.memory_ids]
        assert tuple(s for t in shown for s in t.source_ids) == hit.memory.source_ids
    edited = mem.update(whole.id, "She sleeps on the sofa all afternoon.", user_id="alice")
    assert edited.kind == "turn" and edited.version == 2
    assert [e.op for e in mem.history(whole.id, user_id="alice")] == ["add", "update"]
    assert mem.delete(whole.id, user_id="alice").status == "deleted"
    assert all(whole.id not in h.memory_ids for h in mem.search("sofa", user_id="alice"))


def test_a_turn_hit_names_itself(mem: Memory) -> None:
    turns = mem.add(PEPPER, user_id="alice", session_id="s1")
    hit = mem.search("greyhound", user_id="alice", kinds=["turn"])[0]
    assert hit.memory_ids == (turns[0].id,) and hit.id == turns[0].id == hit.memory.id


def test_window_turns_resolve_inside_their_own_conversation(mem: Memory) -> None:
    park = mem.add([{"id": "m1", "content": "tulips in the park"}], user_id="alice",
                   session_id="s1")
    market = mem.add([{"id": "m1", "content": "tulips at the market"}], user_id="alice",
                     session_id="s2")
    mem.add([{"id": "m1", "content": "tulips at the market"}], user_id="bob", session_id="s2")
    hits = {h.text: h for h in mem.search("tulips market", user_id="alice")}
    assert hits["tulips at the market"].memory_ids == (market[0].id,)
    assert hits["tulips in the park"].memory_ids == (park[0].id,)


def test_hits_serialize_with_their_actionable_ids(mem: Memory) -> None:
    turns = mem.add(PEPPER, user_id="alice", session_id="s1")
    hit = mem.search("greyhound", user_id="alice")[0]
    data = hit.to_dict()
    assert data["id"] == hit.id and data["memory_ids"] == list(hit.memory_ids)
    assert data["memory"]["id"] == hit.memory.id and data["memory"]["kind"] == "window"
    assert set(hit.memory_ids) <= {t.id for t in turns}


def test_the_only_hit_holding_a_query_term_is_not_thinned_away(mem: Memory) -> None:
    mem.add([
        {"role": "user", "name": "Ann",
         "content": "Our garden roses bloomed, the garden roses are red."},
        {"role": "user", "name": "Ann",
         "content": "Unrelated: a zebra walked past the fence yesterday afternoon while we "
                    "were sitting outside with tea and biscuits."},
    ], user_id="ann", session_id="s1")
    hits = mem.search("garden roses zebra", user_id="ann")
    assert any("zebra" in h.text for h in hits)
    assert any("zebra" not in h.text for h in hits)


def _fused(*ids: str) -> list[Fused]:
    return [Fused(i, 1.0 - n / 10, {}) for n, i in enumerate(ids)]


def test_thin_drops_covered_results_unless_they_match_something_new() -> None:
    sources = {"a": ["1", "2"], "b": ["1", "2", "3"], "c": ["2", "3"], "d": ["4"]}
    fused = _fused("a", "b", "c", "d")
    assert [f.id for f in thin(fused, sources, 0.5)] == ["a", "d"]
    matched = {"a": {"rose"}, "b": {"rose"}, "c": {"rose", "zebra"}, "d": set()}
    kept = thin(fused, sources, 0.5, matched.__getitem__)
    assert [f.id for f in kept] == ["a", "c", "d"]
    assert [f.id for f in thin(fused, sources, None, matched.__getitem__)] == list("abcd")
    assert [f.id for f in thin(fused, sources, 0.5, matched.__getitem__, limit=2)] == ["a", "c"]
