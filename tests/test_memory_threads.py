"""The threads a Memory starts (the retrievers' pool, the background job workers) are its
own: its tenant views share them, and closing the Memory, not a view, stops them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from memlane import FakeEmbedder, Memory
from memlane.llm import ScriptedLLM, replay


def _started(before: set[threading.Thread], name: str) -> list[threading.Thread]:
    """Threads of that name started since ``before`` and still running."""
    return [t for t in threading.enumerate()
            if t not in before and t.name.startswith(name) and t.is_alive()]


def test_the_owner_stops_the_search_threads_and_a_view_closes_nothing() -> None:
    before = set(threading.enumerate())
    mem = Memory(":memory:", embedder=FakeEmbedder())
    mem.add("the vault code is 7731", user_id="alice")
    view = mem.for_tenant("acme")
    view.add("the vault code is 1200", user_id="alice")
    assert [h.text for h in view.search("vault code", user_id="alice")] == [
        "the vault code is 1200"]
    started = _started(before, "memlane-retriever")
    assert started  # hybrid search runs its retrievers side by side
    view.close()
    assert [h.text for h in mem.search("vault code", user_id="alice")] == [
        "the vault code is 7731"]
    assert all(t.is_alive() for t in started)  # the view shared the pool, and left it
    mem.close()
    assert _started(before, "memlane-retriever") == []


def _ended(before: set[threading.Thread], name: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _started(before, name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_closing_the_owner_stops_the_job_workers_of_its_views(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    answer = threading.Event()

    def held(messages: list[dict[str, str]], name: str) -> str:
        assert answer.wait(30)
        return '{"facts": []}'

    mem = Memory(tmp_path / "m.db", embedder=FakeEmbedder(), llm=ScriptedLLM(held))
    view = mem.for_tenant("acme")
    view.add("I live in Oslo.", user_id="alice", infer="background")
    assert _started(before, "memlane-jobs")
    view.close()
    assert _started(before, "memlane-jobs")  # a view closes nothing
    answer.set()
    mem.close()
    assert _started(before, "memlane-jobs") == []
    with Memory(tmp_path / "m.db", embedder=FakeEmbedder()) as after:
        assert [j.status for j in after.for_tenant("acme").jobs()] == ["done"]


def test_a_job_worker_ends_when_its_tenant_has_no_jobs_left(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with Memory(tmp_path / "m.db", embedder=FakeEmbedder(),
                llm=ScriptedLLM(replay([{"facts": []}]))) as mem:
        for city in ("Oslo", "Lima", "Rome"):
            mem.add(f"I live in {city}.", user_id="alice", infer="background")
            assert mem.wait_for_jobs(timeout=30)
            assert _ended(before, "memlane-jobs")  # idle: no thread polls the store
        assert [j.status for j in mem.jobs()] == ["done"] * 3
        racing = [threading.Thread(target=mem.add, args=(f"note {i}",),
                                   kwargs={"user_id": "bob", "infer": "background"})
                  for i in range(8)]
        for t in racing:
            t.start()
        for t in racing:
            t.join()
        assert mem.wait_for_jobs(timeout=30)  # no job was left without a worker
        assert [j.status for j in mem.jobs()] == ["done"] * 11
        assert _ended(before, "memlane-jobs")


def test_the_servers_postgres_pool_covers_every_thread_that_reads() -> None:
    from memlane.cli.serve import pool_size
    from memlane.read.search import RETRIEVER_THREADS

    for threads in (1, 8, 32):
        # request and MCP tool threads, the shared retriever threads of every search, the
        # server's job runner and a background job worker
        assert pool_size(threads) >= threads + RETRIEVER_THREADS + 2
