"""Looking a memory up by id for a caller: found only inside the caller's scope."""

from __future__ import annotations

from ..errors import NotFoundError
from ..store.base import Store
from ..types import MemoryRecord, Scope


def owned(store: Store, scope: Scope, memory_id: str) -> MemoryRecord:
    """The record with that id if it lies in ``scope``; else ``NotFoundError``, worded the
    same whether the id is missing or belongs to another scope."""
    found = store.get(scope.tenant, [memory_id])
    if not found or not scope.contains(found[0].tenant, found[0].user_id,
                                       found[0].agent_id, found[0].session_id):
        raise NotFoundError(f"no memory {memory_id!r} in this scope")
    return found[0]
