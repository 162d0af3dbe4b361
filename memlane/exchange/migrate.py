"""Copy everything from one store to another: messages, memories of every status with their
vectors (no re-embedding), history and jobs, scope by scope; then verify the counts."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..errors import ConfigurationError, StoreError
from ..store.base import RecordQuery, Store, WriteBatch
from ..types import STATUSES, Scope, content_hash

PAGE = 5_000
ScopeKey = tuple[str, str | None, str | None, str | None]


def migrate(source: Store, target: Store, *, progress: bool = False) -> dict[str, Any]:
    """Copy every tenant of ``source`` into ``target``; return per-tenant counts."""
    from tqdm import tqdm

    embedder = source.get_meta("embedder")
    existing = target.get_meta("embedder")
    if embedder and existing and existing != embedder:
        raise ConfigurationError(f"the target holds vectors from {existing}, the source from "
                                 f"{embedder}; migrate into an empty store")
    if embedder and not existing:
        target.set_meta("embedder", embedder)
    report: dict[str, Any] = {}
    for tenant in tqdm(source.tenants(), desc="migrate", unit="tenant", disable=not progress):
        report[tenant] = _tenant(source, target, tenant)
    return report


def _tenant(source: Store, target: Store, tenant: str) -> dict[str, int]:
    everything = Scope(tenant)
    groups: defaultdict[ScopeKey, WriteBatch] = defaultdict(lambda: WriteBatch(everything))
    messages = source.messages(everything, include_deleted=True)
    for m in messages:
        groups[(tenant, m.user_id, m.agent_id, m.session_id)].messages.append(m)
    records, offset, home = [], 0, {}
    query = RecordQuery(everything, statuses=STATUSES)
    while page := source.find(query, limit=PAGE, offset=offset):
        vectors = source.vectors(tenant, [r.id for r in page])
        for r in page:
            key = (tenant, r.user_id, r.agent_id, r.session_id)
            groups[key].inserts.append((r, vectors[r.id]))
            home[r.id] = key
        records += page
        offset += len(page)
    events = [e for e in source.iter_history(tenant) if e.memory_id in home]
    for e in events:
        groups[home[e.memory_id]].events.append(e)
    jobs = source.find_jobs(tenant, limit=10**9)
    for j in jobs:
        groups[(tenant, j.user_id, j.agent_id, j.session_id)].jobs.append(j)
    for key, batch in groups.items():
        batch.scope = Scope(*key)
        batch.add_key = "migrate:" + content_hash(*(m.id for m in batch.messages),
                                                  *(r.id for r, _ in batch.inserts))
        target.write(batch)
    counts = {"messages": len(messages), "memories": len(records), "history": len(events),
              "jobs": len(jobs)}
    _verify(target, tenant, counts)
    return counts


def _verify(target: Store, tenant: str, expected: dict[str, int]) -> None:
    everything = Scope(tenant)
    found = {
        "messages": len(target.messages(everything, include_deleted=True)),
        "memories": target.count(RecordQuery(everything, statuses=STATUSES)),
        "history": sum(1 for _ in target.iter_history(tenant)),
        "jobs": len(target.find_jobs(tenant, limit=10**9)),
    }
    if found != expected:
        raise StoreError(f"migration of tenant {tenant!r} incomplete: expected {expected}, "
                         f"the target holds {found}")
