"""Context packing: what a packed block shows, how it cites, and what it costs."""

from __future__ import annotations

import io
import re
from pathlib import Path

from memlane import FakeEmbedder, Memory
from memlane.cli import demo
from memlane.tokens import count_tokens

ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")


def chat(mem: Memory, ids: bool) -> None:
    for day in range(1, 7):
        lines = [f"day {day} we talked about gardening, tomatoes and the weather",
                 f"day {day} the tomatoes in the garden are growing",
                 f"day {day} and the weather stayed mild all week"]
        if day == 4:
            lines[1] = "I am allergic to peanuts, keep them out of every recipe"
        messages = [{"role": "user", "name": "ann", "content": text,
                     **({"id": f"D{day}:{n}"} if ids else {})} for n, text in enumerate(lines)]
        mem.add(messages, user_id="ann", session_id=f"s{day}",
                timestamp=f"2026-01-0{day}T10:00:00Z")


def test_context_shows_each_turn_once_cited_by_its_short_message_id(mem: Memory) -> None:
    chat(mem, ids=True)
    ctx = mem.context("peanuts in a recipe", user_id="ann", budget_tokens=200)
    assert not ctx.complete and ctx.tokens == count_tokens(ctx.text) <= 200
    assert "[D4:1] ann: I am allergic to peanuts" in ctx.text
    shown = [line for line in ctx.text.splitlines() if line.startswith("[")]
    assert len(shown) == len(set(shown)) == len(ctx.memories) > 3
    assert all(m.kind == "turn" for m in ctx.memories)
    assert ctx.citations == {m.source_ids[0]: list(m.source_ids) for m in ctx.memories}
    assert list(ctx.refs) == [m.source_ids[0] for m in ctx.memories]
    assert ctx.cited["D4:1"].text.startswith("I am allergic")
    times = [m.event_time for m in ctx.memories]
    assert times == sorted(times) and ctx.text.count("2026-01-04 10:00") == 1


def test_generated_ids_are_cited_by_number_and_map_to_real_memories(mem: Memory) -> None:
    chat(mem, ids=False)
    ctx = mem.context("peanuts recipe tomatoes", user_id="ann", budget_tokens=200)
    assert ULID.search(ctx.text) is None
    assert list(ctx.refs) == [str(n) for n in range(1, len(ctx.memories) + 1)]
    messages = {m.id for m in mem.messages(user_id="ann")}
    for ref, memory in ctx.cited.items():
        assert f"[{ref}] " in ctx.text
        assert mem.get(memory.id, user_id="ann").text == memory.text
        assert set(ctx.citations[ref]) <= messages


def test_whole_history_uses_the_same_layout(mem: Memory) -> None:
    chat(mem, ids=True)
    ctx = mem.context("anything", user_id="ann", budget_tokens=1000)
    assert ctx.complete and len(ctx.memories) == 18 and ctx.tokens <= 1000
    assert ctx.refs[0] == "D1:0" and ctx.text.count("2026-01-0") == 6


def test_the_demo_context_keeps_the_diet_the_dinner_needs(tmp_path: Path) -> None:
    with Memory(tmp_path / "demo.db") as mem:  # the default embedder, as `memlane demo` runs
        sample = demo.ingest(mem)
        ctx = demo.context(mem, sample)
        assert not ctx.complete and ctx.tokens <= 300
        assert "allergic to peanuts" in ctx.text
        assert "vegetarian dinner" in ctx.text and "doesn't eat eggs" in ctx.text
        assert ULID.search(ctx.text) is None
        messages = {m.id for m in mem.messages(user_id=sample["user_id"])}
        for ref, memory in ctx.cited.items():
            assert f"[{ref}] " in ctx.text
            assert mem.get(memory.id, user_id=sample["user_id"]) == memory
            assert set(ctx.citations[ref]) <= messages
        out = io.StringIO()
        demo.run(mem, out)
        assert "allergic to peanuts" in out.getvalue().split("context for:")[1]


def test_context_on_the_fake_embedder_fits_tiny_budgets(tmp_path: Path) -> None:
    with Memory(tmp_path / "m.db", embedder=FakeEmbedder()) as mem:
        chat(mem, ids=True)
        ctx = mem.context("peanuts", user_id="ann", budget_tokens=60)
        assert ctx.tokens <= 60 and ctx.text.startswith("<memories>")
