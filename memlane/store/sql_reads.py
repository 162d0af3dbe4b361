"""The reads the SQL stores share, written once and given the pieces in which their SQL
differs (``Dialect``): counts and tallies, scopes, the visibility of raw messages, listings,
and the rows their in-process indexes are derived from (``derived.RowSource``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from ..kinds import TURN
from ..timeutil import to_text
from ..types import SCOPE_FIELDS, HistoryEvent, Job, MemoryRecord, Message, Scope, index_text
from . import rows as codec
from .base import (
    HIDDEN_TURN,
    USAGE_KEYS,
    JobFinish,
    RecordQuery,
    ScopeCounts,
    ScopeTriple,
    Vector,
    id_table,
    scope_counts,
)
from .derived import Delta
from .rows import scope_condition, scope_values

Params = list[Any]
Reader = Callable[[str, Sequence[Any]], list[Any]]
"""Run one query, its rows as a list (the store translates the driver's errors)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """Where the SQL of the two stores differs: syntax, and where vectors are kept."""

    mark: str
    """The driver's parameter marker."""
    where: Callable[[RecordQuery], tuple[str, Params]]
    """The WHERE clause (on the alias ``m``) that admits what ``RecordQuery.admits`` does."""
    one_of: Callable[[Sequence[Any]], tuple[str, Params]]
    """SQL following an expression, true when it is one of the values (ids, statuses)."""
    chunk: int | None
    """How many values one query binds with ``one_of`` (None: all at once)."""
    rowid: str
    """The column of row ids, never reused, that the in-process indexes are keyed by."""
    collate: str
    """Appended to a text column so that it sorts as Python compares strings."""
    no_limit: Any
    """The LIMIT value that means no limit."""
    as_text: frozenset[str]
    """The columns that the driver must read as text (JSON, decoded by ``rows``)."""
    admitted: str
    """The columns of an admitted row: row id, version and, where the store needs it, the
    row's keyword count (``derived.Admitted.lengths``)."""
    hidden_messages: str
    """SQL true for a ``messages`` row cited by a deleted turn of its own conversation;
    ``{scope}`` stands for the scope condition on the memories alias ``m``, with the
    turn's kind and status as the two parameters after it."""
    usage_number: str
    """SQL of one usage counter of a job as a number, ``{key}`` standing for its name."""
    vectors_by_rowid: str
    """The (row id, vector) rows of some row ids, ``{ids}`` standing for ``one_of``."""
    vectors_by_id: str
    """The (id, vector) rows of some ids of a tenant (the first parameter), ``{ids}`` as
    above."""
    first_source: str
    """SQL of a record's first source id, as its turns' partial index has it."""
    change_mark: str | None = None
    """SQL of one row for a tenant (the parameter): the number of its last change to
    ``memories`` and how many removals the store has seen, where a later ``changes``
    starts; None for a store that cannot tell what changed since a point (its indexes then
    read again all that a query admits). Change numbers must follow the order in which
    the changes became visible."""
    change_column: str = ""
    """The column of ``memories`` holding the number of the change that wrote the row."""
    by_change: str = ""
    """What follows ``FROM memories m`` in a query on the rows changed after a change
    number (an index hint)."""


@functools.cache
def select_list(names: str, alias: str, as_text: frozenset[str]) -> str:
    """``names`` (as in ``rows.COLS``) as a SELECT list, those in ``as_text`` cast."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{n}::text" if n in as_text else f"{prefix}{n}"
                     for n in (c.strip() for c in names.split(",")))


def scope_where(scope: Scope, mark: str) -> tuple[str, Params]:
    """The rows inside ``scope`` of a table with scope columns (no alias)."""
    parts, params = scope_condition(scope, mark)
    return " AND ".join(parts), params


@dataclass(frozen=True, slots=True)
class SQLReads:
    """The shared reads of a SQL store, run by ``read``; also the row source of its
    in-process indexes, ``generation`` telling when a query's rows may have changed."""

    dialect: Dialect
    read: Reader
    generation: Callable[[RecordQuery], Hashable]

    def on(self, read: Reader) -> SQLReads:
        """The same reads run by another reader (e.g. inside a write transaction)."""
        return replace(self, read=read)

    def _cols(self, names: str, alias: str = "") -> str:
        return select_list(names, alias, self.dialect.as_text)

    def _by_ids(self, sql: str, ids: Sequence[Any], *lead: Any) -> Iterator[Any]:
        """The rows of ``sql`` for ``ids`` (bound in chunks where ``{ids}`` stands)."""
        values, size = list(ids), self.dialect.chunk or max(len(ids), 1)
        for start in range(0, len(values), size):
            one_of, params = self.dialect.one_of(values[start:start + size])
            yield from self.read(sql.format(ids=one_of), (*lead, *params))

    # --- records --------------------------------------------------------------------------

    def get(self, tenant: str, ids: Sequence[str]) -> list[MemoryRecord]:
        sql = (f"SELECT {self._cols(codec.COLS)} FROM memories WHERE tenant = "
               f"{self.dialect.mark} AND id {{ids}}")
        found = {r[0]: codec.record(r) for r in self._by_ids(sql, ids, tenant)}
        return [found[i] for i in ids if i in found]

    def find(self, query: RecordQuery, *, limit: int | None = None, offset: int = 0,
             newest_first: bool = False) -> list[MemoryRecord]:
        d = self.dialect
        where, params = d.where(query)
        order = "DESC" if newest_first else "ASC"
        rows = self.read(
            f"SELECT {self._cols(codec.COLS, 'm')} FROM memories m WHERE {where} ORDER BY "
            f"m.event_time{d.collate} {order}, m.id{d.collate} {order} "
            f"LIMIT {d.mark} OFFSET {d.mark}",
            (*params, d.no_limit if limit is None else limit, offset))
        return [codec.record(r) for r in rows]

    def turns_citing(self, scope: Scope, message_ids: Sequence[str]) -> list[MemoryRecord]:
        d = self.dialect
        sql = (f"SELECT {self._cols(codec.COLS)} FROM memories WHERE kind = '{TURN}' AND "
               f"tenant = {d.mark} AND user_id = {d.mark} AND agent_id = {d.mark} AND "
               f"session_id = {d.mark} AND {d.first_source} {{ids}}")
        return [codec.record(r) for r in
                self._by_ids(sql, message_ids, scope.tenant, *scope_values(scope))]

    def count(self, query: RecordQuery) -> int:
        where, params = self.dialect.where(query)
        return int(self.read(f"SELECT count(*) FROM memories m WHERE {where}", params)[0][0])

    def tally(self, query: RecordQuery) -> dict[tuple[str, str], int]:
        where, params = self.dialect.where(query)
        rows = self.read(f"SELECT m.kind, m.status, count(*) FROM memories m WHERE {where} "
                         "GROUP BY m.kind, m.status", params)
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, Vector]:
        rows = self._by_ids(self.dialect.vectors_by_id, ids, tenant)
        return {r[0]: np.frombuffer(bytes(r[1]), dtype=np.float32) for r in rows}

    def tenants(self) -> list[str]:
        rows = self.read("SELECT tenant FROM memories UNION SELECT tenant FROM messages", ())
        return sorted(r[0] for r in rows)

    def taken_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        sql = f"SELECT DISTINCT id FROM {id_table(table)} WHERE id {{ids}}"
        return {r[0] for r in self._by_ids(sql, ids)}

    def get_meta(self, key: str) -> str | None:
        rows = self.read(f"SELECT value FROM meta WHERE key = {self.dialect.mark}", (key,))
        return rows[0][0] if rows else None

    # --- raw messages and history ---------------------------------------------------------

    def _not_hidden(self, turn: list[str], params: Params) -> tuple[str, Params]:
        """SQL true for a message that no deleted turn cites among the memories that meet
        the conditions ``turn`` (on the alias ``m``, with ``params``)."""
        hidden = self.dialect.hidden_messages.format(scope=" AND ".join(turn))
        return f"NOT {hidden}", [*params, *HIDDEN_TURN]

    def _messages_where(self, scope: Scope, include_deleted: bool = False,
                        ) -> tuple[str, Params]:
        """The rows of ``messages`` that ``Store.messages`` lists (no alias)."""
        mark = self.dialect.mark
        where, params = scope_where(scope, mark)
        if include_deleted:
            return where, params
        visible, extra = self._not_hidden(*scope_condition(scope, mark, "m"))
        return f"{where} AND {visible}", [*params, *extra]

    def _conversation_where(self, scope: Scope) -> tuple[str, Params]:
        """The messages of exactly the conversation of ``scope`` (fields left out must be
        empty), those of deleted turns left out (no alias)."""
        mark = self.dialect.mark
        values = [scope.tenant, *scope_values(scope)]
        columns = ("tenant", *SCOPE_FIELDS)
        visible, extra = self._not_hidden([f"m.{c} = {mark}" for c in columns], values)
        exact = " AND ".join(f"{c} = {mark}" for c in columns)
        return f"{exact} AND {visible}", [*values, *extra]

    def messages(self, scope: Scope, *, limit: int | None = None, offset: int = 0,
                 include_deleted: bool = False) -> list[Message]:
        d = self.dialect
        where, params = self._messages_where(scope, include_deleted)
        rows = self.read(f"SELECT {self._cols(codec.MSG_COLS)} FROM messages WHERE {where} "
                         f"ORDER BY event_time{d.collate}, {d.rowid} "
                         f"LIMIT {d.mark} OFFSET {d.mark}",
                         (*params, d.no_limit if limit is None else limit, offset))
        return [codec.message(r) for r in rows]

    def recent_messages(self, scope: Scope, limit: int) -> list[Message]:
        d = self.dialect
        where, params = self._conversation_where(scope)
        rows = self.read(f"SELECT {self._cols(codec.MSG_COLS)} FROM messages WHERE {where} "
                         f"ORDER BY event_time{d.collate} DESC, {d.rowid} DESC "
                         f"LIMIT {d.mark}", (*params, limit))
        return [codec.message(r) for r in rows]

    def count_messages(self, scope: Scope) -> int:
        where, params = self._messages_where(scope)
        return int(self.read(f"SELECT count(*) FROM messages WHERE {where}", params)[0][0])

    def scopes(self, query: RecordQuery) -> list[ScopeCounts]:
        where, params = self.dialect.where(query)
        scope_sql, scope_params = self._messages_where(query.scope)
        rows = self.read(
            "SELECT m.user_id, m.agent_id, m.session_id, count(*), 0 FROM memories m "
            f"WHERE {where} GROUP BY m.user_id, m.agent_id, m.session_id UNION ALL "
            "SELECT user_id, agent_id, session_id, 0, count(*) FROM messages "
            f"WHERE {scope_sql} GROUP BY user_id, agent_id, session_id",
            [*params, *scope_params])
        memories: dict[ScopeTriple, int] = {}
        messages: dict[ScopeTriple, int] = {}
        for user, agent, session, n_memories, n_messages in rows:
            key = (user or None, agent or None, session or None)
            if n_memories:
                memories[key] = int(n_memories)
            if n_messages:
                messages[key] = int(n_messages)
        return scope_counts(memories, messages)

    def history(self, tenant: str, memory_id: str) -> list[HistoryEvent]:
        d = self.dialect
        rows = self.read(f"SELECT {codec.HIST_COLS} FROM history WHERE tenant = {d.mark} "
                         f"AND memory_id = {d.mark} ORDER BY {d.rowid}", (tenant, memory_id))
        return [codec.event(r) for r in rows]

    def iter_history(self, tenant: str) -> Iterator[HistoryEvent]:
        d = self.dialect
        rows = self.read(f"SELECT {codec.HIST_COLS} FROM history WHERE tenant = {d.mark} "
                         f"ORDER BY {d.rowid}", (tenant,))
        return (codec.event(r) for r in rows)

    # --- jobs -----------------------------------------------------------------------------

    def find_jobs(self, tenant: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 100) -> list[Job]:
        d = self.dialect
        where, params = f"tenant = {d.mark}", [tenant]
        if statuses is not None:
            one_of, values = d.one_of(list(statuses))
            where, params = f"{where} AND status {one_of}", [*params, *values]
        rows = self.read(f"SELECT {self._cols(codec.JOB_COLS)} FROM jobs WHERE {where} "
                         f"ORDER BY created_at{d.collate}, id{d.collate} LIMIT {d.mark}",
                         (*params, limit))
        return [codec.job(r) for r in rows]

    def job_tenants(self, statuses: Sequence[str]) -> list[str]:
        one_of, values = self.dialect.one_of(list(statuses))
        rows = self.read(f"SELECT DISTINCT tenant FROM jobs WHERE status {one_of}", values)
        return sorted(r[0] for r in rows)

    def claim_job_sql(self, tenant: str, job_id: str, now: datetime,
                      stale_before: datetime) -> tuple[str, Params]:
        """The UPDATE of ``Store.claim_job``, returning the job as claimed (run in a write
        transaction by the store)."""
        m = self.dialect.mark
        return (f"UPDATE jobs SET status = 'running', updated_at = {m} WHERE tenant = {m} AND "
                f"id = {m} AND (status = 'pending' OR (status = 'running' AND updated_at < "
                f"{m})) RETURNING {self._cols(codec.JOB_COLS)}",
                [to_text(now), tenant, job_id, to_text(stale_before)])

    def finish_job_sql(self, finish: JobFinish, json_mark: str) -> tuple[str, Params]:
        """The UPDATE that writes a job's outcome if the job is still running under the
        claim that produced it (``WriteBatch.finish``), returning its id (no row: the claim
        is gone); ``json_mark`` is the parameter marker of a JSON column."""
        m, new, claimed = self.dialect.mark, finish.result, finish.claimed
        return (f"UPDATE jobs SET status = {m}, attempts = {m}, error = {m}, actions = "
                f"{json_mark}, usage = {json_mark}, updated_at = {m} WHERE tenant = {m} AND "
                f"id = {m} AND status = 'running' AND updated_at = {m} RETURNING id",
                [new.status, new.attempts, new.error, json.dumps(list(new.actions)),
                 json.dumps(new.usage), to_text(new.updated_at), claimed.tenant, claimed.id,
                 to_text(claimed.updated_at)])

    def tally_jobs(self, scope: Scope) -> dict[str, tuple[int, dict[str, int]]]:
        where, params = scope_where(scope, self.dialect.mark)
        sums = ", ".join(f"coalesce(sum({self.dialect.usage_number.format(key=k)}), 0)"
                         for k in USAGE_KEYS)
        rows = self.read(f"SELECT status, count(*), {sums} FROM jobs WHERE {where} "
                         "GROUP BY status", params)
        return {r[0]: (int(r[1]), {k: int(v) for k, v in zip(USAGE_KEYS, r[2:], strict=True)})
                for r in rows}

    # --- the row source of the in-process indexes (``derived``) ---------------------------

    def admitted_key(self, query: RecordQuery) -> Hashable:
        where, params = self.dialect.where(query)
        return (where, *(tuple(p) if isinstance(p, list) else p for p in params))

    def admitted_rows(self, query: RecordQuery) -> list[Any]:
        where, params = self.dialect.where(query)
        return self.read(f"SELECT {self.dialect.admitted} FROM memories m WHERE {where}",
                         params)

    def mark(self, query: RecordQuery) -> Hashable:
        """Where the changes written after now start (None: this store cannot tell)."""
        if self.dialect.change_mark is None:
            return None
        return tuple(self.read(self.dialect.change_mark, (query.scope.tenant,))[0])

    def changes(self, query: RecordQuery, since: Hashable, now: Hashable,
                most: int) -> Delta | None:
        """The rows changed after ``since`` and, of those, what ``query`` admits now; None
        when more than ``most`` changed or rows were removed since (read all again)."""
        d = self.dialect
        if not (isinstance(since, tuple) and isinstance(now, tuple)) or (
                since[1] != now[1] or now[0] < since[0]):  # rows removed, or all reset
            return None
        where, params = d.where(query)
        rows = self.read(  # one statement: the changed rows and the admitted ones agree
            f"SELECT {d.admitted}, CASE WHEN {where} THEN 1 ELSE 0 END FROM memories m "
            f"{d.by_change} WHERE m.tenant = {d.mark} AND m.{d.change_column} > {d.mark} "
            f"LIMIT {d.mark}", (*params, query.scope.tenant, since[0], most + 1))
        if len(rows) > most:
            return None
        return Delta([r[0] for r in rows], [tuple(r[:-1]) for r in rows if r[-1]])

    def load_texts(self, rowids: list[int]) -> Iterable[tuple[int, str]]:
        rowid = self.dialect.rowid
        rows = self._by_ids(f"SELECT {rowid}, text, speaker FROM memories WHERE {rowid} {{ids}}",
                            rowids)
        return ((r[0], index_text(r[1], r[2])) for r in rows)

    def load_vectors(self, rowids: list[int]) -> Iterable[tuple[int, bytes]]:
        return ((r[0], bytes(r[1])) for r in self._by_ids(self.dialect.vectors_by_rowid, rowids))

    def records_by_rowid(self, rowids: list[int]) -> dict[int, MemoryRecord]:
        rowid = self.dialect.rowid
        rows = self._by_ids(f"SELECT {rowid}, {self._cols(codec.COLS)} FROM memories WHERE "
                            f"{rowid} {{ids}}", rowids)
        return {r[0]: codec.record(r[1:]) for r in rows}
