"""``memlane serve``: the REST server on one store (extra ``server``; docs/server.md).

Auth is on: every request needs a key of ``memlane keys create``. ``--no-auth`` serves one
tenant (``--tenant``) to anyone who can connect, so it is refused unless the server listens
on a loopback address only.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from ..errors import UsageError, missing_extra
from ..memory import Memory
from ..read.search import RETRIEVER_THREADS
from ..store import open_store
from .opening import embedder_name, make_embedder, make_llm, own_store, store_location
from .parser import at_least, between, number_at_least

DEFAULT_PORT = 8420


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


JOB_CONNECTIONS = 2
"""The server's job runner, and one tenant's background job worker (more workers wait)."""


def pool_size(threads: int) -> int:
    """PostgreSQL connections for a server of ``threads`` request threads: each request or
    MCP tool thread (they share anyio's ``threads`` worker threads) holds at most one at a
    time, the retriever threads every search shares hold up to ``RETRIEVER_THREADS`` more
    (a searching thread holds none while it waits for them), plus ``JOB_CONNECTIONS``."""
    return threads + RETRIEVER_THREADS + JOB_CONNECTIONS


def _open_memory(args: argparse.Namespace, connections: int) -> Memory:
    location = own_store(store_location(args), "serve", "--db" if args.db else "MEMLANE_DB")
    name = embedder_name(args)
    store = open_store(location, read_only=args.read_only, connections=connections)
    try:
        return Memory(store=store, embedder=make_embedder(name), llm=make_llm())
    except BaseException:
        store.close()
        raise


def cmd_serve(mem: Memory | None, a: argparse.Namespace) -> Any:
    if a.no_auth and not is_loopback(a.host):
        raise UsageError(f"--no-auth serves anyone who can connect: it is allowed only on a "
                         f"loopback address (127.0.0.1, ::1, localhost), not {a.host}")
    try:
        import uvicorn

        from ..server import Settings, create_app
        from ..server.guard import allowed_hosts
        from ..server.mcp_mount import unavailable
    except ImportError as exc:
        raise missing_extra(exc.name or "fastapi", "server") from exc
    tenant = a.tenant or os.environ.get("MEMLANE_TENANT") or "default"
    # opened here, so that a bad --db or embedder fails before listening; the server's
    # lifespan closes it once the requests in flight are answered
    memory = _open_memory(a, pool_size(a.threads))
    settings = Settings(open_memory=lambda: memory, auth=not a.no_auth, tenant=tenant,
                        max_body_bytes=a.max_body, rate=a.rate, burst=a.burst,
                        threads=a.threads, mcp=not a.no_mcp,
                        mcp_allow_erase=a.mcp_allow_erase,
                        allowed_hosts=allowed_hosts(a.host, tuple(a.allowed_host)),
                        auth_failures=a.auth_failures, auth_window=a.auth_window)
    who = f"without keys, as tenant {tenant!r}" if a.no_auth else "with keys"
    print(f"memlane: serving {who}; {_mcp_status(a, unavailable)}", file=sys.stderr,
          flush=True)
    try:
        uvicorn.run(create_app(settings), host=a.host, port=a.port, log_level=a.log_level,
                    timeout_graceful_shutdown=a.grace, proxy_headers=bool(a.forwarded_allow_ips),
                    forwarded_allow_ips=a.forwarded_allow_ips or None)
    finally:
        memory.close()
    return None


def _mcp_status(a: argparse.Namespace, unavailable: Any) -> str:
    if a.no_mcp:
        return "MCP off (--no-mcp)"
    reason = unavailable()
    if reason is not None:
        return f"/mcp unavailable: {reason}"
    return "MCP at /mcp" + (" (with erase_all_memories)" if a.mcp_allow_erase else "")


def register(sub: Any) -> None:
    sp = sub.add_parser("serve", help="the REST server (needs memlane[server])",
                        description="Serve the store over HTTP (docs/server.md).")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on "
                    "(default: 127.0.0.1)")
    sp.add_argument("--port", type=between(0, 65535), default=DEFAULT_PORT,
                    help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    sp.add_argument("--no-auth", action="store_true", help="serve --tenant without keys "
                    "(only on a loopback address)")
    sp.add_argument("--max-body", type=at_least(1), default=2 * 1024 * 1024,
                    help="largest request body in bytes (default: 2 MiB)")
    sp.add_argument("--rate", type=number_at_least(0), default=100.0,
                    help="requests per second per key (default: 100; 0: no limit)")
    sp.add_argument("--burst", type=at_least(1), default=200,
                    help="requests a key may make at once (default: 200)")
    sp.add_argument("--threads", type=at_least(1), default=8,
                    help="requests served at once (default: 8)")
    sp.add_argument("--grace", type=number_at_least(0), default=30.0, help="seconds to "
                    "finish the requests in flight at shutdown (default: 30; 0: none)")
    sp.add_argument("--log-level", default="info",
                    choices=("critical", "error", "warning", "info", "debug"),
                    help="how much the server logs (default: info)")
    sp.add_argument("--no-mcp", action="store_true",
                    help="do not serve the MCP tools at /mcp")
    sp.add_argument("--mcp-allow-erase", action="store_true",
                    help="offer the erase_all_memories tool at /mcp")
    sp.add_argument("--allowed-host", "--mcp-host", action="append", default=[],
                    metavar="HOST", dest="allowed_host",
                    help="a Host name the server answers to besides loopback names and "
                    "--host (repeatable; against DNS rebinding; '*' accepts any)")
    sp.add_argument("--auth-failures", type=at_least(0), default=20,
                    help="refused keys one client address may present within "
                    "--auth-window before it is refused for that long (default: 20; 0: no "
                    "limit)")
    sp.add_argument("--auth-window", type=number_at_least(1), default=60.0,
                    help="seconds of --auth-failures (default: 60)")
    sp.add_argument("--forwarded-allow-ips", default="", metavar="IPS",
                    help="comma-separated addresses of reverse proxies whose "
                    "X-Forwarded-For names the client (default: none; the connection's "
                    "address is the client's)")
    sp.set_defaults(handler=cmd_serve, no_store=True)
