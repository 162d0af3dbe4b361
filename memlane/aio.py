"""``AsyncMemory``: the same API as ``Memory`` for asyncio code, over the same core.

Each method is derived from ``Memory``'s own (same signature, same behaviour) and runs it
in a worker thread, so the event loop never waits on the database or the model (or, for a
server's URL, on the HTTP client, ``RemoteMemory``, whose pooled client is thread-safe). A test
keeps the two classes' public methods and signatures equal.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from .embed.base import Embedder
from .llm.base import LLM
from .memory import Memory
from .read.search import SearchConfig
from .store.base import Store

P = ParamSpec("P")
R = TypeVar("R")


def _async_of(
    method: Callable[Concatenate[Memory, P], R],
) -> Callable[Concatenate[AsyncMemory, P], Coroutine[Any, Any, R]]:
    async def call(memory: AsyncMemory, /, *args: P.args, **kwargs: P.kwargs) -> R:
        bound = cast(Callable[P, R], getattr(memory.sync, method.__name__))  # a remote's own
        return await asyncio.to_thread(bound, *args, **kwargs)

    functools.update_wrapper(call, method)
    return call


class AsyncMemory:
    """Awaitable twin of ``Memory``; ``.sync`` is the ``Memory`` it runs on."""

    def __init__(self, location: str | Path | None = None, *, store: Store | None = None,
                 embedder: Embedder | None = None, tenant: str = "default",
                 search: str | SearchConfig = "hybrid", llm: LLM | None = None,
                 read_only: bool = False, api_key: str | None = None) -> None:
        self.sync = Memory(location, store=store, embedder=embedder, tenant=tenant,
                           search=search, llm=llm, read_only=read_only, api_key=api_key)

    @property
    def tenant(self) -> str:
        """The tenant this memory reads and writes (``Memory.tenant``)."""
        return self.sync.tenant

    def for_tenant(self, tenant: str) -> AsyncMemory:
        """The same memory seen by another tenant (see ``Memory.for_tenant``)."""
        view = object.__new__(AsyncMemory)
        view.sync = self.sync.for_tenant(tenant)
        return view

    add = _async_of(Memory.add)
    search = _async_of(Memory.search)
    context = _async_of(Memory.context)
    get = _async_of(Memory.get)
    get_all = _async_of(Memory.get_all)
    update = _async_of(Memory.update)
    delete = _async_of(Memory.delete)
    delete_all = _async_of(Memory.delete_all)
    forget = _async_of(Memory.forget)
    history = _async_of(Memory.history)
    messages = _async_of(Memory.messages)
    scopes = _async_of(Memory.scopes)
    export = _async_of(Memory.export)
    import_ = _async_of(Memory.import_)
    stats = _async_of(Memory.stats)
    reset = _async_of(Memory.reset)
    jobs = _async_of(Memory.jobs)
    run_jobs = _async_of(Memory.run_jobs)
    wait_for_jobs = _async_of(Memory.wait_for_jobs)
    close = _async_of(Memory.close)

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
