"""The remote client (``Memory("http://...")``) against live servers on loopback: how it
opens, keys and tenants, every error class, connection failures and retries, AsyncMemory
and the CLI over HTTP. (The library's own tests run on it too: the ``mem`` fixture.)"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import io
import json
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from memlane import AsyncMemory, FakeEmbedder, Memory, errors
from memlane.llm import ScriptedLLM
from memlane.remote import RemoteMemory
from memlane.remote.errors import error_from
from memlane.server.errors import internal, memlane_error
from memlane.store import SQLiteStore
from memlane.store.base import EraseCounts

from .conftest import env_with
from .live_server import LiveServer, key_set, make_key, run_cli


@dataclass
class Served:
    url: str
    location: str
    keys: dict[str, str]

    def memory(self, who: str, **options: Any) -> Memory:
        return Memory(self.url, api_key=self.keys[who], **options)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    location = str(tmp_path_factory.mktemp("remote") / "remote.db")
    SQLiteStore(location).close()
    keys = key_set(location)
    with LiveServer(location, "--rate", "0") as server:
        yield Served(server.url, location, keys)


@pytest.fixture
def acme(served: Served) -> Iterator[Memory]:
    with served.memory("admin") as memory:
        memory.reset()
        yield memory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- opening ------------------------------------------------------------------------------


def test_a_url_opens_a_client_of_the_server_with_the_keys_tenant(served: Served) -> None:
    with served.memory("full") as mem:
        assert isinstance(mem, RemoteMemory) and isinstance(mem, Memory)
        assert mem.tenant == "acme" and mem.key["read_only"] is False
        added = mem.add("I moved to Lisbon in March.", user_id="zoe")
        assert added[0].tenant == "acme" and mem.get(added[0].id) == added[0]
        assert not hasattr(mem, "store")
        with pytest.raises(AttributeError, match="no embedder: it is in the server"):
            mem.embedder  # noqa: B018
        mem.forget(user_id="zoe")
    with Memory("HTTP://" + served.url.removeprefix("http://") + "/",
                api_key=served.keys["globex"]) as other:
        assert isinstance(other, RemoteMemory) and other.tenant == "globex"


def test_a_url_of_something_else_is_a_configuration_error(tmp_path: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path)
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with pytest.raises(errors.ConfigurationError, match="not look like a memlane server"):
            Memory(f"http://127.0.0.1:{other.server_address[1]}", api_key="mlk_x")
    finally:
        other.shutdown()
        other.server_close()


def test_the_key_comes_from_the_environment_when_not_given(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLANE_API_KEY", served.keys["globex"])
    with Memory(served.url) as mem:
        assert mem.tenant == "globex"
    monkeypatch.delenv("MEMLANE_API_KEY")
    with pytest.raises(errors.AuthenticationError, match="needs a key"):
        Memory(served.url)


@pytest.mark.parametrize("option", ["store", "embedder", "llm", "read_only", "search",
                                    "tenant"])
def test_what_the_server_decides_cannot_be_chosen_by_the_client(served: Served,
                                                                option: str) -> None:
    store = SQLiteStore(":memory:")
    value = {"store": store, "embedder": FakeEmbedder(), "llm": ScriptedLLM([]),
             "read_only": True, "search": "bm25", "tenant": "globex"}[option]
    try:
        with pytest.raises(errors.ConfigurationError):
            served.memory("full", **{option: value})
    finally:
        store.close()


def test_an_api_key_is_only_for_a_server() -> None:
    with pytest.raises(errors.ConfigurationError, match="api_key"):
        Memory(":memory:", embedder=FakeEmbedder(), api_key="mlk_x")


@pytest.mark.parametrize("url", ["http://", "http://host:8420/?tenant=x", "https://#frag"])
def test_a_malformed_server_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="not a server URL"):
        Memory(url)


def test_a_key_is_bound_to_its_tenant(served: Served) -> None:
    with served.memory("full") as mem:
        with pytest.raises(errors.ConfigurationError, match="bound to tenant 'acme'"):
            mem.for_tenant("globex")
        view = mem.for_tenant("acme")
        view.close()  # a view closes nothing
        assert mem.stats()["scope"] == {"tenant": "acme"}
    with pytest.raises(errors.StoreError, match="closed"):
        view.stats()


# --- keys -----------------------------------------------------------------------------------


def test_a_bad_key_is_an_authentication_error(served: Served) -> None:
    with pytest.raises(errors.AuthenticationError, match="unknown or revoked"):
        Memory(served.url, api_key="mlk_not-a-key")


def test_a_read_only_key_reads_and_never_writes(served: Served, acme: Memory) -> None:
    note = acme.add("the reader may see this", user_id="bob")[0]
    with served.memory("reader") as reader:
        assert reader.get(note.id).text == "the reader may see this"
        assert reader.search("reader", user_id="bob")
        for write in (lambda: reader.add("no", user_id="bob"),
                      lambda: reader.update(note.id, "changed", user_id="bob"),
                      lambda: reader.delete(note.id), lambda: reader.forget(user_id="bob"),
                      lambda: reader.import_([]), reader.reset):
            with pytest.raises(errors.PermissionDeniedError, match="read-only"):
                write()
    assert acme.get(note.id).version == 1


def test_a_key_limited_to_users_cannot_name_another(served: Served, acme: Memory) -> None:
    with served.memory("alice") as alice:
        assert alice.add("alice's note", user_id="alice")[0].user_id == "alice"
        with pytest.raises(errors.PermissionDeniedError, match="'bob'"):
            alice.search("note", user_id="bob")
        with pytest.raises(errors.PermissionDeniedError, match="limited to users"):
            alice.jobs()


def test_another_tenants_memory_is_not_found(served: Served, acme: Memory) -> None:
    mine = acme.add("acme's plan", user_id="bob")[0]
    with served.memory("globex") as globex:
        with pytest.raises(errors.NotFoundError):
            globex.get(mine.id)
        assert globex.search("acme's plan", user_id="bob") == []


def test_reset_erases_the_keys_tenant_only_and_needs_an_admin_key(served: Served,
                                                                  acme: Memory) -> None:
    with served.memory("globex") as globex, served.memory("full") as full:
        theirs = globex.add("globex keeps this", user_id="g")[0]
        acme.add("acme loses this", user_id="a")
        with pytest.raises(errors.PermissionDeniedError, match="admin"):
            full.reset()
        acme.reset()
        assert acme.scopes() == [] and globex.get(theirs.id).text == "globex keeps this"
        globex.forget(user_id="g")


# --- errors ---------------------------------------------------------------------------------


def _every_error() -> list[errors.MemlaneError]:
    counts = EraseCounts(1, 2, 3, 4, 5, 0, False, False)
    made: list[errors.MemlaneError] = []
    for cls in vars(errors).values():
        if not (isinstance(cls, type) and issubclass(cls, errors.MemlaneError)):
            continue
        if cls is errors.RateLimitedError:
            made.append(cls("slow down", 2.5))
        elif cls is errors.ErasurePendingError:
            made.append(cls("a reader holds it", counts))
        elif cls is errors.ModelOutputError:
            made.append(cls("not JSON", "{oops"))
        else:
            made.append(cls(f"a {cls.__name__}"))
    return made


@pytest.mark.parametrize("error", _every_error(), ids=lambda e: type(e).__name__)
def test_every_error_class_comes_back_as_itself(error: errors.MemlaneError) -> None:
    """What the server's handler answers for an error, the client raises again: the same
    class, message and details."""
    answer = memlane_error(Request({"type": "http", "method": "GET", "path": "/v1/x",
                                    "query_string": b"", "headers": []}), error)
    response = httpx.Response(answer.status_code, headers=dict(answer.headers),
                              content=bytes(answer.body),
                              request=httpx.Request("GET", "http://127.0.0.1/v1/x"))
    raised = error_from(response)
    assert type(raised) is type(error)
    if internal(error):  # a backend's text stays in the server's log
        assert str(error) not in str(raised) and "error id" in str(raised)
    elif isinstance(error, errors.ReadOnlyError):  # its text names the store's file
        assert str(raised) == errors.ReadOnlyError.PUBLIC
    else:
        assert str(raised) == str(error)
    for detail in ("retry_after", "counts", "raw"):
        assert getattr(raised, detail, None) == getattr(error, detail, None)


@pytest.mark.parametrize(("status", "cls"), [
    (401, errors.AuthenticationError), (404, errors.NotFoundError),
    (413, errors.RequestTooLargeError), (429, errors.RateLimitedError),
    (400, errors.InvalidInputError), (502, errors.StoreError), (504, errors.StoreError),
])
def test_an_answer_that_is_not_a_memlane_error_is_mapped_by_its_status(
        status: int, cls: type[errors.MemlaneError]) -> None:
    response = httpx.Response(status, text="<html>Bad Gateway</html>",
                              request=httpx.Request("GET", "http://127.0.0.1/v1/x?key=1"))
    raised = error_from(response)
    assert type(raised) is cls and str(status) in str(raised) and "key=1" not in str(raised)


def test_errors_over_the_wire_are_the_librarys(acme: Memory) -> None:
    acme.add("note", user_id="u", idempotency_key="k-1")
    cases = [
        (errors.InvalidInputError, lambda: acme.add("", user_id="u")),
        (errors.InvalidInputError, lambda: acme.search("x")),
        (errors.FilterError, lambda: acme.get_all(user_id="u", filters={"nosuch": 1})),
        (errors.ConfigurationError, lambda: acme.add("x", user_id="u", infer=True)),
        (errors.NotFoundError, lambda: acme.get("01M8ZZZZZZZZZZZZZZZZZZZZZZ")),
        (errors.NotFoundError, lambda: acme.history("..")),
        (errors.ConflictError, lambda: acme.add("other", user_id="u", idempotency_key="k-1")),
        (errors.RequestTooLargeError,
         lambda: acme.add([{"content": "x" * 30_000}] * 80, user_id="u")),
    ]
    for cls, call in cases:
        with pytest.raises(cls) as info:
            call()
        assert type(info.value) is cls and str(info.value)
    assert len(acme.messages(user_id="u")) == 1


def test_a_read_only_server_and_a_rate_limit(tmp_path: Path) -> None:
    location = str(tmp_path / "limited.db")
    with Memory(location, embedder=FakeEmbedder()) as local:
        local.add("kept before the server started", user_id="u")
    reading, counted = make_key(location, "default"), make_key(location, "default")
    with LiveServer(location, "--read-only", "--rate", "0.5", "--burst", "3") as server:
        with Memory(server.url, api_key=reading) as mem, \
                pytest.raises(errors.ReadOnlyError):
            mem.add("refused", user_id="u")
        with Memory(server.url, api_key=counted) as mem:  # one request of three
            mem.stats()
            mem.stats()
            with pytest.raises(errors.RateLimitedError) as info:
                mem.stats()
            assert 0 < info.value.retry_after <= 3


def test_an_erasure_left_pending_by_a_reader_says_what_it_erased(served: Served,
                                                                 acme: Memory) -> None:
    acme.add("a passphrase to erase", user_id="gone")
    reader = sqlite3.connect(served.location, isolation_level=None, check_same_thread=False)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM memories").fetchall()
        with pytest.raises(errors.ErasurePendingError, match="read snapshot") as info:
            acme.forget(user_id="gone", wait=0.2)
        assert info.value.counts.messages == 1 and info.value.counts.verified_clean is False
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert acme.forget(user_id="gone").verified_clean is True


# --- connections ----------------------------------------------------------------------------


def test_an_unreachable_server_is_a_store_error_that_says_why() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(errors.StoreError, match=f"cannot reach the memlane server at {url}"):
        Memory(url, api_key="mlk_x")


def test_a_server_that_stops_answering_times_out(served: Served) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # connections are accepted by the kernel, never answered
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(errors.StoreError, match="timed out"):
            RemoteMemory(url, api_key="mlk_x", timeout=0.3, retries=0)
    finally:
        silent.close()


class LossyProxy:
    """A TCP proxy on loopback that forwards every request to the server and drops the
    next ``lose`` answers (it closes the client's connection instead): the request was
    applied, the client never hears so."""

    def __init__(self, target: str) -> None:
        self.target = (httpx.URL(target).host, httpx.URL(target).port)
        self.lose = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self.pipe, args=(source, sink, answers),
                                 daemon=True).start()

    def losing(self) -> bool:
        with self.lock:
            if self.lose <= 0:
                return False
            self.lose -= 1
            return True

    def pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self.losing():
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (sink, source):  # shut down first: it wakes the other direction's recv
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_retried_add_is_stored_once(served: Served, acme: Memory) -> None:
    proxy = LossyProxy(served.url)
    try:
        with Memory(proxy.url, api_key=served.keys["full"]) as mem:
            proxy.lose = 2  # the first two answers to the add are lost: it is sent 3 times
            added = mem.add("said once, sent three times", user_id="retry")
            proxy.lose = 1
            keyed = mem.add("a keyed add", user_id="retry", idempotency_key="once")
            assert proxy.connections == 4 and proxy.lose == 0
    finally:
        proxy.close()
    stored = acme.get_all(user_id="retry")
    assert [r.id for r in stored] == [added[0].id, keyed[0].id]
    assert len(acme.messages(user_id="retry")) == 2


def test_a_write_whose_answer_was_lost_is_not_sent_again(served: Served, acme: Memory) -> None:
    note = acme.add("version one", user_id="lost")[0]
    proxy = LossyProxy(served.url)
    try:
        with Memory(proxy.url, api_key=served.keys["full"]) as mem:
            proxy.lose = 1
            with pytest.raises(errors.StoreError, match="may have been applied"):
                mem.update(note.id, "version two", user_id="lost")
    finally:
        proxy.close()
    assert [e.op for e in acme.history(note.id)] == ["add", "update"]


# --- AsyncMemory, export and import, the CLI -----------------------------------------------


def test_async_memory_over_http(served: Served, acme: Memory) -> None:
    async def scenario() -> list[str]:
        async with AsyncMemory(served.url, api_key=served.keys["full"]) as mem:
            assert isinstance(mem.sync, RemoteMemory)
            added = await asyncio.gather(*(mem.add(f"note {i}", user_id="a")
                                           for i in range(8)))
            assert len({r[0].id for r in added}) == 8
            hits = await mem.search("note 3", user_id="a", recipe="bm25")
            await mem.update(hits[0].id, "note three", user_id="a")
            assert (await mem.for_tenant("acme").get(hits[0].id)).text == "note three"
            return [e.op for e in await mem.history(hits[0].id)]

    assert asyncio.run(scenario()) == ["add", "update"]


def test_export_streams_and_import_restores_through_the_server(acme: Memory) -> None:
    acme.add([{"content": f"line {i}"} for i in range(50)], user_id="x", session_id="s")
    out = io.StringIO()
    written = acme.export(out, user_id="x")
    lines = out.getvalue().splitlines()
    assert written == len(lines) == 1 + 50 + 100  # header, messages, turns and windows
    assert json.loads(lines[0])["scope"] == {"tenant": "acme", "user_id": "x"}
    acme.forget(user_id="x")
    report = acme.import_(iter(lines))
    assert report.restored.messages == 50 and report.conflicts.memories == 0
    assert acme.import_(lines).skipped.messages == 50


def test_another_tenant_imports_an_export_under_its_own_ids(served: Served,
                                                           acme: Memory) -> None:
    mine = acme.add("acme's plan", user_id="shared")[0]
    out = io.StringIO()
    acme.export(out, user_id="shared")
    with served.memory("globex") as globex:
        globex.forget(user_id="shared")
        report = globex.import_(out.getvalue().splitlines())
        assert report.restored.memories == 2 and report.reidentified == 2
        assert report.conflicts.memories == 0 and report.conflict_ids == []
        copied = globex.get_all(user_id="shared")
        assert [r.text for r in copied] == ["acme's plan"] and copied[0].id != mine.id
        assert [e.op for e in globex.history(copied[0].id)] == ["add"]
        assert globex.import_(out.getvalue().splitlines()).skipped.memories == 2
    assert acme.get(mine.id).tenant == "acme"


def test_the_cli_works_on_a_server(served: Served, acme: Memory) -> None:
    env = {"MEMLANE_API_KEY": served.keys["full"]}
    added = run_cli("--db", served.url, "add", "from the command line", "--user", "cli",
                    env=env)
    assert added.returncode == 0, added.stderr
    found = run_cli("--db", served.url, "search", "command line", "--user", "cli", env=env)
    assert json.loads(found.stdout)[0]["memory"]["tenant"] == "acme"
    refused = run_cli("--db", served.url, "--api-key", served.keys["reader"], "add", "no",
                      "--user", "cli")
    assert refused.returncode == 2 and "read-only" in refused.stderr
    assert run_cli("--db", served.url, "stats").returncode == 2  # no key


def test_without_httpx_a_url_says_which_extra_to_install() -> None:
    code = ("import sys; sys.modules['httpx'] = None\n"
            "from memlane import Memory\n"
            "Memory('http://127.0.0.1:9')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env_with())
    assert done.returncode == 1 and "pip install 'memlane[client]'" in done.stderr


def test_line_separators_inside_a_text_survive_export_and_import(acme: Memory) -> None:
    text = "one\u2028two\u2029three\x85four"
    note = acme.add(text, user_id="sep")[0]
    out = io.StringIO()
    written = acme.export(out, user_id="sep")
    assert written == len(out.getvalue().split("\n")) - 1
    acme.forget(user_id="sep")
    report = acme.import_(io.StringIO(out.getvalue()))
    assert report.restored.messages == 1 and acme.get(note.id).text == text
