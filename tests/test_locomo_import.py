"""Importing a LoCoMo-format file: the turns of several sessions are embedded in one call
ahead of their adds, which changes nothing that is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memlane import FakeEmbedder, Memory
from memlane.embed.base import Embedder, EmbedKind, Matrix
from memlane.exchange import locomo
from memlane.write.ingest import MAX_MESSAGE_CHARS


class Counting(Embedder):
    """The test embedder behind the shared cache, recording the texts of every model call."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = FakeEmbedder(cache_size=0)
        self.model_id, self.dim = self.inner.model_id, self.inner.dim
        self.calls: list[list[str]] = []

    def _embed(self, texts: list[str], kind: EmbedKind) -> Matrix:
        self.calls.append(list(texts))
        return self.inner.embed(texts, kind)


def sample(sessions: list[list[str]]) -> list[dict[str, Any]]:
    conversation: dict[str, Any] = {"speaker_a": "Ann", "speaker_b": "Ben"}
    for n, texts in enumerate(sessions, 1):
        conversation[f"session_{n}_date_time"] = f"1:56 pm on {n} May, 2023"
        conversation[f"session_{n}"] = [
            {"speaker": ("Ann", "Ben")[i % 2], "dia_id": f"D{n}:{i + 1}", "text": text}
            for i, text in enumerate(texts)]
    return [{"sample_id": "conv-x", "conversation": conversation, "qa": []}]


def stored(mem: Memory) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(m.kind, m.text, m.source_ids) for m in
            sorted(mem.get_all(user_id="conv-x", limit=1000), key=lambda m: m.source_ids)]


def test_sessions_are_embedded_together_ahead_and_stored_as_added_one_by_one(
        tmp_path: Path) -> None:
    sessions = [[f"session {n} turn {i} about topic {n * i}" for i in range(n + 2)]
                for n in range(1, 6)]
    conversations = locomo.parse(sample(sessions))
    embedder = Counting()
    ahead = Memory(tmp_path / "ahead.db", embedder=embedder)
    counts = locomo.ingest(ahead, conversations)
    assert counts == {"conversations": 1, "turns": 25, "memories": 25, "rejected": [],
                      "stopped": False}
    assert len(embedder.calls) == 1 and len(embedder.calls[0]) == 25  # one call, all turns
    one_by_one = Memory(tmp_path / "plain.db", embedder=FakeEmbedder())
    for session in conversations[0].sessions:
        one_by_one.add(session.messages, user_id="conv-x",
                       session_id=f"session_{session.number}", timestamp=session.time)
    assert stored(ahead) == stored(one_by_one)
    found = [[(h.memory.text, round(h.score, 6)) for h in mem.search("topic 8", user_id="conv-x")]
             for mem in (ahead, one_by_one)]
    assert found[0] and found[0] == found[1]
    ahead.close()
    one_by_one.close()


def test_sessions_go_ahead_in_groups_of_whole_sessions(tmp_path: Path) -> None:
    sizes = [300, 200, 100, 600]
    conversations = locomo.parse(sample([[f"s{n} t{i}" for i in range(size)]
                                         for n, size in enumerate(sizes)]))
    embedder = Counting()
    mem = Memory(tmp_path / "m.db", embedder=embedder)
    locomo.ingest(mem, conversations)
    mem.close()
    assert [len(call) for call in embedder.calls] == [500, 100, 600]  # AHEAD = 512 at most


def test_a_session_the_add_refuses_comes_after_the_sessions_before_it(tmp_path: Path) -> None:
    conversations = locomo.parse(sample([["fine"], ["x" * (MAX_MESSAGE_CHARS + 1)], ["later"]]))
    mem = Memory(tmp_path / "m.db", embedder=FakeEmbedder())
    counts = locomo.ingest(mem, conversations, on_error="stop")
    assert counts["stopped"] and "limit" in counts["rejected"][0]["reason"]
    assert [text for kind, text, _ in stored(mem) if kind == "turn"] == ["fine"]
    mem.close()
