"""The REST server, live on loopback (``memlane serve`` in a subprocess, real HTTP), on
SQLite and on PostgreSQL: every endpoint, keys and tenants, errors and limits."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from memlane import Memory
from memlane.store import open_store

from .conftest import env_with
from .live_server import (
    LiveServer,
    error_of,
    key_set,
    make_key,
    run_cli,
    store_location,
    wait_for,
)


@dataclass
class Served:
    server: LiveServer
    location: str
    keys: dict[str, str]

    def as_(self, who: str) -> httpx.Client:
        return self.server.client(self.keys[who])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    location = store_location(request.param, request, tmp_path_factory, "server")
    open_store(location).close()  # the schema, before keys go in
    keys = key_set(location)
    with LiveServer(location, "--rate", "0") as server:
        yield Served(server, location, keys)


def add(client: httpx.Client, text: str, user: str = "alice", **extra: object) -> dict:
    response = client.post("/v1/memories", json={"messages": text, "user_id": user, **extra})
    assert response.status_code == 200, response.text
    return response.json()["memories"][0]


def test_health_ready_openapi_and_docs(served: Served) -> None:
    with served.server.client() as anon:
        assert anon.get("/healthz").json() == {"status": "ok"}
        assert anon.get("/readyz").json()["status"] == "ready"
        schema = anon.get("/openapi.json").json()
        paths = set(schema["paths"])
        assert {"/v1/memories", "/v1/search", "/v1/context", "/v1/memories/{memory_id}",
                "/v1/memories/{memory_id}/history", "/v1/messages", "/v1/forget",
                "/v1/stats", "/v1/jobs", "/v1/scopes", "/v1/export", "/v1/import",
                "/v1/reset", "/v1/jobs/run"} <= paths
        docs = anon.get("/docs")
        assert docs.status_code == 200 and "/v1/search" in docs.text
        assert "<script" not in docs.text  # nothing fetched from elsewhere


def test_every_operation_over_http(served: Served) -> None:
    with served.as_("full") as c:
        first = add(c, "I moved to Lisbon in March.", session_id="s1",
                    timestamp="2026-03-14T10:00:00Z", metadata={"topic": "home"})
        second = add(c, "I work as a nurse.", session_id="s1", timestamp="2026-03-14T10:01:00Z")
        assert first["tenant"] == "acme" and first["metadata"] == {"topic": "home"}
        hits = c.post("/v1/search", json={"query": "Lisbon", "user_id": "alice",
                                          "explain": True}).json()["hits"]
        assert hits[0]["id"] == first["id"] and 0 <= hits[0]["score"] <= 1
        assert "explain" in hits[0] and hits[0]["memory"]["tenant"] == "acme"
        ctx = c.post("/v1/context", json={"query": "where", "user_id": "alice"}).json()
        assert "Lisbon" in ctx["text"] and ctx["complete"] is True
        assert {m["id"] for m in ctx["memories"]} == {first["id"], second["id"]}
        assert len(ctx["refs"]) == len(ctx["memories"])
        assert c.get(f"/v1/memories/{first['id']}", params={"user_id": "alice"}).json() == first
        page = c.get("/v1/memories", params={"user_id": "alice", "limit": 1, "offset": 1})
        assert [m["id"] for m in page.json()["memories"]] == [second["id"]]
        only = c.get("/v1/memories", params={"user_id": "alice", "kinds": ["turn"],
                                             "filters": json.dumps({"metadata.topic": "home"})})
        assert [m["id"] for m in only.json()["memories"]] == [first["id"]]
        updated = c.patch(f"/v1/memories/{first['id']}",
                          json={"text": "I moved to Porto.", "user_id": "alice",
                                "reason": "corrected"}).json()
        assert updated["version"] == first["version"] + 1 and updated["text"] == "I moved to Porto."
        events = c.get(f"/v1/memories/{first['id']}/history").json()["events"]
        assert [e["op"] for e in events] == ["add", "update"] and events[1]["reason"] == "corrected"
        messages = c.get("/v1/messages", params={"user_id": "alice"}).json()["messages"]
        assert [m["content"] for m in messages] == ["I moved to Lisbon in March.",
                                                    "I work as a nurse."]
        stats = c.get("/v1/stats", params={"user_id": "alice"}).json()
        assert stats["memories"]["turn"] == {"active": 2} and stats["messages"] == 2
        scopes = c.get("/v1/scopes", params={"by": "user_id"}).json()["scopes"]
        assert {"user_id": "alice", "agent_id": None, "session_id": None, "memories": 2,
                "messages": 2} in scopes
        assert c.get("/v1/jobs").json() == {"jobs": []}
        exported = c.get("/v1/export", params={"user_id": "alice"})
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        lines = exported.text.splitlines()
        assert lines and all(json.loads(line) for line in lines)
        deleted = c.delete(f"/v1/memories/{second['id']}", params={"user_id": "alice"}).json()
        assert deleted["status"] == "deleted"
        assert c.delete("/v1/memories", params={"user_id": "alice"}).json() == {"deleted": 1}
        erased = c.post("/v1/forget", json={"user_id": "alice"}).json()["erased"]
        assert erased["messages"] == 2 and erased["memories"] >= 2
        assert c.get("/v1/memories", params={"user_id": "alice"}).json() == {"memories": []}
        report = c.post("/v1/import", content="\n".join(lines),
                        headers={"content-type": "application/x-ndjson"}).json()
        assert report["restored"]["messages"] == 2 and report["conflicts"]["memories"] == 0
        assert c.get("/v1/messages", params={"user_id": "alice"}).json()["messages"]
        assert error_of(c.post("/v1/reset")) == (403, "PermissionDeniedError")
    with served.as_("admin") as admin:
        assert admin.post("/v1/reset").json()["erased"]["messages"] >= 2
    with served.as_("full") as c:
        assert c.get("/v1/scopes").json() == {"scopes": []}


def test_keys_are_required_and_revoked_keys_refused(served: Served) -> None:
    with served.server.client() as anon:
        refused = anon.post("/v1/search", json={"query": "x", "user_id": "alice"})
        assert error_of(refused) == (401, "AuthenticationError")
        assert refused.headers["www-authenticate"] == "Bearer"
    with served.server.client("mlk_not-a-key") as wrong:
        assert error_of(wrong.get("/v1/stats")) == (401, "AuthenticationError")
    token = make_key(served.location, "acme")
    with served.server.client(token) as c:
        assert c.get("/v1/stats").status_code == 200
        store = open_store(served.location)
        try:
            key_id = next(k.id for k in store.list_keys("acme") if token.startswith(k.prefix))
        finally:
            store.close()
        assert run_cli("--db", served.location, "keys", "revoke", key_id).returncode == 0
        assert error_of(c.get("/v1/stats")) == (401, "AuthenticationError")


def test_another_tenants_memory_is_not_found_like_a_missing_one(served: Served) -> None:
    with served.as_("full") as acme, served.as_("globex") as globex:
        mine = add(acme, "acme's secret plan", user="bob")
        theirs = globex.get(f"/v1/memories/{mine['id']}")
        missing = globex.get("/v1/memories/01M8ZZZZZZZZZZZZZZZZZZZZZZ")
        assert error_of(theirs) == error_of(missing) == (404, "NotFoundError")
        for call in (globex.patch(f"/v1/memories/{mine['id']}", json={"text": "x"}),
                     globex.delete(f"/v1/memories/{mine['id']}"),
                     globex.get(f"/v1/memories/{mine['id']}/history")):
            assert error_of(call) == (404, "NotFoundError")
        found = globex.post("/v1/search", json={"query": "secret plan", "user_id": "bob"})
        assert found.json() == {"hits": []}
        assert globex.get("/v1/scopes").json() == {"scopes": []}
        # the body cannot name a tenant
        sneaky = globex.post("/v1/search", json={"query": "plan", "user_id": "bob",
                                                 "tenant": "acme"})
        assert error_of(sneaky) == (422, "InvalidInputError")
        assert globex.get("/v1/memories", params={"user_id": "bob", "tenant": "acme"}
                          ).status_code == 422
        acme.post("/v1/forget", json={"user_id": "bob"})


def test_a_key_limited_to_users_names_one_of_them(served: Served) -> None:
    with served.as_("alice") as alice, served.as_("full") as full:
        bobs = add(full, "bob's note", user="bob")
        own = add(alice, "alice's note", user="alice")
        assert alice.get(f"/v1/memories/{own['id']}", params={"user_id": "alice"}).status_code \
            == 200
        assert error_of(alice.get(f"/v1/memories/{bobs['id']}", params={"user_id": "alice"})) \
            == (404, "NotFoundError")
        refused = [
            alice.post("/v1/memories", json={"messages": "x", "user_id": "bob"}),
            alice.post("/v1/search", json={"query": "note", "user_id": "bob"}),
            alice.post("/v1/search", json={"query": "note", "session_id": "s"}),
            alice.get(f"/v1/memories/{own['id']}"),
            alice.get("/v1/memories", params={"agent_id": "a"}),
            alice.get("/v1/stats"), alice.get("/v1/scopes"), alice.get("/v1/jobs"),
            alice.get("/v1/export"), alice.post("/v1/import", content=""),
            alice.post("/v1/forget", json={"user_id": "bob"}),
        ]
        for response in refused:
            assert error_of(response) == (403, "PermissionDeniedError"), response.request.url
        full.post("/v1/forget", json={"user_id": "bob"})
        full.post("/v1/forget", json={"user_id": "alice"})


def test_a_read_only_key_reads_and_never_writes(served: Served) -> None:
    with served.as_("reader") as reader, served.as_("full") as full:
        note = add(full, "a note to read", user="carol")
        assert reader.post("/v1/search", json={"query": "note", "user_id": "carol"}
                           ).json()["hits"]
        writes = [
            reader.post("/v1/memories", json={"messages": "x", "user_id": "carol"}),
            reader.patch(f"/v1/memories/{note['id']}", json={"text": "y"}),
            reader.delete(f"/v1/memories/{note['id']}"),
            reader.delete("/v1/memories", params={"user_id": "carol"}),
            reader.post("/v1/forget", json={"user_id": "carol"}),
            reader.post("/v1/import", content=""), reader.post("/v1/jobs/run", json={}),
            reader.post("/v1/reset"),
        ]
        for response in writes:
            assert error_of(response) == (403, "PermissionDeniedError"), response.request.url
        assert full.get(f"/v1/memories/{note['id']}").json()["text"] == "a note to read"
        full.post("/v1/forget", json={"user_id": "carol"})


def test_errors_have_one_shape_and_the_right_status(served: Served) -> None:
    with served.as_("full") as c:
        assert error_of(c.post("/v1/search", json={"query": "x", "user_id": "u",
                                                   "limit": 0})) == (400, "InvalidInputError")
        assert error_of(c.post("/v1/search", json={"query": "x", "user_id": "u",
                                                   "filters": {"nope": 1}})) \
            == (400, "FilterError")
        assert error_of(c.post("/v1/search", json={"query": "x"})) == (400, "InvalidInputError")
        assert error_of(c.post("/v1/search", json={"user_id": "u"})) \
            == (422, "InvalidInputError")
        assert error_of(c.post("/v1/search", content=b"{not json",
                               headers={"content-type": "application/json"})) \
            == (422, "InvalidInputError")
        assert error_of(c.get("/v1/no-such-endpoint")) == (404, "NotFoundError")
        assert error_of(c.put("/v1/search")) == (405, "InvalidInputError")
        add(c, "first", user="dave", idempotency_key="k1")
        reused = c.post("/v1/memories", json={"messages": "second", "user_id": "dave",
                                              "idempotency_key": "k1"})
        assert error_of(reused) == (409, "ConflictError")
        c.post("/v1/forget", json={"user_id": "dave"})


def test_a_huge_forget_wait_is_refused_and_nothing_is_erased(served: Served) -> None:
    with served.as_("full") as c:
        add(c, "still here", user="erin")
        for wait in (1e308, 3601):
            refused = c.post("/v1/forget", json={"user_id": "erin", "wait": wait})
            assert error_of(refused) == (400, "InvalidInputError")
            assert "wait" in refused.json()["error"]["message"]
        assert len(c.get("/v1/memories", params={"user_id": "erin"}).json()["memories"]) == 1
        assert c.post("/v1/forget", json={"user_id": "erin", "wait": 3600}).status_code == 200


def test_store_errors_keep_their_details_in_the_log(served: Served) -> None:
    if served.location.startswith("postgresql"):
        pytest.skip("the refusal is planted as a SQLite trigger")
    with sqlite3.connect(served.location) as db:  # the database refuses one message itself
        db.execute("CREATE TRIGGER IF NOT EXISTS refuse BEFORE INSERT ON messages "
                   "WHEN NEW.content = 'refused here' "
                   "BEGIN SELECT RAISE(ABORT, 'constraint refuse failed on messages'); END")
    db.close()
    with served.as_("full") as c:
        refused = c.post("/v1/memories", json={"messages": "refused here", "user_id": "frank"})
    status, kind = error_of(refused)
    assert status == 400 and kind == "InvalidInputError"
    error = refused.json()["error"]
    text = error["message"].lower()
    assert "constraint" not in text and "already exists" not in text
    assert served.location not in error["message"] and error["id"] in error["message"]

    def details() -> str:
        """The log from the line with the details on (unwrapped from the log's width)."""
        log = served.server.log
        at = log.find(error["id"])
        return " ".join(log[at:][:2000].split()) if at >= 0 else ""

    # the server wrote it before it answered; the test's reader of its log may lag behind
    assert wait_for(lambda: "already exists in its scope" in details()), served.server.log


def test_size_and_rate_limits(tmp_path: Path) -> None:
    location = str(tmp_path / "limits.db")
    open_store(location).close()
    token = make_key(location, "acme")
    with LiveServer(location, "--max-body", "2000", "--rate", "1", "--burst", "3") as server, \
            server.client(token) as c:
        big = c.post("/v1/memories", json={"messages": "x" * 3000, "user_id": "u"})
        assert error_of(big) == (413, "RequestTooLargeError")
        codes = [c.get("/v1/stats").status_code for _ in range(6)]
        assert codes[:2] == [200, 200] and 429 in codes
        limited = c.get("/v1/stats")
        assert error_of(limited) == (429, "RateLimitedError")
        assert int(limited.headers["retry-after"]) >= 1
        other = make_key(location, "acme")  # each key has its own bucket
        with server.client(other) as fresh:
            assert fresh.get("/v1/stats").status_code == 200
    chunks = (b"x" * 1000 for _ in range(5))  # no declared length: counted as it comes
    with LiveServer(location, "--max-body", "2000") as server, server.client(token) as c:
        streamed = c.post("/v1/import", content=chunks,
                          headers={"content-type": "application/x-ndjson"})
        assert error_of(streamed) == (413, "RequestTooLargeError")


def chunked(size: int, head: bytes = b"") -> Iterator[bytes]:
    """A body of ``size`` bytes sent in chunks, without a Content-Length."""
    yield head
    for _ in range(size // 65536 + 1):
        yield b"x" * 65536


def test_chunked_bodies_past_the_limit_are_refused_with_413_everywhere(tmp_path: Path) -> None:
    location = str(tmp_path / "chunked.db")
    open_store(location).close()
    token = make_key(location, "acme", users=["alice"])
    admin = make_key(location, "acme", admin=True)
    json_type = {"content-type": "application/json"}
    mcp = {**json_type, "accept": "application/json, text/event-stream"}
    with LiveServer(location) as server:  # the default limit: 2 MiB
        for path, key, headers, head in (
                ("/v1/memories", token, json_type, b'{"user_id": "alice", "messages": "'),
                ("/v1/search", token, json_type, b'{"user_id": "alice", "query": "'),
                ("/v1/import", admin, {"content-type": "application/x-ndjson"},
                 b'{"type": "memlane-export"}\n'),
                ("/mcp", token, mcp, b'{"jsonrpc": "2.0", "id": 1, "method": "x", "p": "')):
            with server.client(key) as c:
                answer = c.post(path, content=chunked(3 * 1024 * 1024, head), headers=headers)
                assert "content-length" not in answer.request.headers
                assert error_of(answer) == (413, "RequestTooLargeError"), (path, answer.text)


def test_a_web_page_cannot_drive_a_server_without_keys(tmp_path: Path) -> None:
    location = str(tmp_path / "page.db")
    form = {"content-type": "application/x-www-form-urlencoded"}
    with LiveServer(location, "--no-auth", "--tenant", "solo") as server, \
            server.client() as c:
        kept = add(c, "do not erase me")  # a JSON request, as curl sends it
        assert error_of(c.post("/v1/reset", content=b"", headers=form)) == (
            415, "InvalidInputError")
        assert error_of(c.post("/v1/reset", headers={"origin": "http://evil.example"})) == (
            403, "PermissionDeniedError")
        assert error_of(c.post("/v1/import", content='{"type": "x"}\n',
                               headers={"content-type": "text/plain"})) == (
            415, "InvalidInputError")
        assert error_of(c.post("/v1/import", content=b'{"type": "x"}\n')) == (
            415, "InvalidInputError")
        assert error_of(c.post("/v1/search", content=b'{"query": "x", "user_id": "alice"}',
                               headers={"content-type": "text/plain"})) == (
            415, "InvalidInputError")
        for path in ("/v1/stats", "/v1/export", "/healthz"):
            rebound = c.get(path, headers={"host": "evil.example"})
            assert rebound.status_code in (400, 421) and error_of(rebound)[1]
        assert error_of(c.get("/v1/stats", headers={"origin": "https://evil.example"})) == (
            403, "PermissionDeniedError")
        same = c.get("/v1/stats", headers={"origin": server.url})
        assert same.status_code == 200
        assert [m["id"] for m in c.get("/v1/memories", params={"user_id": "alice"})
                .json()["memories"]] == [kept["id"]]
        with Memory(server.url) as remote:  # the client sends what the server accepts
            lines = io.StringIO()
            remote.export(lines)
            remote.reset()
            assert remote.import_(lines.getvalue().splitlines()).restored.messages == 1
            assert remote.search("erase", user_id="alice")[0].id == kept["id"]


def test_no_auth_only_on_loopback(tmp_path: Path) -> None:
    location = str(tmp_path / "open.db")
    refused = run_cli("--db", location, "serve", "--no-auth", "--host", "0.0.0.0",
                      "--port", "0")
    assert refused.returncode == 2 and "loopback" in refused.stderr
    with LiveServer(location, "--no-auth", "--tenant", "solo") as server, \
            server.client() as anyone:
        note = add(anyone, "no key needed here")
        assert note["tenant"] == "solo"
        assert anyone.get("/v1/jobs").status_code == 200


def test_serve_without_the_server_extra_says_what_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['uvicorn'] = None; sys.modules['fastapi'] = None\n"
            "from memlane.cli.main import main\n"
            f"raise SystemExit(main(['--db', {str(tmp_path / 'x.db')!r}, 'serve']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env_with(MEMLANE_EMBEDDER="fake"))
    assert done.returncode == 2 and "pip install 'memlane[server]'" in done.stderr
