"""Several processes writing one SQLite file: no errors, no lost or doubled writes."""

from __future__ import annotations

from pathlib import Path

from memlane import FakeEmbedder, Memory

from .conftest import run_processes

WORKERS = 4
ADDS = 25


def _writer(path: str, worker: int) -> None:
    with Memory(path, embedder=FakeEmbedder()) as mem:
        for i in range(ADDS):
            mem.add([{"content": f"worker {worker} message {i} part {p}"} for p in range(3)],
                    user_id=f"user-{i % 3}", session_id=f"w{worker}")
            # every worker also retries one shared add: it must be stored once
            mem.add("shared announcement", user_id="everyone", idempotency_key=f"shared-{i}")
            mem.search(f"message {i}", user_id=f"user-{i % 3}")


def test_concurrent_processes_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Memory(path, embedder=FakeEmbedder()).close()
    assert run_processes(_writer, [(path, w) for w in range(WORKERS)]) == [0] * WORKERS
    with Memory(path, embedder=FakeEmbedder()) as mem:
        total = sum(len(mem.get_all(user_id=f"user-{u}", limit=1000)) for u in range(3))
        assert total == WORKERS * ADDS * 3
        assert len(mem.get_all(user_id="everyone", limit=1000)) == ADDS
        texts = {r.text for u in range(3) for r in mem.get_all(user_id=f"user-{u}", limit=1000)}
        assert len(texts) == WORKERS * ADDS * 3
        hits = mem.search("worker 3 message 7 part 1", user_id="user-1", recipe="bm25")
        assert hits[0].text == "worker 3 message 7 part 1"
