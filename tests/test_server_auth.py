"""Keys before bodies, and failed keys counted per client address, on live servers on
loopback: a request without a valid key is refused (401) before its body is read or
parsed, and an address that keeps presenting bad keys is refused (429) for a while."""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from memlane import FakeEmbedder, Memory
from memlane.server import Settings, create_app
from memlane.server.lockout import Failures, client_of
from memlane.store import SQLiteStore, open_store

from .live_server import LiveServer, error_of, make_key, run_cli, wait_for

JSON = "application/json"
DECLARED = 1_000_000
"""A body's declared length: below the size limit, far more than the request sends."""


def revoked_key(location: str) -> str:
    token = make_key(location, "acme")
    store = open_store(location)
    try:
        key_id = next(k.id for k in store.list_keys("acme") if token.startswith(k.prefix))
    finally:
        store.close()
    assert run_cli("--db", location, "keys", "revoke", key_id).returncode == 0
    return token


def answer_before_the_body(url: str, method: str, path: str, token: str | None,
                           media: str = JSON, timeout: float = 10) -> tuple[int, bytes]:
    """Send a request's head and the first bytes of a body of ``DECLARED`` bytes, and no
    more; the status and body of the answer (a timeout if the server waits for the rest)."""
    parts = urlsplit(url)
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Type: {media}",
            f"Content-Length: {DECLARED}"]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"messages": "' + b"x" * 1000)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed without an answer: {data!r}"
            data += chunk
        header, _, body = data.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (line.partition(": ") for line in lines[1:])
                      if k.lower() == "content-length")
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed in the middle of the answer"
            body += chunk
    return int(lines[0].split()[1]), body


@pytest.fixture(scope="module")
def location(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("auth") / "auth.db")
    open_store(path).close()
    return path


def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
        location: str) -> None:
    revoked = revoked_key(location)
    with LiveServer(location, "--rate", "0") as server:
        for method, path, token, media in (
                ("POST", "/v1/memories", None, JSON),
                ("POST", "/v1/memories", "mlk_not-a-key", JSON),
                ("POST", "/v1/search", revoked, JSON),
                ("PATCH", "/v1/memories/01M8ZZZZZZZZZZZZZZZZZZZZZZ", "mlk_nope", JSON),
                ("POST", "/v1/import", "mlk_nope", "application/x-ndjson"),
                ("POST", "/mcp", "mlk_nope", JSON)):
            try:
                status, body = answer_before_the_body(server.url, method, path, token, media)
            except TimeoutError:
                pytest.fail(f"{method} {path}: the server waited for the body of a request "
                            f"without a valid key")
            assert status == 401, (path, body)
            assert b"AuthenticationError" in body


def test_without_a_valid_key_a_bad_body_is_401_not_a_schema_error(location: str) -> None:
    with LiveServer(location, "--rate", "0") as server:
        for token in (None, "mlk_not-a-key"):
            with server.client(token) as c:
                for answer in (
                        c.post("/v1/search", content=b"{not json",
                               headers={"content-type": JSON}),
                        c.post("/v1/search", json={"query": 42, "limit": "many", "nope": 1}),
                        c.post("/v1/memories", json=[]),
                        c.patch("/v1/memories/x", json={"text": ["not", "text"]}),
                        c.get("/v1/memories", params={"limit": "many", "nope": "1"})):
                    assert error_of(answer) == (401, "AuthenticationError"), answer.text
                    for leak in ("query", "limit", "nope", "messages", "text", "body"):
                        assert leak not in answer.json()["error"]["message"]
        with server.client(make_key(location, "acme")) as keyed:  # a key: its errors, as before
            assert error_of(keyed.post("/v1/search", content=b"{not json",
                                       headers={"content-type": JSON})) == (
                422, "InvalidInputError")


@contextmanager
def in_process(settings: Settings) -> Iterator[str]:
    """The app of ``settings`` served by uvicorn on a free port of 127.0.0.1, in a thread."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started or not thread.is_alive(), 30) and server.started
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def from_address(url: str, address: str, token: str | None = None) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 is loopback)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30,
                        transport=httpx.HTTPTransport(local_address=address))


def test_an_address_that_keeps_failing_is_refused_for_a_while(tmp_path: Path) -> None:
    location = str(tmp_path / "lockout.db")
    SQLiteStore(location).close()
    good = make_key(location, "acme")
    settings = Settings(open_memory=lambda: Memory(store=SQLiteStore(location),
                                                   embedder=FakeEmbedder()),
                        rate=0, auth_failures=3, auth_window=3.0)
    with in_process(settings) as url, from_address(url, "127.0.0.1", good) as c, \
            from_address(url, "127.0.0.1") as anon, \
            from_address(url, "127.0.0.1", "mlk_guess") as guess, \
            from_address(url, "127.0.0.2", good) as neighbour:
        for _ in range(30):  # a valid key is never counted
            assert c.get("/v1/key").status_code == 200
        for _ in range(5):  # nor is a request without a key (nothing to guess)
            assert error_of(anon.get("/v1/stats")) == (401, "AuthenticationError")
        for _ in range(3):
            assert error_of(guess.get("/v1/stats")) == (401, "AuthenticationError")
        for client in (guess, c, anon):  # the address is locked out, valid key or not
            refused = client.get("/v1/key")
            assert error_of(refused) == (429, "RateLimitedError")
            assert int(refused.headers["retry-after"]) >= 1
            assert 0 < refused.json()["error"]["retry_after"] <= 3.0
        mcp = c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert error_of(mcp) == (429, "RateLimitedError")
        assert c.get("/healthz").status_code == 200  # paths without keys still answer
        if sys.platform.startswith("linux"):  # where all of 127.0.0.0/8 is loopback
            assert neighbour.get("/v1/key").status_code == 200  # another address is not locked
        time.sleep(refused.json()["error"]["retry_after"] + 0.1)
        assert c.get("/v1/key").status_code == 200
        assert error_of(guess.get("/v1/stats")) == (401, "AuthenticationError")


def test_the_default_limit_of_failed_keys_applies_to_memlane_serve(location: str) -> None:
    limit = next(f.default for f in dataclasses.fields(Settings) if f.name == "auth_failures")
    assert isinstance(limit, int) and 5 <= limit <= 100
    with LiveServer(location, "--rate", "0") as server, server.client("mlk_guess") as guess:
        codes = [guess.get("/v1/stats").status_code for _ in range(limit + 1)]
        assert codes == [401] * limit + [429]
        assert error_of(guess.get("/v1/stats")) == (429, "RateLimitedError")


def test_refused_keys_are_counted_in_windows() -> None:
    now = [0.0]
    failures = Failures(limit=3, window=10, clock=lambda: now[0])
    for at in (0, 5, 11, 12):  # the window of the first two ended at 10
        now[0] = at
        failures.failed("10.0.0.1")
        assert failures.wait("10.0.0.1") == 0
    now[0] = 13
    failures.failed("10.0.0.1")  # the third of the window that began at 11
    assert failures.wait("10.0.0.1") == 10 and failures.wait("10.0.0.2") == 0
    now[0] = 20
    assert failures.wait("10.0.0.1") == 3
    now[0] = 23
    assert failures.wait("10.0.0.1") == 0
    failures.failed("10.0.0.1")  # counting starts again
    assert failures.wait("10.0.0.1") == 0


def test_an_ipv6_client_counts_as_its_network() -> None:
    def of(host: str) -> str:
        return client_of({"client": (host, 1234)})

    assert of("2001:db8::1") == of("2001:db8::ffff:1") == "2001:db8::/64"
    assert of("2001:db8:0:1::1") != of("2001:db8::1")
    assert of("::ffff:192.0.2.7") == of("192.0.2.7") == "192.0.2.7"
    assert client_of({"client": None}) == ""


def test_memlane_serve_takes_the_client_address_from_the_connection(location: str) -> None:
    """Without --forwarded-allow-ips, X-Forwarded-For names no one: a caller on the
    server's host cannot dodge the limit by naming other addresses."""
    with LiveServer(location, "--rate", "0", "--auth-failures", "3") as server, \
            server.client("mlk_guess") as guess:
        codes = [guess.get("/v1/stats", headers={"X-Forwarded-For": f"10.0.0.{n}"})
                 .status_code for n in range(4)]
        assert codes == [401, 401, 401, 429]


def test_memlane_serve_trusts_the_proxies_it_is_told_of(location: str) -> None:
    with LiveServer(location, "--rate", "0", "--auth-failures", "2",
                    "--forwarded-allow-ips", "127.0.0.1") as server, \
            server.client("mlk_guess") as guess:
        behind = {"X-Forwarded-For": "10.0.0.1"}
        assert [guess.get("/v1/stats", headers=behind).status_code
                for _ in range(3)] == [401, 401, 429]
        other = guess.get("/v1/stats", headers={"X-Forwarded-For": "10.0.0.2"})
        assert other.status_code == 401  # another client behind the same proxy


def test_a_read_only_store_refuses_writes_without_naming_its_file(tmp_path: Path) -> None:
    path = tmp_path / "private-name.db"
    SQLiteStore(path).close()
    key = make_key(str(path), "acme")
    with LiveServer(str(path), "--read-only", "--rate", "0") as server, \
            server.client(key) as client:
        answer = client.post("/v1/memories", json={"messages": "hello", "user_id": "u"})
        assert error_of(answer) == (403, "ReadOnlyError")
        message = answer.json()["error"]["message"]
        assert "read-only" in message and "private-name" not in message
        assert str(tmp_path) not in message
