"""A real ``memlane serve`` in a subprocess on a free loopback port, for the server tests."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from memlane.auth import new_key
from memlane.store import open_store

from .conftest import env_with
from .test_cli import SCRIPT

RUNNING = re.compile(r"Uvicorn running on (http://\S+)")


def make_key(location: str, tenant: str, **options: Any) -> str:
    """A key for ``tenant`` kept in the store at ``location``; the secret token."""
    token, key = new_key(tenant, **options)
    store = open_store(location)
    try:
        store.put_key(key)
    finally:
        store.close()
    return token


def store_location(kind: str, request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    """A new store for a module's server: a fresh PostgreSQL database, or a SQLite file."""
    if kind == "postgres":
        from memlane.dev.postgres import fresh_database

        return fresh_database(request.getfixturevalue("postgres_server"))
    return str(tmp_path_factory.mktemp(name) / f"{name}.db")


def key_set(location: str) -> dict[str, str]:
    """The keys the server tests speak with: tenant acme's admin, whole-tenant, alice-only
    and read-only keys, and a key of tenant globex."""
    return {"admin": make_key(location, "acme", admin=True),
            "full": make_key(location, "acme"),
            "alice": make_key(location, "acme", users=["alice"]),
            "reader": make_key(location, "acme", read_only=True),
            "globex": make_key(location, "globex")}


class LiveServer:
    """``memlane --db LOCATION serve --port 0 ...`` with the fake embedder; ``url`` once it
    listens. Its log is collected (``log``) so that the pipe never fills."""

    def __init__(self, location: str, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 60) -> None:
        command = [SCRIPT, "--db", location, "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True,
                                     env=env_with(MEMLANE_EMBEDDER="fake", **(env or {})))
        self.lines: list[str] = []
        self.found = threading.Event()
        self.url = ""
        self.reader = threading.Thread(target=self.read_output, daemon=True)
        self.reader.start()
        if not self.found.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"the server did not start:\n{self.log}")

    def read_output(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = RUNNING.search(line)
            if found:
                self.url = found.group(1)
                self.found.set()
        self.found.set()  # it ended

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.reader.join(10)  # the log's end: the pipe closes with the process
            if self.proc.stderr is not None and not self.reader.is_alive():
                self.proc.stderr.close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(check: Any, timeout: float = 30, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout,
                          env=env_with(MEMLANE_EMBEDDER="fake", **(env or {})))


def error_of(response: httpx.Response) -> tuple[int, str]:
    """The status and error type of a failed response (and that it has the error shape)."""
    payload = response.json()
    assert set(payload) == {"error"} and {"type", "message"} <= set(payload["error"])
    assert "Traceback" not in response.text
    return response.status_code, payload["error"]["type"]


__all__: Sequence[str] = ["LiveServer", "error_of", "make_key", "run_cli", "wait_for"]
