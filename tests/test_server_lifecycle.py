"""The server's life: shutdown loses no acknowledged write, background jobs run in it, and
two server processes share one PostgreSQL database safely."""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memlane import FakeEmbedder, Memory
from memlane.llm.fake import FakeOpenAIServer
from memlane.store import WriteBatch, open_store
from memlane.timeutil import utcnow
from memlane.types import Scope
from memlane.write.infer import new_job

from .live_server import LiveServer, make_key, wait_for
from .test_llm_write_path import rule_model


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        from memlane.dev.postgres import fresh_database

        return fresh_database(request.getfixturevalue("postgres_server"))
    return str(tmp_path / "life.db")


def _load(server: LiveServer, token: str, user: str, acked: list[str],
          failures: list[str], go: threading.Event) -> None:
    """Add until the server stops answering; keep the ids of every acknowledged add."""
    with server.client(token) as c:
        go.wait()
        for n in itertools.count():
            try:
                response = c.post("/v1/memories", json={"messages": f"{user} note {n}",
                                                        "user_id": user})
            except httpx.TransportError:
                return  # the server is gone: nothing was acknowledged
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text}")
                return
            acked.extend(m["id"] for m in response.json()["memories"])


def test_sigterm_mid_load_loses_no_acknowledged_add(location: str) -> None:
    open_store(location).close()
    token = make_key(location, "acme")
    server = LiveServer(location, "--rate", "0")
    acked: list[str] = []
    failures: list[str] = []
    go = threading.Event()
    loaders = [threading.Thread(target=_load, args=(server, token, f"user{i}", acked,
                                                    failures, go)) for i in range(6)]
    for loader in loaders:
        loader.start()
    go.set()
    assert wait_for(lambda: len(acked) >= 30, timeout=60)
    # uvicorn finishes the requests in flight, runs the shutdown (the memory is closed),
    # then ends by the signal it was sent, as service managers expect
    assert server.stop() in (0, -signal.SIGTERM), server.log
    assert "Application shutdown complete" in server.log
    for loader in loaders:
        loader.join(60)
    assert "Traceback" not in server.log and failures == [], failures
    with Memory(location, embedder=FakeEmbedder(), tenant="acme") as mem:
        stored = {r.id for r in mem.store.get("acme", acked)}
    assert len(acked) >= 30 and stored == set(acked)


def test_background_jobs_run_in_the_server_for_every_tenant(location: str) -> None:
    with Memory(location, embedder=FakeEmbedder(), tenant="globex") as mem:
        turns = mem.add("I moved to Porto.", user_id="gina")  # no LLM here
        mem.store.write(WriteBatch(scope=Scope("globex", "gina"),
                                   jobs=[new_job(turns, "left-over", utcnow())]))
    acme, globex = make_key(location, "acme"), make_key(location, "globex")
    with FakeOpenAIServer(rule_model) as llm, LiveServer(
            location, env={"MEMLANE_LLM_MODEL": "fake-model",
                           "MEMLANE_LLM_BASE_URL": llm.base_url}) as server, \
            server.client(acme) as a, server.client(globex) as g:
        added = a.post("/v1/memories", json={"messages": "I moved to Lisbon.",
                                             "user_id": "alice", "infer": "background"})
        assert added.status_code == 200 and [m["kind"] for m in added.json()["memories"]] \
            == ["turn"]

        def done(client: httpx.Client) -> bool:
            jobs = client.get("/v1/jobs").json()["jobs"]
            return bool(jobs) and all(j["status"] == "done" for j in jobs)

        assert wait_for(lambda: done(a), timeout=30), a.get("/v1/jobs").json()
        assert wait_for(lambda: done(g), timeout=30), g.get("/v1/jobs").json()  # left over
        facts = a.get("/v1/memories", params={"user_id": "alice", "kinds": "fact"}).json()
        assert [f["text"] for f in facts["memories"]] == ["user lives in Lisbon."]
        porto = g.get("/v1/memories", params={"user_id": "gina", "kinds": "fact"}).json()
        assert [f["text"] for f in porto["memories"]] == ["user lives in Porto."]


@pytest.fixture
def postgres_location(postgres_server: str) -> Iterator[str]:
    from memlane.dev.postgres import fresh_database

    yield fresh_database(postgres_server)


def _work(server: LiveServer, token: str, user: str, acked: dict[str, str],
          failures: list[str], worker: int) -> None:
    with server.client(token) as c:
        for n in range(15):
            text = f"{user} fact {n} from worker {worker}"
            response = c.post("/v1/memories", json={"messages": text,
                                                    "user_id": user, "session_id": "s"})
            if response.status_code != 200:
                failures.append(response.text)
                continue
            for m in response.json()["memories"]:
                acked[m["id"]] = user
            found = c.post("/v1/search", json={"query": f"fact {n}", "user_id": user})
            if found.status_code != 200 or not found.json()["hits"]:
                failures.append(found.text)


def test_two_server_processes_on_one_postgres_database(postgres_location: str) -> None:
    open_store(postgres_location).close()
    token = make_key(postgres_location, "acme")
    with LiveServer(postgres_location, "--rate", "0") as one, \
            LiveServer(postgres_location, "--rate", "0") as two:
        acked: dict[str, str] = {}
        failures: list[str] = []
        # both processes write to the same conversations at once
        workers = [threading.Thread(target=_work, args=(server, token, f"u{i % 3}", acked,
                                                        failures, i))
                   for i, server in enumerate([one, two] * 3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        assert failures == []
        assert len(acked) == 6 * 15
        for server in (one, two):
            with server.client(token) as c:
                for user in ("u0", "u1", "u2"):
                    listed = c.get("/v1/memories", params={"user_id": user, "limit": 1000})
                    ids = {m["id"] for m in listed.json()["memories"]}
                    assert ids == {i for i, u in acked.items() if u == user}
                    messages = c.get("/v1/messages", params={"user_id": user}).json()
                    assert len(messages["messages"]) == 30
