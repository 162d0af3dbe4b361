"""A store that lives in the process: for tests, notebooks and throwaway agents."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np

from ..errors import ConflictError, InvalidInputError
from ..kinds import TURN
from ..text import Analyzer
from ..types import HistoryEvent, Job, MemoryRecord, Message, Scope, Scored
from .base import (
    HIDDEN_TURN,
    USAGE_KEYS,
    ApiKey,
    EraseCounts,
    RecordQuery,
    ScopeCounts,
    StoreCapabilities,
    Vector,
    WriteBatch,
    WriteOutcome,
    check_add_key_reuse,
    check_basis,
    check_claim,
    dense_score,
    id_table,
    keyword_score,
    scope_counts,
)
from .bm25 import bm25_scores


class InMemoryStore:
    """Dictionaries behind a lock; exact vector search and BM25 computed per scope."""

    capabilities = StoreCapabilities(name="memory", persistent=False, multi_process=False)

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._keys: dict[str, ApiKey] = {}  # by id; kept by ``reset`` and ``erase``
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._meta: dict[str, str] = {}
            self._records: dict[str, MemoryRecord] = {}
            self._vectors: dict[str, Vector] = {}
            self._messages: dict[tuple[str, str, str, str, str], Message] = {}
            self._history: list[HistoryEvent] = []
            # by (scope, key): a key is its scope's own
            self._adds: dict[tuple[tuple[str, str, str, str], str],
                             tuple[Scope, tuple[str, ...], str | None]] = {}
            self._jobs: dict[str, Job] = {}

    def close(self) -> None:
        pass

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._meta[key] = value

    def write(self, batch: WriteBatch) -> WriteOutcome:
        with self._lock:
            add = (_scope_key(batch.scope), batch.add_key or "")
            if batch.add_key is not None and add in self._adds:
                _, ids, fingerprint = self._adds[add]
                check_add_key_reuse(batch, fingerprint)
                return WriteOutcome(False, ids)
            check_basis(batch, lambda n: self.recent_messages(batch.scope, n))
            self._check(batch)
            for message in batch.messages:
                self._messages[_message_key(message)] = message
            for record, vector in batch.inserts:
                self._records[record.id] = record
                self._vectors[record.id] = vector
            for update in batch.updates:
                self._records[update.record.id] = update.record
                if update.vector is not None:
                    self._vectors[update.record.id] = update.vector
            self._history.extend(batch.events)
            self._jobs.update((j.id, j) for j in batch.jobs)
            if batch.finish is not None:
                self._jobs[batch.finish.result.id] = batch.finish.result
            ids = tuple(r.id for r, _ in batch.inserts)
            if batch.add_key is not None:
                self._adds[add] = (batch.scope, ids, batch.add_fingerprint)
            return WriteOutcome(True, ids)

    def _check(self, batch: WriteBatch) -> None:
        """Validate the whole batch before changing anything (all or nothing)."""
        if batch.finish is not None:
            claimed = batch.finish.claimed
            check_claim(self._job(claimed.tenant, claimed.id), batch.finish)
        for job in batch.jobs:
            if job.id in self._jobs:
                raise InvalidInputError(f"job id {job.id!r} already exists")
        for message in batch.messages:
            if _message_key(message) in self._messages:
                raise InvalidInputError(f"message id {message.id!r} already exists in its scope")
        for record, _ in batch.inserts:
            if record.id in self._records:
                raise InvalidInputError(f"memory id {record.id!r} already exists")
        for update in batch.updates:
            current = self._records.get(update.record.id)
            if current is None or current.version != update.expected_version:
                raise ConflictError(f"memory {update.record.id} changed; re-read and retry")

    def get(self, tenant: str, ids: Sequence[str]) -> list[MemoryRecord]:
        with self._lock:
            found = (self._records.get(i) for i in ids)
            return [r for r in found if r is not None and r.tenant == tenant]

    def turns_citing(self, scope: Scope, message_ids: Sequence[str]) -> list[MemoryRecord]:
        wanted, key = set(message_ids), _scope_key(scope)
        with self._lock:
            return [r for r in self._records.values() if r.kind == TURN and r.source_ids
                    and r.source_ids[0] in wanted and _scope_key(r.scope) == key]

    def _admitted(self, query: RecordQuery) -> list[MemoryRecord]:
        with self._lock:
            return [r for r in self._records.values() if query.admits(r)]

    def find(self, query: RecordQuery, *, limit: int | None = None, offset: int = 0,
             newest_first: bool = False) -> list[MemoryRecord]:
        rows = sorted(self._admitted(query), key=lambda r: (r.event_time, r.id),
                      reverse=newest_first)
        return rows[offset:] if limit is None else rows[offset:offset + limit]

    def count(self, query: RecordQuery) -> int:
        return len(self._admitted(query))

    def tally(self, query: RecordQuery) -> dict[tuple[str, str], int]:
        return dict(Counter((r.kind, r.status) for r in self._admitted(query)))

    def keyword_search(self, query: RecordQuery, text: str, limit: int,
                       analyzer: Analyzer = "plain") -> list[Scored]:
        rows = self._admitted(query)
        scores = bm25_scores(text, [r.index_text for r in rows], analyzer=analyzer)
        ranked = sorted(
            ((s, r) for s, r in zip(scores, rows, strict=True) if s > 0),
            key=lambda pair: (-pair[0], pair[1].id),
        )
        return [Scored(r, keyword_score(s)) for s, r in ranked[:limit]]

    def vector_search(self, query: RecordQuery, vector: Vector, limit: int) -> list[Scored]:
        rows = self._admitted(query)
        if not rows:
            return []
        matrix = np.stack([self._vectors[r.id] for r in rows])
        cosines = matrix @ vector
        order = sorted(range(len(rows)), key=lambda i: (-float(cosines[i]), rows[i].id))
        return [Scored(rows[i], dense_score(float(cosines[i]))) for i in order[:limit]]

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, Vector]:
        with self._lock:
            return {i: self._vectors[i] for i in ids
                    if i in self._records and self._records[i].tenant == tenant}

    def history(self, tenant: str, memory_id: str) -> list[HistoryEvent]:
        with self._lock:
            return [e for e in self._history if e.memory_id == memory_id and e.tenant == tenant]

    def iter_history(self, tenant: str) -> Iterator[HistoryEvent]:
        with self._lock:
            events = [e for e in self._history if e.tenant == tenant]
        yield from events

    def count_messages(self, scope: Scope) -> int:
        return len(self.messages(scope))

    def scopes(self, query: RecordQuery) -> list[ScopeCounts]:
        memories = Counter((r.user_id, r.agent_id, r.session_id) for r in self._admitted(query))
        messages = Counter((m.user_id, m.agent_id, m.session_id)
                           for m in self.messages(query.scope))
        return scope_counts(memories, messages)

    def messages(self, scope: Scope, *, limit: int | None = None, offset: int = 0,
                 include_deleted: bool = False) -> list[Message]:
        with self._lock:
            hidden = set() if include_deleted else self._hidden()
            rows = [m for k, m in self._messages.items() if k not in hidden
                    and scope.contains(m.tenant, m.user_id, m.agent_id, m.session_id)]
        rows.sort(key=lambda m: (m.event_time, m.created_at))
        return rows[offset:] if limit is None else rows[offset:offset + limit]

    def _hidden(self) -> set[tuple[str, str, str, str, str]]:
        """The keys of the messages that deleted turns cite."""
        return {(*_scope_key(r.scope), source) for r in self._records.values()
                if (r.kind, r.status) == HIDDEN_TURN for source in r.source_ids}

    def claim_job(self, tenant: str, job_id: str, now: datetime,
                  stale_before: datetime) -> Job | None:
        with self._lock:
            job = self._job(tenant, job_id)
            if job is None or not _claimable(job, stale_before):
                return None
            claimed = replace(job, status="running", updated_at=now)
            self._jobs[job_id] = claimed
            return claimed

    def _job(self, tenant: str, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.tenant == tenant else None

    def tally_jobs(self, scope: Scope) -> dict[str, tuple[int, dict[str, int]]]:
        out: dict[str, tuple[int, dict[str, int]]] = {}
        with self._lock:
            jobs = [j for j in self._jobs.values()
                    if scope.contains(j.tenant, j.user_id, j.agent_id, j.session_id)]
        for job in jobs:
            count, usage = out.get(job.status, (0, dict.fromkeys(USAGE_KEYS, 0)))
            out[job.status] = (count + 1, {k: usage[k] + int(job.usage.get(k, 0))
                                           for k in USAGE_KEYS})
        return out

    def find_jobs(self, tenant: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 100) -> list[Job]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.tenant == tenant
                    and (statuses is None or j.status in statuses)]
        return sorted(jobs, key=lambda j: (j.created_at, j.id))[:limit]

    def job_tenants(self, statuses: Sequence[str]) -> list[str]:
        with self._lock:
            return sorted({j.tenant for j in self._jobs.values() if j.status in statuses})

    def put_key(self, key: ApiKey) -> None:
        with self._lock:
            if key.id in self._keys or self.find_key(key.hash) is not None:
                raise InvalidInputError(f"key {key.id!r} (or its hash) is already kept")
            self._keys[key.id] = key

    def find_key(self, key_hash: str) -> ApiKey | None:
        with self._lock:
            return next((k for k in self._keys.values() if k.hash == key_hash), None)

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        with self._lock:
            keys = [k for k in self._keys.values() if tenant is None or k.tenant == tenant]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    def revoke_key(self, key_id: str, when: datetime) -> ApiKey | None:
        with self._lock:
            key = self._keys.get(key_id)
            if key is not None and key.revoked_at is None:
                key = self._keys[key_id] = replace(key, revoked_at=when)
            return key

    def recent_messages(self, scope: Scope, limit: int) -> list[Message]:
        key = _scope_key(scope)
        with self._lock:
            hidden = self._hidden()
            rows = [m for k, m in self._messages.items() if k[:4] == key and k not in hidden]
        rows.sort(key=lambda m: m.event_time)  # stable: insertion order breaks ties
        return rows[::-1][:limit]

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted({r.tenant for r in self._records.values()}
                          | {m.tenant for m in self._messages.values()})

    def taken_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        with self._lock:
            held = (set(self._records) if id_table(table) == "memories"
                    else {e.id for e in self._history})
        return held & set(ids)

    def erase(self, scope: Scope, *, wait: float | None = None) -> EraseCounts:
        """Drop the scope's objects; no file holds them (the process's freed memory may,
        until reused: ``wal_truncated`` and ``verified_clean`` are None)."""
        with self._lock:
            gone = {i for i, r in self._records.items()
                    if scope.contains(r.tenant, r.user_id, r.agent_id, r.session_id)}
            msg_keys = [k for k, m in self._messages.items()
                        if scope.contains(m.tenant, m.user_id, m.agent_id, m.session_id)]
            for key in msg_keys:
                del self._messages[key]
            for memory_id in gone:
                del self._records[memory_id]
                del self._vectors[memory_id]
            jobs = {i: j for i, j in self._jobs.items() if not _within(scope, j.scope)}
            kept = [e for e in self._history if e.memory_id not in gone]
            adds = {k: v for k, v in self._adds.items()
                    if not (_within(scope, v[0]) or gone.intersection(v[1]))}
            counts = EraseCounts(messages=len(msg_keys), memories=len(gone),
                                 history=len(self._history) - len(kept), vectors=len(gone),
                                 adds=len(self._adds) - len(adds),
                                 jobs=len(self._jobs) - len(jobs))
            self._jobs, self._history, self._adds = jobs, kept, adds
            return counts


def _message_key(message: Message) -> tuple[str, str, str, str, str]:
    return (message.tenant, message.user_id or "", message.agent_id or "",
            message.session_id or "", message.id)


def _scope_key(scope: Scope) -> tuple[str, str, str, str]:
    return (scope.tenant, scope.user_id or "", scope.agent_id or "", scope.session_id or "")



def _claimable(job: Job, stale_before: datetime) -> bool:
    return job.status == "pending" or (job.status == "running"
                                       and job.updated_at < stale_before)


def _within(outer: Scope, inner: Scope) -> bool:
    return outer.contains(inner.tenant, inner.user_id, inner.agent_id, inner.session_id)
