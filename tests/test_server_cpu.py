"""A serving process runs each matrix product on one BLAS thread (its parallelism is its
requests), and gives the process its BLAS threads back when it stops."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from threadpoolctl import threadpool_info

from memlane import FakeEmbedder, Memory
from memlane.server.app import create_app
from memlane.server.settings import Settings


def blas_threads() -> list[int]:
    return [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blas_runs_on_one_thread_while_serving_and_on_its_own_after(tmp_path: Path) -> None:
    settings = Settings(open_memory=lambda: Memory(tmp_path / "cpu.db",
                                                   embedder=FakeEmbedder()),
                        auth=False)
    before = blas_threads()
    if os.cpu_count() == 1 or not before or 1 in before:
        pytest.skip("BLAS runs on one thread on this machine anyway")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        added = httpx.post(f"{url}/v1/memories", json={"messages": "I like tea",
                                                        "user_id": "u"})
        assert added.status_code == 200
        found = httpx.post(f"{url}/v1/search", json={"query": "tea", "user_id": "u"})
        assert found.json()["hits"]
        assert set(blas_threads()) == {1}
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive()
    assert blas_threads() == before
