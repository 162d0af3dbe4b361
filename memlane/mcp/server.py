"""``build_server``: the MCP tools over ``Memory``, each call bound by a ``Resolver``.

The tools are thin: they resolve the call's binding, call one ``Memory`` method with the
binding's scope (never a scope from the arguments), and render the answer (``render``).
``Memory`` validates every input; its errors come back as tool errors whose message says
what was wrong, never as a stack trace. Tools are synchronous: the SDK runs them on worker
threads, so a slow store does not stall other connections.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field
from starlette.requests import Request

from .. import __version__
from ..errors import (
    BackendError,
    ConflictError,
    MemlaneError,
    NotFoundError,
    ReadOnlyError,
    UsageError,
)
from . import descriptions as say
from . import render
from .binding import Binding, Resolver
from .render import ContextOut, ErasedOut, HistoryOut, HitsOut, MemoriesOut, OneOut, PageOut

log = logging.getLogger("memlane.mcp")
MemoryId = Annotated[str, Field(description="a memory id, as returned by the other tools")]
Reason = Annotated[str | None, Field(description="why, kept in the memory's history")]
Time = Annotated[str | None, Field(description="an ISO 8601 time, e.g. 2026-03-14T10:00:00Z")]
Kinds = Annotated[list[str] | None, Field(description="only these kinds (turn, fact, ...)")]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
REMOVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                         open_world_hint=False)


@contextmanager
def _answering() -> Iterator[None]:
    """memlane's errors as tool errors a model can act on (the SDK reports anything else
    as a failure without its text, and logs it)."""
    try:
        yield
    except NotFoundError as exc:
        raise ToolError(f"not found: {exc}") from None
    except ReadOnlyError as exc:
        raise ToolError(exc.PUBLIC) from None
    except UsageError as exc:
        raise ToolError(f"invalid request: {exc}") from None
    except ConflictError as exc:
        raise ToolError(f"conflict: {exc}; read the memory again and retry") from None
    except BackendError as exc:  # its text (paths, SQL) goes to the log, not to the model
        error_id = secrets.token_hex(8)
        log.warning("error %s in an MCP tool: %s: %s", error_id, type(exc).__name__, exc)
        raise ToolError(f"the memory store failed, retry later (error id {error_id}; the "
                        "server logged the details)") from None
    except MemlaneError as exc:
        raise ToolError(str(exc)) from None


class Tools:
    """The tool functions; each resolves its call's binding first."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    def _bound(self, ctx: Context, *, writes: bool = False) -> Binding:
        request = ctx.request_context.request
        with _answering():
            binding = self._resolver(request if isinstance(request, Request) else None)
        if writes and binding.read_only:
            raise ToolError("this connection is read-only: it cannot change memories")
        return binding

    def add_memory(
        self, ctx: Context,
        text: Annotated[str, Field(description="what to remember, verbatim")],
        role: Annotated[str, Field(description="who said it: user or assistant")] = "user",
        speaker: Annotated[str | None, Field(description="the speaker's name")] = None,
        timestamp: Time = None,
        metadata: Annotated[dict[str, Any] | None,
                            Field(description="a JSON object kept with it")] = None,
    ) -> Annotated[CallToolResult, MemoriesOut]:
        b = self._bound(ctx, writes=True)
        message: dict[str, Any] = {"role": role, "content": text}
        if speaker is not None:
            message["name"] = speaker
        with _answering():
            stored = b.memory.add([message], **b.scope, timestamp=timestamp, metadata=metadata)
        return render.memories(stored, "Stored.")

    def search_memory(
        self, ctx: Context,
        query: Annotated[str, Field(description="what to look for, in plain words")],
        limit: Annotated[int, Field(description="at most this many hits (1 to 1000)")] = 10,
        kinds: Kinds = None,
        as_of: Annotated[str | None, Field(description="what was true at this ISO 8601 "
                                           "time, instead of now")] = None,
    ) -> Annotated[CallToolResult, HitsOut]:
        b = self._bound(ctx)
        with _answering():
            found = b.memory.search(query, **b.scope, limit=limit, kinds=kinds, as_of=as_of)
        return render.hits(found)

    def get_context(
        self, ctx: Context,
        query: Annotated[str, Field(description="what the task is about")],
        budget_tokens: Annotated[int, Field(description="the most tokens the block may "
                                            "take")] = 1500,
    ) -> Annotated[CallToolResult, ContextOut]:
        b = self._bound(ctx)
        with _answering():
            packed = b.memory.context(query, **b.scope, budget_tokens=budget_tokens)
        return render.context(packed)

    def list_memories(
        self, ctx: Context,
        limit: Annotated[int, Field(description="at most this many (1 to 1000)")] = 50,
        offset: Annotated[int, Field(description="skip this many first")] = 0,
        kinds: Kinds = None,
    ) -> Annotated[CallToolResult, PageOut]:
        b = self._bound(ctx)
        with _answering():
            found = b.memory.get_all(**b.scope, kinds=kinds, limit=limit, offset=offset)
            # a full page announces the next one only when a memory follows it
            more = len(found) == limit and bool(b.memory.get_all(
                **b.scope, kinds=kinds, limit=1, offset=offset + limit))
        return render.page(found, offset, more)

    def get_memory(self, ctx: Context, memory_id: MemoryId) -> Annotated[CallToolResult, OneOut]:
        b = self._bound(ctx)
        with _answering():
            record = b.memory.get(memory_id, **b.scope)
        return render.one(record, "The memory.")

    def update_memory(
        self, ctx: Context, memory_id: MemoryId,
        text: Annotated[str, Field(description="the corrected text, in full")],
        reason: Reason = None,
    ) -> Annotated[CallToolResult, OneOut]:
        b = self._bound(ctx, writes=True)
        with _answering():
            record = b.memory.update(memory_id, text, **b.scope, reason=reason, actor=b.actor)
        return render.one(record, f"Updated (now version {record.version}).")

    def delete_memory(self, ctx: Context, memory_id: MemoryId,
                      reason: Reason = None) -> Annotated[CallToolResult, OneOut]:
        b = self._bound(ctx, writes=True)
        with _answering():
            record = b.memory.delete(memory_id, **b.scope, reason=reason, actor=b.actor)
        return render.one(record, "Deleted.")

    def memory_history(self, ctx: Context,
                       memory_id: MemoryId) -> Annotated[CallToolResult, HistoryOut]:
        b = self._bound(ctx)
        with _answering():
            events = b.memory.history(memory_id, **b.scope)
        return render.history(events)

    def erase_all_memories(
        self, ctx: Context,
        confirm: Annotated[bool, Field(description="true: the user asked to erase it all")],
    ) -> Annotated[CallToolResult, ErasedOut]:
        b = self._bound(ctx, writes=True)
        if confirm is not True:
            raise ToolError("nothing erased: set confirm to true once the user has asked to "
                            "erase all of their memory")
        with _answering():
            counts = b.memory.forget(**b.scope)
        return render.erased(counts)


class HideWrites:
    """Middleware of the server: the tool list of a read-only binding leaves out the tools
    that write (a call to one is still refused, saying the connection is read-only)."""

    def __init__(self, resolver: Resolver, writes: frozenset[str]) -> None:
        self._resolver, self._writes = resolver, writes

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                       call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/list" or not isinstance(result, dict):
            return result
        request = ctx.request if isinstance(ctx.request, Request) else None
        try:
            binding = await anyio.to_thread.run_sync(self._resolver, request)
        except MemlaneError:  # the calls will say why; the list is not the place
            return result
        if not binding.read_only:
            return result
        return {**result, "tools": [t for t in result.get("tools", [])
                                    if t.get("name") not in self._writes]}


def _catalog(tools: Tools) -> list[tuple[Callable[..., Any], str, ToolAnnotations]]:
    return [
        (tools.add_memory, say.ADD, WRITE),
        (tools.search_memory, say.SEARCH, READ),
        (tools.get_context, say.CONTEXT, READ),
        (tools.list_memories, say.LIST, READ),
        (tools.get_memory, say.GET, READ),
        (tools.update_memory, say.UPDATE, WRITE),
        (tools.delete_memory, say.DELETE, REMOVE),
        (tools.memory_history, say.HISTORY, READ),
    ]


def build_server(resolver: Resolver, *, allow_erase: bool = False,
                 name: str = "memlane") -> MCPServer:
    """An MCP server whose tools act on the binding ``resolver`` gives each call.

    ``erase_all_memories`` (``Memory.forget`` of the bound scope) is offered only with
    ``allow_erase``. Serve it with ``server.run("stdio")``, or mount
    ``server.streamable_http_app(streamable_http_path="/")`` in an ASGI app whose lifespan
    runs ``server.session_manager.run()``.
    """
    tools = Tools(resolver)
    catalog = _catalog(tools)
    if allow_erase:
        catalog.append((tools.erase_all_memories, say.ERASE, REMOVE))
    writes = frozenset(fn.__name__ for fn, _, hints in catalog if not hints.read_only_hint)
    server: MCPServer = MCPServer(name, instructions=say.INSTRUCTIONS, version=__version__,
                                  log_level="WARNING",
                                  middleware=[HideWrites(resolver, writes)])
    for fn, description, hints in catalog:
        server.add_tool(fn, description=description, annotations=hints)
    return server
