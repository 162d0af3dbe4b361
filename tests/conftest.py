from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memlane import FakeEmbedder, Memory
from memlane.store import InMemoryStore, SQLiteStore, Store

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

StoreFactory = Callable[[], Store]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the user's real data directory."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("MEMLANE_DB", raising=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the whole test session (one per test worker)."""
    from memlane.dev.postgres import server

    with server() as uri:
        yield uri


def new_store(kind: str, request: pytest.FixtureRequest, path: Path) -> Store:
    """An empty store of one kind (a SQLite one at ``path``)."""
    if kind == "memory":
        return InMemoryStore()
    if kind == "postgres":
        from memlane.dev.postgres import fresh_database
        from memlane.store.postgres import PostgresStore

        return PostgresStore(fresh_database(request.getfixturevalue("postgres_server")))
    return SQLiteStore(path)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of empty stores of one kind; the conformance suite runs on every kind."""
    made: list[Store] = []

    def factory() -> Store:
        store = new_store(request.param, request, tmp_path / f"store-{len(made)}.db")
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()


@pytest.fixture(scope="session")
def memlane_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One ``memlane serve`` (fake embedder, SQLite) for the session: its URL and an admin
    key of the tenant ``default``."""
    from .live_server import LiveServer, make_key

    location = str(tmp_path_factory.mktemp("served") / "served.db")
    SQLiteStore(location).close()
    token = make_key(location, "default", admin=True)
    with LiveServer(location, "--rate", "0") as server:
        yield server.url, token


@pytest.fixture(params=["memory", "sqlite", "postgres", "remote"])
def mem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Memory]:
    """A memory on every kind of store, and through the remote client to a live server
    (emptied for each test); a test marked ``embedded_only`` skips the remote one."""
    if request.param == "remote":
        marker = request.node.get_closest_marker("embedded_only")
        if marker is not None:
            pytest.skip(f"embedded only: {marker.args[0]}")
        url, token = request.getfixturevalue("memlane_server")
        memory = Memory(url, api_key=token)
        memory.reset()
    else:
        memory = Memory(store=new_store(request.param, request, tmp_path / "store-0.db"),
                        embedder=FakeEmbedder())
    yield memory
    memory.close()


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def run_processes(target: Callable[..., None], args: list[tuple[Any, ...]],
                  timeout: float = 120) -> list[int | None]:
    """Run ``target`` in one fresh (spawned) process per argument tuple; their exit codes."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    return [p.exitcode for p in procs]
