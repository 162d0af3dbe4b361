"""Isolation, property-based: random tenants, users and keys, and random calls of every REST
endpoint and every MCP tool on a live server, on SQLite and on PostgreSQL. No answer may
carry another tenant's or another user's data.

Every tenant name, user name and memory text holds a unique marker (``~t000012~``), and
every memory id is known with its owner. Each answer is a probe: the markers and ids it
carries must belong to the caller (its key's tenant, and the user the call is scoped to),
unless the request itself sent them. A call on another tenant's or user's memory id must
not succeed. After each example, every planted scope is read back by its own tenant, so a
write that crossed over (an update, a delete, an import) shows as a foreign marker there.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from memlane.auth import new_key
from memlane.store import Store, open_store

from .live_server import LiveServer, store_location
from .test_server_mcp import session

TOKEN = re.compile(r"~[tuk]\d{6}~")
ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")
NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_.@", min_size=1,
                max_size=6)
Owner = tuple[str, str | None]
"""A tenant, and a user (None: the tenant's own marker, which any caller of it may see)."""
TOOLS = ["add_memory", "search_memory", "search_memory", "get_context", "list_memories",
         "list_memories", "get_memory", "get_memory", "update_memory", "delete_memory",
         "memory_history", "memory_history", "erase_all_memories"]
REST = ["add", "search", "search", "context", "get", "get", "list", "list", "update",
        "delete", "history", "history", "messages", "stats", "scopes", "export", "jobs",
        "import", "delete_all", "forget", "run_jobs", "reset"]


@dataclass
class Key:
    token: str
    tenant: str
    users: tuple[str, ...]
    read_only: bool


@dataclass
class World:
    """One live server and what every example planted in it."""

    kind: str
    server: LiveServer
    store: Store
    owners: dict[str, Owner] = field(default_factory=dict)  # marker or memory id -> owner
    users: dict[str, list[str]] = field(default_factory=dict)  # tenant -> its users
    marks: dict[Owner, str] = field(default_factory=dict)  # owner -> its text marker
    admins: dict[str, str] = field(default_factory=dict)  # tenant -> an admin token
    probes: int = 0
    leaks: list[str] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def name(self, kind: str, prefix: str) -> str:
        return f"{prefix}~{kind}{next(self.counter):06d}~"

    def key(self, tenant: str, users: tuple[str, ...] = (), read_only: bool = False,
            admin: bool = False) -> Key:
        token, record = new_key(tenant, users=users, read_only=read_only, admin=admin)
        self.store.put_key(record)
        return Key(token, tenant, users, read_only)

    # --- probes ---------------------------------------------------------------------------

    def check(self, what: str, tenant: str, user: str | None, sent: str, answer: str,
              status: int, target: str | None = None) -> None:
        """One probe: ``answer`` (with ``status``) to a call by ``tenant`` scoped to ``user``
        (None: the whole tenant) that sent ``sent``, on memory ``target`` if any."""
        self.probes += 1
        assert status < 500, (what, status, answer)
        assert "Traceback" not in answer, answer
        for found in set(TOKEN.findall(answer)) | set(ULID.findall(answer)):
            owner = self.owners.get(found)
            if owner is not None and found not in sent and not _mine(owner, tenant, user):
                self.leaks.append(f"{what} by {tenant}/{user}: {found} of {owner}: {answer}")
        owner = self.owners.get(target or "")
        if status < 300 and owner is not None and not _mine(owner, tenant, user):
            self.leaks.append(f"{what} by {tenant}/{user} on {target} of {owner} succeeded")


def _mine(owner: Owner, tenant: str, user: str | None) -> bool:
    return owner[0] == tenant and (user is None or owner[1] in (None, user))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    location = store_location(request.param, request, tmp_path_factory, "isolation")
    store = open_store(location)
    try:
        with LiveServer(location, "--rate", "0", "--mcp-allow-erase") as server:
            yield World(request.param, server, store)
    finally:
        store.close()


# --- a random population -----------------------------------------------------------------


def populate(world: World, data: st.DataObject, http: httpx.Client) -> list[str]:
    """New tenants with users, each scope holding a memory or two with its marker; the new
    tenants."""
    tenants = []
    for _ in range(data.draw(st.integers(2, 3), label="tenants")):
        tenant = world.name("t", data.draw(NAMES, label="tenant"))
        world.owners[TOKEN.findall(tenant)[0]] = (tenant, None)
        world.admins[tenant] = world.key(tenant, admin=True).token
        world.users[tenant] = []
        for _ in range(data.draw(st.integers(1, 3), label="users")):
            user = world.name("u", data.draw(NAMES, label="user"))
            mark = world.name("k", "")
            world.owners[TOKEN.findall(user)[0]] = world.owners[mark] = (tenant, user)
            world.users[tenant].append(user)
            world.marks[(tenant, user)] = mark
            for n in range(data.draw(st.integers(1, 2), label="memories")):
                plant(world, http, tenant, user, f"note {n} of {user}: {mark}")
        tenants.append(tenant)
    return tenants


def plant(world: World, http: httpx.Client, tenant: str, user: str, text: str) -> None:
    body = {"messages": text, "user_id": user}
    answer = http.post("/v1/memories", json=body, headers=auth(world.admins[tenant]))
    world.check("plant", tenant, user, json.dumps(body), answer.text, answer.status_code)
    assert answer.status_code == 200, answer.text
    for memory in answer.json()["memories"]:
        world.owners[memory["id"]] = (tenant, user)


def draw_key(world: World, data: st.DataObject, tenants: list[str]) -> Key:
    tenant = pick(data, tenants, "key tenant")
    users = tuple(dict.fromkeys(pick(data, world.users[tenant], "key user")
                                for _ in range(data.draw(st.integers(0, 2), label="users"))))
    read_only = data.draw(st.booleans(), label="read only")
    admin = not users and not read_only and data.draw(st.booleans(), label="admin")
    return world.key(tenant, users, read_only, admin)


def pick(data: st.DataObject, items: list[Any], label: str) -> Any:
    """One of ``items``, drawn as an index: the lists grow from example to example, and the
    strategies must not change with them."""
    return items[data.draw(st.integers(0, 2**16), label=label) % len(items)]


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def any_user(world: World, data: st.DataObject, key: Key) -> str | None:
    """A user to name: none, one of the key's tenant, or one of another tenant."""
    others = [u for t, users in world.users.items() if t != key.tenant for u in users]
    choice = data.draw(st.sampled_from(["none", "own", "other"]), label="user_id")
    if choice == "none":
        return None
    return pick(data, world.users[key.tenant] if choice == "own" else others or ["nobody"],
                "user")


def text_for(world: World, tenant: str, user: str | None) -> str:
    """New text for a write: the marker of the scope written, so that it stays owned."""
    mark = world.marks.get((tenant, user)) or TOKEN.findall(tenant)[0]
    return f"changed by its owner: {mark}"


# --- REST --------------------------------------------------------------------------------


def rest_call(world: World, data: st.DataObject, key: Key,
              http: httpx.Client) -> tuple[str, dict[str, Any], str]:
    """One random call: its kind, the request (for httpx), and the memory id it uses."""
    kind = data.draw(st.sampled_from(REST), label="endpoint")
    user = any_user(world, data, key)
    own_user = user if user in world.users[key.tenant] else None
    mid = pick(data, sorted(k for k in world.owners if ULID.fullmatch(k)), "memory id")
    query = pick(data, sorted(k for k in world.owners if TOKEN.fullmatch(k)), "query")
    scope = {} if user is None else {"user_id": user}
    calls: dict[str, tuple[str, str, dict[str, Any]]] = {
        "add": ("POST", "/v1/memories", {"json": {
            "messages": text_for(world, key.tenant, own_user),
            **({} if own_user is None else {"user_id": own_user})}}),
        "search": ("POST", "/v1/search", {"json": {"query": query, "limit": 50, **scope}}),
        "context": ("POST", "/v1/context", {"json": {"query": query, **scope}}),
        "get": ("GET", f"/v1/memories/{mid}", {"params": scope}),
        "list": ("GET", "/v1/memories", {"params": {"limit": 1000, **scope}}),
        "update": ("PATCH", f"/v1/memories/{mid}", {"json": {
            "text": text_for(world, key.tenant, own_user), **scope}}),
        "delete": ("DELETE", f"/v1/memories/{mid}", {"params": scope}),
        "history": ("GET", f"/v1/memories/{mid}/history", {"params": scope}),
        "messages": ("GET", "/v1/messages", {"params": scope}),
        "stats": ("GET", "/v1/stats", {"params": scope}),
        "scopes": ("GET", "/v1/scopes", {"params": {"by": "user_id", **scope}}),
        "export": ("GET", "/v1/export", {"params": scope}),
        "jobs": ("GET", "/v1/jobs", {}),
        "import": ("POST", "/v1/import", {"content": hostile_import(world, http, key, mid),
                                          "headers": {"content-type": "application/x-ndjson"}}),
        "delete_all": ("DELETE", "/v1/memories", {"params": scope}),
        "forget": ("POST", "/v1/forget", {"json": scope}),
        "run_jobs": ("POST", "/v1/jobs/run", {"json": {}}),
        "reset": ("POST", "/v1/reset", {}),
    }
    method, path, options = calls[kind]
    headers = {**auth(key.token), **options.get("headers", {})}
    return kind, {"method": method, "url": path, **options, "headers": headers}, mid


def hostile_import(world: World, http: httpx.Client, key: Key, foreign_id: str) -> str:
    """An export of the key's tenant whose memory ids and tenant are rewritten to another
    tenant's: importing it must not touch that tenant."""
    lines = http.get("/v1/export", headers=auth(world.admins[key.tenant])).text
    owner = world.owners[foreign_id]
    memories = [json.loads(line)["id"] for line in lines.splitlines()
                if json.loads(line)["type"] == "memory"]
    if memories:
        lines = lines.replace(memories[0], foreign_id)
    return lines.replace(f'"tenant": "{key.tenant}"', f'"tenant": "{owner[0]}"')


def scope_of(request: dict[str, Any]) -> str | None:
    """The user a call names (None: the whole tenant)."""
    named: str | None = (request.get("params") or {}).get("user_id") or (
        request.get("json") or {}).get("user_id")
    return named


def probe_rest(world: World, data: st.DataObject, keys: list[Key], http: httpx.Client) -> None:
    key = pick(data, keys, "key")
    kind, request, mid = rest_call(world, data, key, http)
    target = mid if mid in request["url"] else None
    answer = http.request(**request)
    user = scope_of(request)
    if key.users and user not in key.users:  # a key limited to users must name one
        assert answer.status_code == 403, (kind, request, answer.text)
    world.check(f"REST {kind}", key.tenant, user, json.dumps(request, default=str),
                answer.text, answer.status_code, target)
    if kind == "add" and answer.status_code == 200:
        for memory in answer.json()["memories"]:
            world.owners[memory["id"]] = (key.tenant, user)
    if kind == "import" and answer.status_code == 200:
        # the caller may now hold its own copy under that id; the foreign original is still
        # guarded by its text, which the sweep reads back
        world.owners.pop(mid, None)


def sweep(world: World, http: httpx.Client, tenants: list[str]) -> None:
    """Every planted scope, read back by its own tenant: nothing of anyone else's."""
    for tenant in tenants:
        for user in world.users[tenant]:
            for path in ("/v1/memories", "/v1/messages", "/v1/export"):
                answer = http.get(path, params={"user_id": user},
                                  headers=auth(world.admins[tenant]))
                world.check(f"sweep {path}", tenant, user, "", answer.text,
                            answer.status_code)


# --- MCP ---------------------------------------------------------------------------------


async def probe_mcp(world: World, data: st.DataObject, key: Key, header: str | None) -> None:
    """A session of ``key`` (naming ``header`` as its user, if any) making random tool
    calls; or, if the server refuses the binding, its refusal."""
    headers = auth(key.token, **({} if header is None else {"X-Memlane-User": header}))
    url = world.server.url + "/mcp"
    bound = header or (key.users[0] if len(key.users) == 1 else None)
    allowed = bound is not None and (not key.users or bound in key.users)
    if not allowed:
        async with httpx.AsyncClient(timeout=30) as raw:
            refused = await raw.post(url, headers={
                **headers, "accept": "application/json, text/event-stream"}, json={
                "jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 403, refused.text
        world.check("MCP refused", key.tenant, bound, json.dumps(headers), refused.text, 403)
        return
    async with session(url, headers) as s:
        for _ in range(data.draw(st.integers(3, 8), label="tool calls")):
            tool, arguments = tool_call(world, data, key.tenant, bound)
            result = await s.call_tool(tool, arguments)
            answer = json.dumps(result.model_dump(mode="json"))
            target = None if result.is_error else arguments.get("memory_id")
            world.check(f"MCP {tool}", key.tenant, bound, json.dumps([arguments, header]),
                        answer, 200, target)
            if tool == "add_memory" and not result.is_error:
                for memory in result.structured_content["memories"]:  # type: ignore[index]
                    world.owners[memory["id"]] = (key.tenant, bound)


def tool_call(world: World, data: st.DataObject, tenant: str,
              user: str | None) -> tuple[str, dict[str, Any]]:
    tool = data.draw(st.sampled_from(TOOLS), label="tool")
    mid = pick(data, sorted(k for k in world.owners if ULID.fullmatch(k)), "memory id")
    query = pick(data, sorted(k for k in world.owners if TOKEN.fullmatch(k)), "query")
    arguments: dict[str, Any] = {
        "add_memory": {"text": text_for(world, tenant, user)},
        "search_memory": {"query": query, "limit": 50},
        "get_context": {"query": query},
        "list_memories": {"limit": 1000},
        "get_memory": {"memory_id": mid},
        "update_memory": {"memory_id": mid, "text": text_for(world, tenant, user)},
        "delete_memory": {"memory_id": mid},
        "memory_history": {"memory_id": mid},
        "erase_all_memories": {"confirm": True},
    }[tool]
    if data.draw(st.booleans(), label="names a user"):  # not a way out of the binding
        others = sorted(u for users in world.users.values() for u in users)
        arguments["user_id"] = pick(data, others, "named user")
    return tool, arguments


# --- the properties ----------------------------------------------------------------------


def report(world: World, what: str, before: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.leaks == [], "\n".join(world.leaks[:5])
    with capsys.disabled():
        print(f"\n{what} isolation on {world.kind}: {world.probes - before} probes, 0 leaks")


def test_no_rest_answer_carries_another_scopes_data(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    before = world.probes

    @settings(max_examples=15, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def explore(data: st.DataObject) -> None:
        with world.server.client() as http:
            tenants = populate(world, data, http)
            keys = [draw_key(world, data, tenants)
                    for _ in range(data.draw(st.integers(2, 4), label="keys"))]
            for _ in range(data.draw(st.integers(10, 30), label="calls")):
                probe_rest(world, data, keys, http)
            sweep(world, http, tenants)
        assert world.leaks == [], "\n".join(world.leaks[:5])

    explore()
    assert world.probes - before >= 15 * 20
    report(world, "REST", before, capsys)


def test_no_mcp_answer_carries_another_scopes_data(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    before = world.probes

    @settings(max_examples=10, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def explore(data: st.DataObject) -> None:
        with world.server.client() as http:
            tenants = populate(world, data, http)
            for _ in range(data.draw(st.integers(1, 3), label="sessions")):
                key = draw_key(world, data, tenants)
                header = any_user(world, data, key)
                anyio.run(probe_mcp, world, data, key, header)
            sweep(world, http, tenants)
        assert world.leaks == [], "\n".join(world.leaks[:5])

    explore()
    assert world.probes - before >= 10 * 10
    report(world, "MCP", before, capsys)
