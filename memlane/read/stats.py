"""What a scope holds, counted: memories by kind and status, raw messages, LLM jobs."""

from __future__ import annotations

from typing import Any

from ..store.base import USAGE_KEYS, RecordQuery, Store
from ..types import STATUSES, Scope


def stats(store: Store, embedder_id: str, scope: Scope) -> dict[str, Any]:
    tally = store.tally(RecordQuery(scope, statuses=STATUSES))
    memories: dict[str, dict[str, int]] = {}
    for (kind, status), n in sorted(tally.items()):
        memories.setdefault(kind, {})[status] = n
    job_tally = store.tally_jobs(scope)
    jobs = {status: count for status, (count, _) in sorted(job_tally.items())}
    usage = {k: sum(u[k] for _, u in job_tally.values()) for k in USAGE_KEYS}
    return {"scope": scope.as_dict(), "store": store.capabilities.name,
            "embedder": embedder_id, "memories": memories,
            "messages": store.count_messages(scope), "jobs": jobs, "llm_usage": usage}
