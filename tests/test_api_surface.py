"""The public surface: exported names, and sync/async parity."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import memlane
from memlane import AsyncMemory, FakeEmbedder, Memory
from memlane.remote import RemoteMemory

EXPORTED = [
    "RECIPES", "AccessError", "AsyncMemory", "AuthenticationError", "BackendError",
    "ConfigurationError", "ConflictError", "Context",
    "Embedder", "ErasurePendingError", "FakeEmbedder", "FilterError", "HistoryEvent",
    "InvalidInputError",
    "MemlaneError", "Memory", "MemoryRecord", "Message", "MiniLMEmbedder", "ModelError",
    "NotFoundError", "PermissionDeniedError", "RateLimitedError", "ReadOnlyError",
    "RequestTooLargeError", "Scope", "SearchConfig", "SearchHit", "SignalDetail",
    "StoreError", "UsageError", "__version__",
]


def test_exported_members() -> None:
    assert sorted(memlane.__all__) == sorted(EXPORTED)
    for name in memlane.__all__:
        assert hasattr(memlane, name)


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member, eval_str=True) for name, member in vars(cls).items()
            if not name.startswith("_") and callable(member)}


def test_async_api_equals_sync_api() -> None:
    sync, aio = _public(Memory), _public(AsyncMemory)
    assert set(sync) == set(aio)
    views = {"for_tenant"}  # returns a view of its own class at once: nothing to wait for
    for name in views:
        assert sync[name].return_annotation is Memory
        assert aio[name] == sync[name].replace(return_annotation=AsyncMemory), name
    for name, signature in sync.items():
        if name in views:
            continue
        assert aio[name] == signature, name
        assert inspect.iscoroutinefunction(getattr(AsyncMemory, name)), name
    init_sync = inspect.signature(Memory.__init__, eval_str=True)
    assert inspect.signature(AsyncMemory.__init__, eval_str=True) == init_sync


def test_remote_api_equals_embedded_api() -> None:
    """Every public method of ``Memory`` is the remote's own (never the embedded code run
    on a client), with the same signature; its constructor takes ``Memory``'s arguments
    first, then options of its own."""
    assert issubclass(RemoteMemory, Memory)
    embedded, remote = _public(Memory), _public(RemoteMemory)
    assert set(remote) == set(embedded)
    for name, signature in embedded.items():
        assert remote[name] == signature, name
    init = list(inspect.signature(Memory.__init__, eval_str=True).parameters.values())
    remote_init = list(inspect.signature(RemoteMemory.__init__, eval_str=True).parameters.values())
    assert remote_init[:len(init)] == init
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty
               for p in remote_init[len(init):])


def test_async_memory_works_end_to_end() -> None:
    async def scenario() -> list[str]:
        async with AsyncMemory(":memory:", embedder=FakeEmbedder()) as mem:
            added = await asyncio.gather(*(mem.add(f"note {i}", user_id="u") for i in range(5)))
            assert len(added) == 5
            hits = await mem.search("note 3", user_id="u", recipe="bm25")
            await mem.update(hits[0].id, "note three", user_id="u")
            return [e.op for e in await mem.history(hits[0].id)]

    assert asyncio.run(scenario()) == ["add", "update"]


def test_async_memory_names_its_tenant_read_only() -> None:
    mem = AsyncMemory(":memory:", embedder=FakeEmbedder(), tenant="acme")
    try:
        assert mem.tenant == "acme" and mem.for_tenant("globex").tenant == "globex"
        with pytest.raises(AttributeError):
            mem.tenant = "other"  # type: ignore[misc]
    finally:
        mem.sync.close()
