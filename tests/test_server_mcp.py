"""MCP inside ``memlane serve``: the official MCP client over streamable HTTP at ``/mcp``,
behind the server's keys, on a live server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession

from memlane.store import open_store

from .live_server import LiveServer, error_of, make_key
from .test_mcp import TOOLS, call, fails, run

HELLO = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"}}}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}
WRITE_TOOLS = {"add_memory", "update_memory", "delete_memory"}


@dataclass
class Served:
    server: LiveServer
    location: str
    keys: dict[str, str]

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}", **extra}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    location = str(tmp_path_factory.mktemp("mcp") / "server.db")
    open_store(location).close()
    keys = {"alice": make_key(location, "acme", users=["alice"]),
            "pair": make_key(location, "acme", users=["alice", "bob"]),
            "tenant": make_key(location, "acme"),
            "reader": make_key(location, "acme", users=["alice"], read_only=True),
            "globex": make_key(location, "globex", users=["alice"])}
    with LiveServer(location, "--rate", "0") as server:
        yield Served(server, location, keys)


@asynccontextmanager
async def session(url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    """An MCP client session whose every request carries ``headers``."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(timeout=30, headers=headers) as http, \
            streamable_http_client(url, http_client=http) as (read, write), \
            ClientSession(read, write) as s:
        await s.initialize()
        yield s


def initialize(served: Served, headers: dict[str, str], path: str = "/mcp") -> httpx.Response:
    """One raw initialize request, as the first request of any MCP client."""
    with served.server.client() as c:
        return c.post(path, json=HELLO, headers={**MCP_HEADERS, **headers})


def test_the_tools_at_mcp_bound_to_the_keys_one_user(served: Served) -> None:
    async def scenario() -> None:
        url = served.server.url + "/mcp"
        async with session(url, served.headers("alice")) as alice, \
                session(url, served.headers("globex")) as other:
            assert {t.name for t in (await alice.list_tools()).tools} == TOOLS
            added = await call(alice, "add_memory", text="the launch code is 4321")
            secret = added.structured_content["memories"][0]["id"]  # type: ignore[index]
            found = await call(alice, "search_memory", query="launch code")
            assert found.structured_content["hits"][0]["id"] == secret  # type: ignore[index]
            await call(alice, "update_memory", memory_id=secret, text="the launch code is 4321!")
            history = await call(alice, "memory_history", memory_id=secret)
            assert history.structured_content["events"][1]["actor"] == "mcp"  # type: ignore
            # the same user name in another tenant sees nothing
            assert (await call(other, "search_memory", query="launch code")
                    ).structured_content["hits"] == []  # type: ignore[index]
            assert "not found" in await fails(other, "get_memory", memory_id=secret)
            # naming a user in the arguments is not a way out of the key's scope
            named = await other.call_tool("list_memories", {"user_id": "alice"})
            assert "4321" not in str(named.model_dump())

    run(scenario)
    with served.server.client(served.keys["tenant"]) as rest:
        listed = rest.get("/v1/memories", params={"user_id": "alice"}).json()["memories"]
        assert [m["text"] for m in listed] == ["the launch code is 4321!"]


def test_both_paths_answer_without_a_redirect(served: Served) -> None:
    for path in ("/mcp", "/mcp/"):
        answer = initialize(served, served.headers("alice"), path)
        assert answer.status_code == 200, answer.text
        assert "mcp-session-id" in answer.headers and "memlane" in answer.text


def test_no_key_or_a_bad_key_is_refused_like_rest(served: Served) -> None:
    assert error_of(initialize(served, {})) == (401, "AuthenticationError")
    assert error_of(initialize(served, {"Authorization": "Bearer mlk_nope"})) == (
        401, "AuthenticationError")
    assert initialize(served, {}).headers["www-authenticate"] == "Bearer"


def test_a_key_of_several_users_or_of_the_tenant_names_the_user_in_a_header(
        served: Served) -> None:
    for who in ("pair", "tenant"):
        refused = initialize(served, served.headers(who))
        assert error_of(refused) == (403, "PermissionDeniedError")
        assert "X-Memlane-User" in refused.json()["error"]["message"]
    outside = initialize(served, served.headers("pair", **{"X-Memlane-User": "carol"}))
    assert error_of(outside) == (403, "PermissionDeniedError")
    wrong = initialize(served, served.headers("alice", **{"X-Memlane-User": "bob"}))
    assert error_of(wrong) == (403, "PermissionDeniedError")

    async def scenario() -> None:
        url = served.server.url + "/mcp/"
        async with session(url, served.headers("pair", **{"X-Memlane-User": "bob"})) as bob, \
                session(url, served.headers("tenant", **{"X-Memlane-User": "dave",
                                                         "X-Memlane-Agent": "helper"})) as dave:
            await call(bob, "add_memory", text="bob sails on sundays")
            await call(dave, "add_memory", text="dave keeps bees")
            bobs = await call(bob, "list_memories")
            assert [m["text"] for m in bobs.structured_content["memories"]] == [  # type: ignore
                "bob sails on sundays"]
            daves = await call(dave, "search_memory", query="sails bees", limit=50)
            assert [h["text"] for h in daves.structured_content["hits"]] == [  # type: ignore
                "dave keeps bees"]

    run(scenario)
    with served.server.client(served.keys["tenant"]) as rest:
        kept = rest.get("/v1/memories", params={"user_id": "dave", "agent_id": "helper"})
        assert [m["text"] for m in kept.json()["memories"]] == ["dave keeps bees"]


def test_a_read_only_key_gets_tools_that_only_read(served: Served) -> None:
    async def scenario() -> None:
        url = served.server.url + "/mcp"
        async with session(url, served.headers("alice")) as alice:
            await call(alice, "add_memory", text="alice likes green tea")
        async with session(url, served.headers("reader")) as reader:
            listed = {t.name for t in (await reader.list_tools()).tools}
            assert listed == TOOLS - WRITE_TOOLS
            assert "read-only" in await fails(reader, "add_memory", text="more")
            found = await call(reader, "search_memory", query="green tea")
            hit = found.structured_content["hits"][0]  # type: ignore[index]
            assert "read-only" in await fails(reader, "delete_memory", memory_id=hit["id"])
            await call(reader, "get_memory", memory_id=hit["id"])

    run(scenario)


def open_session(served: Served, who: str, **extra: str) -> str:
    """A session opened by the raw requests of any MCP client; its id."""
    opened = initialize(served, served.headers(who, **extra))
    assert opened.status_code == 200, opened.text
    session_id = opened.headers["mcp-session-id"]
    ready = post_in(served, session_id, who, {"jsonrpc": "2.0",
                                              "method": "notifications/initialized"}, **extra)
    assert ready.status_code == 202, ready.text
    return session_id


def post_in(served: Served, session_id: str, who: str, message: dict[str, Any],
            **extra: str) -> httpx.Response:
    headers = {**MCP_HEADERS, **served.headers(who, **extra), "mcp-session-id": session_id,
               "mcp-protocol-version": HELLO["params"]["protocolVersion"]}  # type: ignore
    with served.server.client() as c:
        return c.post("/mcp", json=message, headers=headers)


LIST_CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "list_memories", "arguments": {}}}


def test_a_session_answers_only_the_key_that_opened_it(served: Served) -> None:
    """Another key (another tenant's, or another of the same tenant, allowed to act for the
    same user) is answered as if the session did not exist; the session goes on."""
    session_id = open_session(served, "alice")
    for who in ("globex", "pair", "tenant"):
        used = post_in(served, session_id, who, LIST_CALL, **{"X-Memlane-User": "alice"})
        assert used.status_code == 404, (who, used.text)
        assert "memories" not in used.text
        with served.server.client() as c:
            ended = c.delete("/mcp", headers={**served.headers(who, **{"X-Memlane-User":
                                                                       "alice"}),
                                              "mcp-session-id": session_id})
        assert ended.status_code == 404, (who, ended.text)
    own = post_in(served, session_id, "alice", LIST_CALL)
    assert own.status_code == 200 and '"memories"' in own.text, own.text
    other = open_session(served, "globex")
    assert post_in(served, other, "alice", LIST_CALL).status_code == 404
    assert post_in(served, other, "globex", LIST_CALL).status_code == 200


def test_list_pages_end_where_the_memories_do_like_rest(served: Served) -> None:
    """``next_offset`` is null when no memory follows, even when the last page is full;
    the pages are those of ``GET /v1/memories``."""
    headers = served.headers("tenant", **{"X-Memlane-User": "pager"})

    async def scenario() -> None:
        async with session(served.server.url + "/mcp", headers) as s:
            for n in range(3):
                await call(s, "add_memory", text=f"page fact {n}")
            pages = {(limit, offset): (await call(s, "list_memories", limit=limit,
                                                  offset=offset)).structured_content
                     for limit, offset in ((3, 0), (2, 0), (2, 2), (1, 2), (5, 3))}
            assert pages[3, 0]["next_offset"] is None  # type: ignore[index]
            assert pages[2, 0]["next_offset"] == 2  # type: ignore[index]
            assert pages[2, 2]["next_offset"] is None  # type: ignore[index]
            assert pages[1, 2]["next_offset"] is None  # type: ignore[index]
            assert pages[5, 3] == {**pages[5, 3], "memories": [], "next_offset": None}
            with served.server.client(served.keys["tenant"]) as rest:
                for (limit, offset), page in pages.items():
                    listed = rest.get("/v1/memories", params={
                        "user_id": "pager", "limit": limit, "offset": offset}).json()
                    assert [m["id"] for m in listed["memories"]] == [
                        m["id"] for m in page["memories"]]  # type: ignore[index]

    run(scenario)


def test_another_host_name_is_refused_unless_allowed(tmp_path: Path) -> None:
    location = str(tmp_path / "hosts.db")
    open_store(location).close()
    key = make_key(location, "acme", users=["alice"])
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}"}
    with LiveServer(location) as default, \
            LiveServer(location, "--allowed-host", "memory.example") as allowing:
        for server, allowed in ((default, False), (allowing, True)):
            with server.client() as c:
                for host, expected in (("memory.example", 200 if allowed else 421),
                                       ("evil.example:80", 421), ("localhost:1", 200)):
                    answer = c.post("/mcp", json=HELLO, headers={**headers, "host": host})
                    assert answer.status_code == expected, (host, answer.text)
                for host, expected in (("memory.example", 200 if allowed else 421),
                                       ("evil.example", 421), ("localhost:1", 200)):
                    rest = c.get("/v1/stats", headers={"Authorization": f"Bearer {key}",
                                                       "host": host},
                                 params={"user_id": "alice"})
                    assert rest.status_code == expected, (host, rest.text)


def test_erasure_only_when_the_server_allows_it(tmp_path: Path) -> None:
    location = str(tmp_path / "erase.db")
    open_store(location).close()
    key = make_key(location, "acme", users=["alice"])

    async def scenario(server: LiveServer, allowed: bool) -> None:
        async with session(server.url + "/mcp", {"Authorization": f"Bearer {key}"}) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert names == (TOOLS | {"erase_all_memories"} if allowed else TOOLS)
            await call(s, "add_memory", text="alice likes tea")
            if allowed:
                erased = await call(s, "erase_all_memories", confirm=True)
                assert erased.structured_content["erased"]["messages"] >= 1  # type: ignore
            else:
                assert "Unknown tool" in await fails(s, "erase_all_memories", confirm=True)

    for args, allowed in (((), False), (("--mcp-allow-erase",), True)):
        with LiveServer(location, *args) as server:
            assert ("with erase_all_memories" in server.log) is allowed
            run(scenario, server, allowed)


def test_no_mcp_flag_serves_rest_only(tmp_path: Path) -> None:
    location = str(tmp_path / "off.db")
    open_store(location).close()
    key = make_key(location, "acme", users=["alice"])
    with LiveServer(location, "--no-mcp") as server, server.client(key) as c:
        assert "MCP off" in server.log
        assert c.post("/mcp", json=HELLO, headers=MCP_HEADERS).status_code == 404
        assert c.get("/v1/stats", params={"user_id": "alice"}).status_code == 200


def test_without_the_mcp_extra_rest_is_served_and_the_log_says_so(tmp_path: Path) -> None:
    hidden = tmp_path / "hide"
    (hidden / "mcp").mkdir(parents=True)
    (hidden / "mcp" / "__init__.py").write_text("raise ImportError('No module named mcp')\n")
    location = str(tmp_path / "plain.db")
    open_store(location).close()
    key = make_key(location, "acme", users=["alice"])
    with LiveServer(location, env={"PYTHONPATH": str(hidden)}) as server, \
            server.client(key) as c:
        assert "/mcp unavailable" in server.log and "memlane[mcp]" in server.log
        assert c.post("/v1/memories", json={"messages": "hi", "user_id": "alice"}
                      ).status_code == 200
        missing: Any = c.post("/mcp", json=HELLO, headers=MCP_HEADERS)
        assert error_of(missing) == (404, "NotFoundError")


def documented_http_clients() -> list[tuple[str, dict[str, str]]]:
    """The URL and headers of every HTTP client configuration in the docs: JSON entries
    with a ``url``, and ``claude mcp add --transport http`` lines."""
    import json
    import re
    import shlex

    from .conftest import ROOT

    found = []
    for doc in (ROOT / "README.md", ROOT / "docs" / "mcp.md", ROOT / "docs" / "server.md"):
        text = doc.read_text(encoding="utf-8")
        for block in re.findall(r"```json\n(.*?)```", text, re.S):
            config = json.loads(block)
            for entry in (config.get("mcpServers") or config.get("servers") or {}).values():
                if "url" in entry:
                    assert entry.get("type", "http") == "http"
                    found.append((entry["url"], entry.get("headers", {})))
        for line in re.findall(r"\$ (claude mcp add --transport http .*)", text):
            words = shlex.split(line)
            headers = dict(h.split(": ", 1) for h in words[words.index("--header") + 1::2])
            found.append((next(w for w in words if w.startswith("http://")), headers))
    return found


def test_documented_http_configurations_connect(served: Served) -> None:
    """Each documented HTTP configuration, with a real key and this server's address, opens
    a session whose tools work (a key of the whole tenant where the entry names a user)."""
    clients = documented_http_clients()
    assert len(clients) >= 4

    async def scenario(url: str, headers: dict[str, str]) -> None:
        async with session(url, headers) as s:
            assert {t.name for t in (await s.list_tools()).tools} == TOOLS
            await call(s, "add_memory", text="the configuration works")
            found = await call(s, "search_memory", query="configuration works")
            assert found.structured_content["hits"]  # type: ignore[index]

    me = make_key(served.location, "acme", users=["me"])
    for url, headers in clients:
        key = served.keys["tenant"] if "X-Memlane-User" in headers else me
        real = {name: value.replace("mlk_...", key).replace("${input:memlane-key}", key)
                for name, value in headers.items()}
        assert real["Authorization"] == f"Bearer {key}"
        run(scenario, url.replace("http://127.0.0.1:8420", served.server.url), real)
