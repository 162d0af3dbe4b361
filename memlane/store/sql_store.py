"""What both SQL stores answer alike, forwarded to the parts each is built with: the shared
queries (``sql_reads``) and the in-process search indexes (``derived``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..text import Analyzer
from ..types import HistoryEvent, Job, MemoryRecord, Message, Scope, Scored
from . import sql_keys
from .base import ApiKey, RecordQuery, ScopeCounts, Vector
from .derived import DerivedIndex
from .sql_reads import SQLReads


class SQLStore:
    """The reads of a SQL store; the store adds its writes, erasure and connections."""

    def __init__(self, reads: SQLReads, index: DerivedIndex) -> None:
        self._reads = reads
        self._index = index

    @property
    def keyword_indexes(self) -> int:
        """How many keyword indexes this process keeps (one per scope and analyzer searched
        in process; a scope searched in the database has none)."""
        return self._index.keyword_indexes

    def get(self, tenant: str, ids: Sequence[str]) -> list[MemoryRecord]:
        return self._reads.get(tenant, ids)

    def turns_citing(self, scope: Scope, message_ids: Sequence[str]) -> list[MemoryRecord]:
        return self._reads.turns_citing(scope, message_ids)

    def find(self, query: RecordQuery, *, limit: int | None = None, offset: int = 0,
             newest_first: bool = False) -> list[MemoryRecord]:
        return self._reads.find(query, limit=limit, offset=offset, newest_first=newest_first)

    def count(self, query: RecordQuery) -> int:
        return self._reads.count(query)

    def tally(self, query: RecordQuery) -> dict[tuple[str, str], int]:
        return self._reads.tally(query)

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, Vector]:
        return self._reads.vectors(tenant, ids)

    def keyword_search(self, query: RecordQuery, text: str, limit: int,
                       analyzer: Analyzer = "plain") -> list[Scored]:
        return self._index.keyword_search(query, text, limit, analyzer)

    def vector_search(self, query: RecordQuery, vector: Vector, limit: int) -> list[Scored]:
        return self._index.vector_search(query, vector, limit)

    def messages(self, scope: Scope, *, limit: int | None = None, offset: int = 0,
                 include_deleted: bool = False) -> list[Message]:
        return self._reads.messages(scope, limit=limit, offset=offset,
                                    include_deleted=include_deleted)

    def count_messages(self, scope: Scope) -> int:
        return self._reads.count_messages(scope)

    def recent_messages(self, scope: Scope, limit: int) -> list[Message]:
        return self._reads.recent_messages(scope, limit)

    def history(self, tenant: str, memory_id: str) -> list[HistoryEvent]:
        return self._reads.history(tenant, memory_id)

    def iter_history(self, tenant: str) -> Iterator[HistoryEvent]:
        return self._reads.iter_history(tenant)

    def scopes(self, query: RecordQuery) -> list[ScopeCounts]:
        return self._reads.scopes(query)

    def find_jobs(self, tenant: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 100) -> list[Job]:
        return self._reads.find_jobs(tenant, statuses=statuses, limit=limit)

    def job_tenants(self, statuses: Sequence[str]) -> list[str]:
        return self._reads.job_tenants(statuses)

    def find_key(self, key_hash: str) -> ApiKey | None:
        return sql_keys.find_key(self._reads.read, self._reads.dialect.mark, key_hash)

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        return sql_keys.list_keys(self._reads.read, self._reads.dialect.mark, tenant)

    def tally_jobs(self, scope: Scope) -> dict[str, tuple[int, dict[str, int]]]:
        return self._reads.tally_jobs(scope)

    def tenants(self) -> list[str]:
        return self._reads.tenants()

    def taken_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        return self._reads.taken_ids(table, ids)

    def get_meta(self, key: str) -> str | None:
        return self._reads.get_meta(key)
