"""MCP at ``/mcp``: the tools of ``memlane.mcp`` over streamable HTTP, behind the same keys
as ``/v1``.

Every request to ``/mcp`` is authenticated (and rate limited) like a ``/v1`` request before
the MCP transport sees it, and carries its own binding: the key's tenant, and one scope
chosen by the key or by the connection's headers, never by the model:

- a key limited to exactly one user binds that user;
- otherwise the header ``X-Memlane-User`` names the user (one of the key's users, if it is
  limited to several); ``X-Memlane-Agent`` and ``X-Memlane-Session`` narrow the scope, or
  make it, for a key of the whole tenant;
- a key of several users without ``X-Memlane-User``, or a key of the whole tenant without
  any scope header, is refused (403).

An MCP session belongs to the key that opened it: a request naming it with another key
is answered 404, as if it did not exist. A read-only key gets tools that only read;
``erase_all_memories`` exists only when the server allows it. The ``mcp`` extra is
optional: without it ``/mcp`` is not served.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import MemlaneError, PermissionDeniedError
from . import errors
from .settings import Settings
from .state import Caller, ServerState

if TYPE_CHECKING:
    from ..mcp import Binding

log = logging.getLogger("memlane.server")
PATH = "/mcp"
USER, AGENT, SESSION = "x-memlane-user", "x-memlane-agent", "x-memlane-session"
BINDING = "memlane_binding"
"""Where the gate leaves a request's binding (``request.state``) for the tools."""
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def unavailable() -> str | None:
    """Why this process cannot serve MCP (the extra is missing), or None when it can."""
    try:
        import memlane.mcp  # noqa: F401
    except (MemlaneError, ImportError) as exc:
        return str(exc)
    return None


def transport_security(hosts: tuple[str, ...]) -> Any:
    """The SDK's DNS-rebinding protection, on the names the whole server accepts
    (``guard.Guard`` checks them first): Host (any port) among loopback names and
    ``hosts``, and a browser's Origin on the same names; ``*`` turns the check off."""
    from mcp.server.transport_security import TransportSecuritySettings

    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = list(dict.fromkeys((*LOOPBACK, *hosts)))
    patterns = [p for name in names for p in (name, f"{name}:*")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=patterns,
        allowed_origins=[f"{s}://{p}" for s in ("http", "https") for p in patterns])


def binding_for(caller: Caller, headers: Mapping[str, str]) -> Binding:
    """The scope one MCP request may act in, from its key and its headers."""
    from ..mcp import Binding

    principal = caller.principal
    only = principal.users[0] if len(principal.users) == 1 else None
    user = headers.get(USER) or only
    agent, session = headers.get(AGENT) or None, headers.get(SESSION) or None
    if principal.users and user is None:
        raise PermissionDeniedError("this key is limited to several users: name one of them "
                                    "in the X-Memlane-User header")
    principal.scoped(user)
    if user is None and agent is None and session is None:
        raise PermissionDeniedError("the MCP tools act on one scope and this key covers the "
                                    "whole tenant: name it with the X-Memlane-User header "
                                    "(or X-Memlane-Agent, X-Memlane-Session)")
    return Binding(caller.memory, user_id=user, agent_id=agent, session_id=session,
                   read_only=principal.read_only)


def resolve(request: Request | None) -> Binding:
    """The resolver of the tools: the binding the gate put on the request."""
    from ..mcp import Binding

    binding = getattr(request.state, BINDING, None) if request is not None else None
    if not isinstance(binding, Binding):
        raise PermissionDeniedError("this MCP call did not come through an authenticated "
                                    "request")
    return binding


def bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


class Gate:
    """ASGI in front of the MCP app: the key and the scope of each request, or a JSON
    error like the ``/v1`` ones. ``exact`` serves ``/mcp`` itself (no trailing slash,
    which MCP clients do not follow a redirect to)."""

    def __init__(self, app: FastAPI, inner: ASGIApp, exact: bool = False) -> None:
        self.app, self.inner, self.exact = app, inner, exact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        request = Request(scope)
        try:
            caller, binding = await anyio.to_thread.run_sync(self._bind, request)
        except MemlaneError as exc:
            await errors.memlane_error(request, exc)(scope, receive, send)
            return
        if self.exact:
            scope = {**scope, "root_path": scope.get("root_path", "") + PATH,
                     "path": scope["path"] + "/", "raw_path": scope.get("raw_path", b"") + b"/"}
        scope.setdefault("state", {})[BINDING] = binding
        if caller.principal.key_id is not None:
            scope["user"] = session_owner(caller.principal.key_id)
        await self.inner(scope, receive, send)

    def _bind(self, request: Request) -> tuple[Caller, Binding]:
        state: ServerState = self.app.state.memlane
        caller = state.caller(bearer(request.headers))
        return caller, binding_for(caller, request.headers)


def session_owner(key_id: str) -> Any:
    """The identity the SDK binds an MCP session to: the key that opened it. The SDK
    answers a request that names a session opened by another key 404, exactly as for a
    session that does not exist (``StreamableHTTPSessionManager``)."""
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    return AuthenticatedUser(AccessToken(token=key_id, client_id=key_id, scopes=[]))


def mount(app: FastAPI, settings: Settings) -> Callable[[], AbstractAsyncContextManager[Any]]:
    """Serve the tools at ``/mcp`` of ``app``; what its lifespan must run around serving
    (the SDK's session manager; a mounted app's own lifespan does not run). Without the
    extra, ``/mcp`` is not served and the log says why."""
    if not settings.mcp:
        return _nothing
    reason = unavailable()
    if reason is not None:
        log.warning("MCP is not served at %s: %s", PATH, reason)
        return _nothing
    from ..mcp import build_server

    server = build_server(resolve, allow_erase=settings.mcp_allow_erase)
    inner = server.streamable_http_app(
        streamable_http_path="/", max_request_body_size=settings.max_body_bytes,
        transport_security=transport_security(settings.allowed_hosts))
    app.router.routes.append(Route(PATH, Gate(app, inner, exact=True)))
    app.router.routes.append(Mount(PATH, Gate(app, inner)))
    return server.session_manager.run


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
