"""A message longer than a passage: kept verbatim, searched passage by passage.

Every kind of store, and through a live server: the passages cite their message and give
their span in it, search finds a part deep inside the message and names the message's turn,
a change to the turn cuts its passages again, and a delete takes them along.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memlane import Memory, SearchHit
from memlane.errors import InvalidInputError
from memlane.kinds import PASSAGE, TURN, WINDOW
from memlane.read.search import SearchConfig
from memlane.write.ingest import MAX_MESSAGE_CHARS
from memlane.write.passages import ELLIPSIS, PART, PASSAGE_CHARS, SPAN


def _report(topic: str, paragraphs: int = 12) -> str:
    """A long message: paragraphs of prose, a fenced code block in the middle."""
    parts = [f"Paragraph {i} about {topic} goes on with ordinary words to fill the line "
             f"until it is long enough to matter for the passage size here. " * 3
             for i in range(paragraphs)]
    parts.insert(paragraphs // 2, "```python\ndef handler(event):\n    return event\n```")
    return "\n\n".join(parts)


def test_a_long_message_is_kept_whole_and_cut_into_passages(mem: Memory) -> None:
    content = _report("gardening") + "\n\nThe zeppelin hangar opens on Thursday."
    assert len(content) > 3 * PASSAGE_CHARS
    mem.add([{"role": "assistant", "content": content, "id": "m1"}], user_id="u")
    assert [m.content for m in mem.messages(user_id="u")] == [content]
    turn, = mem.get_all(user_id="u")
    assert turn.kind == TURN and turn.text == content
    parts = mem.get_all(user_id="u", kinds=[PASSAGE])
    assert len(parts) > 3
    assert sorted(p.metadata[PART] for p in parts) == list(range(len(parts)))
    for part in parts:
        start, end = part.metadata[SPAN]
        assert content[start:end] == part.text
        assert part.source_ids == ("m1",) and len(part.text) <= PASSAGE_CHARS
    covered = "".join(p.text for p in sorted(parts, key=lambda p: p.metadata[PART]))
    assert "".join(covered.split()) == "".join(content.split())


def test_search_finds_the_end_of_a_long_message_and_names_its_turn(mem: Memory) -> None:
    content = _report("gardening") + "\n\nThe zeppelin hangar opens on Thursday."
    mem.add([{"role": "assistant", "content": "a short answer about plants", "id": "q"},
             {"role": "user", "content": content, "id": "a"}], user_id="u")
    turn = next(t for t in mem.get_all(user_id="u") if t.source_ids == ("a",))
    hit = mem.search("zeppelin hangar", user_id="u", limit=1)[0]
    assert hit.memory.kind == PASSAGE and "zeppelin hangar" in hit.text
    assert hit.memory_ids == (turn.id,) and hit.id == turn.id
    assert len(hit.text) <= PASSAGE_CHARS


def test_a_window_shows_a_long_message_by_its_first_passage(mem: Memory) -> None:
    content = _report("rivers")
    mem.add([{"role": "user", "content": "tell me about rivers", "id": "q"},
             {"role": "assistant", "content": content, "id": "a"},
             {"role": "user", "content": "thanks, and lakes?", "id": "r"}], user_id="u")
    windows = mem.get_all(user_id="u", kinds=[WINDOW])
    last = next(w for w in windows if w.source_ids == ("q", "a", "r"))
    assert ELLIPSIS in last.text and len(last.text) < 2 * PASSAGE_CHARS
    assert last.text.endswith("thanks, and lakes?")


def test_changing_a_long_turn_cuts_it_again_and_deleting_it_takes_its_passages(
        mem: Memory) -> None:
    mem.add([{"role": "user", "content": _report("tea"), "id": "a"}], user_id="u")
    turn, = mem.get_all(user_id="u")
    before = {p.id for p in mem.get_all(user_id="u", kinds=[PASSAGE])}
    mem.update(turn.id, _report("coffee", paragraphs=6) + "\n\nA walrus drinks espresso.",
               user_id="u")
    after = mem.get_all(user_id="u", kinds=[PASSAGE])
    assert before.isdisjoint(p.id for p in after)
    assert all("tea" not in p.text for p in after)
    assert "walrus" in mem.search("walrus espresso", user_id="u", limit=1)[0].text
    mem.delete(turn.id, user_id="u")
    assert mem.get_all(user_id="u", kinds=[PASSAGE]) == []
    assert mem.search("walrus espresso", user_id="u") == []


def test_a_short_turn_updated_to_a_long_text_gains_passages(mem: Memory) -> None:
    mem.add("a short note", user_id="u")
    turn, = mem.get_all(user_id="u")
    assert mem.get_all(user_id="u", kinds=[PASSAGE]) == []
    mem.update(turn.id, _report("maps"), user_id="u")
    assert len(mem.get_all(user_id="u", kinds=[PASSAGE])) > 1


def test_the_message_limit_is_a_mebibyte(mem: Memory) -> None:
    word = "lorem ipsum dolor sit amet. "
    biggest = (word * (MAX_MESSAGE_CHARS // len(word) + 1))[:MAX_MESSAGE_CHARS - 9] + " aardvark"
    assert len(biggest) == MAX_MESSAGE_CHARS
    mem.add([{"content": biggest, "id": "big"}], user_id="u")
    assert mem.messages(user_id="u")[0].content == biggest
    assert "aardvark" in mem.search("aardvark", user_id="u", limit=1)[0].text
    with pytest.raises(InvalidInputError, match="the limit is 1,048,576"):
        mem.add([{"content": biggest + "!"}], user_id="v")
    assert mem.messages(user_id="v") == []


def test_a_context_shows_a_long_message_cut_unless_the_whole_history_fits(
        mem: Memory) -> None:
    content = _report("bridges")
    mem.add([{"role": "assistant", "content": content, "id": "a"}], user_id="u")
    whole = mem.context("bridges", user_id="u", budget_tokens=20_000)
    assert whole.complete and content.split("\n\n")[-1].strip() in whole.text
    small = mem.context("bridges", user_id="u", budget_tokens=600)
    assert not small.complete and small.tokens <= 600 and small.memories


def test_the_default_search_weighs_what_the_assistant_said_below_what_the_user_said(
        mem: Memory) -> None:
    said = "The lighthouse keeper paints the railing blue every spring. " * 30
    mem.add([{"role": "assistant", "content": said, "id": "a"}], user_id="u", session_id="1")
    mem.add([{"role": "user", "content": said, "id": "b"}], user_id="u", session_id="2")
    def best(hits: list[SearchHit], score: Callable[[SearchHit], float],
             ) -> dict[str | None, float]:
        top: dict[str | None, float] = {}
        for hit in hits:
            top[hit.memory.role] = max(top.get(hit.memory.role, 0.0), score(hit))
        return top

    found = mem.search("lighthouse railing", user_id="u", kinds=["passage"], limit=40,
                       explain=True)
    weighed = best(found, lambda h: h.score)
    similar = best(found, lambda h: h.explain["dense"].raw_score if h.explain else 0.0)
    assert weighed["assistant"] < weighed["user"]
    assert similar["assistant"] == pytest.approx(similar["user"])


def test_role_weights_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="role weights"):
        SearchConfig(role_weights={"assistant": 1.5})
