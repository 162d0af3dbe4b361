"""What the SQL stores share beyond row encoding: the WHERE clause of a record query and
the walk over a filter tree (given the dialect's pieces), and the queries that only differ
by the dialect."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..filters import And, Cmp, Node, Not, Or
from ..timeutil import to_text
from ..types import SCOPE_FIELDS, Scope
from .base import (
    AS_OF_STATUSES,
    HIDDEN_TURN,
    USAGE_KEYS,
    RecordQuery,
    ScopeCounts,
    ScopeTriple,
    scope_counts,
)
from .rows import scope_condition, scope_values

Params = list[Any]
Leaf = Callable[[Cmp, str], tuple[str, Params]]
"""Compile one comparison, given the SQL expression of its field (or metadata column)."""
Member = Callable[[str, Sequence[str]], tuple[str, Params]]
"""``expr`` is one of ``values``, in the dialect's form."""
ORDER_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def record_where(query: RecordQuery, alias: str, mark: str, member: Member,
                 compile_filter: Callable[[Node, str], tuple[str, Params]]) -> tuple[str, Params]:
    """The WHERE clause that admits exactly what ``query.admits`` admits."""
    parts, params = scope_condition(query.scope, mark, alias)

    def add(sql: str, values: Params) -> None:
        parts.append(sql)
        params.extend(values)

    if query.kinds is not None:
        add(*member(f"{alias}.kind", query.kinds))
    if query.exclude_kinds:
        sql, values = member(f"{alias}.kind", query.exclude_kinds)
        add(f"NOT ({sql})", values)
    add(*member(f"{alias}.status", query.statuses if query.as_of is None else AS_OF_STATUSES))
    if query.as_of is not None:
        moment = to_text(query.as_of)
        add(f"{alias}.valid_from <= {mark} AND ({alias}.valid_to IS NULL OR "
            f"{alias}.valid_to > {mark})", [moment, moment])
    if query.filters is not None:
        add(*compile_filter(query.filters, alias))
    return " AND ".join(parts), params


def by_type(values: Sequence[Any]) -> dict[str, list[Any]]:
    """The values of an ``in`` list grouped by type ("text", "int", "float", "other":
    booleans and null, once each), so that each group binds as one array parameter
    whatever the length of the list."""
    groups: dict[str, list[Any]] = {"text": [], "int": [], "float": [], "other": []}
    for value in values:
        if isinstance(value, bool) or value is None:
            if value not in groups["other"]:
                groups["other"].append(value)
        elif isinstance(value, str):
            groups["text"].append(value)
        else:
            groups["int" if isinstance(value, int) else "float"].append(value)
    return groups


def column(field: str, alias: str) -> str:
    """A record field as SQL; scope columns store '' for "not set", read back as NULL."""
    if field in SCOPE_FIELDS:
        return f"NULLIF({alias}.{field}, '')"
    return f"{alias}.{field}"


def compile_tree(node: Node, alias: str, leaf: Leaf, json_leaf: Leaf,
                 false: str) -> tuple[str, Params]:
    """AND/OR/NOT over compiled leaves; a leaf that is NULL counts as false."""
    if isinstance(node, And | Or):
        joined = [compile_tree(n, alias, leaf, json_leaf, false) for n in node.items]
        glue = " AND " if isinstance(node, And) else " OR "
        return "(" + glue.join(s for s, _ in joined) + ")", [p for _, ps in joined for p in ps]
    if isinstance(node, Not):
        sql, params = compile_tree(node.item, alias, leaf, json_leaf, false)
        return f"(NOT {sql})", params
    if node.ftype == "json":
        sql, params = json_leaf(node, f"{alias}.metadata")
    else:
        sql, params = leaf(node, column(node.field, alias))
    return f"COALESCE(({sql}), {false})", params


class SQLCounts:
    """``count``, ``tally``, ``count_messages``, ``scopes`` and ``tally_jobs`` for a store
    with ``_rows``, a dialect's ``_where`` and its parameter marker ``_mark``."""

    _mark: str

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _where(self, query: RecordQuery) -> tuple[str, Params]:
        raise NotImplementedError

    def count(self, query: RecordQuery) -> int:
        where, params = self._where(query)
        return int(self._rows(f"SELECT count(*) FROM memories m WHERE {where}", params)[0][0])

    def tally(self, query: RecordQuery) -> dict[tuple[str, str], int]:
        where, params = self._where(query)
        rows = self._rows(f"SELECT m.kind, m.status, count(*) FROM memories m WHERE {where} "
                          "GROUP BY m.kind, m.status", params)
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def _scope_where(self, scope: Scope) -> tuple[str, Params]:
        """The rows inside ``scope`` of a table with scope columns (no alias)."""
        parts, params = scope_condition(scope, self._mark)
        return " AND ".join(parts), params

    _hidden_messages: str
    """SQL true for a ``messages`` row cited by a deleted turn of its own conversation;
    ``{scope}`` stands for the scope condition on the memories alias ``m``, with the
    turn's kind and status as the two parameters after it."""

    def _not_hidden(self, turn: list[str], params: Params) -> tuple[str, Params]:
        """SQL true for a message that no deleted turn cites among the memories that meet
        the conditions ``turn`` (on the alias ``m``, with ``params``)."""
        hidden = self._hidden_messages.format(scope=" AND ".join(turn))
        return f"NOT {hidden}", [*params, *HIDDEN_TURN]

    def _messages_where(self, scope: Scope, include_deleted: bool = False,
                        ) -> tuple[str, Params]:
        """The rows of ``messages`` that ``Store.messages`` lists (no alias)."""
        where, params = self._scope_where(scope)
        if include_deleted:
            return where, params
        visible, extra = self._not_hidden(*scope_condition(scope, self._mark, "m"))
        return f"{where} AND {visible}", [*params, *extra]

    def _conversation_where(self, scope: Scope) -> tuple[str, Params]:
        """The messages of exactly the conversation of ``scope`` (fields left out must be
        empty), those of deleted turns left out (no alias)."""
        values = [scope.tenant, *scope_values(scope)]
        columns = ("tenant", *SCOPE_FIELDS)
        visible, extra = self._not_hidden([f"m.{c} = {self._mark}" for c in columns], values)
        exact = " AND ".join(f"{c} = {self._mark}" for c in columns)
        return f"{exact} AND {visible}", [*values, *extra]

    def count_messages(self, scope: Scope) -> int:
        where, params = self._messages_where(scope)
        return int(self._rows(f"SELECT count(*) FROM messages WHERE {where}", params)[0][0])

    def scopes(self, query: RecordQuery) -> list[ScopeCounts]:
        where, params = self._where(query)
        scope_where, scope_params = self._messages_where(query.scope)
        rows = self._rows(
            "SELECT m.user_id, m.agent_id, m.session_id, count(*), 0 FROM memories m "
            f"WHERE {where} GROUP BY m.user_id, m.agent_id, m.session_id UNION ALL "
            "SELECT user_id, agent_id, session_id, 0, count(*) FROM messages "
            f"WHERE {scope_where} GROUP BY user_id, agent_id, session_id",
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

    _usage_number: str
    """SQL of one usage counter as a number, ``{key}`` standing for its name."""

    def tally_jobs(self, scope: Scope) -> dict[str, tuple[int, dict[str, int]]]:
        where, params = self._scope_where(scope)
        sums = ", ".join(f"coalesce(sum({self._usage_number.format(key=k)}), 0)"
                         for k in USAGE_KEYS)
        rows = self._rows(f"SELECT status, count(*), {sums} FROM jobs WHERE {where} "
                          "GROUP BY status", params)
        return {r[0]: (int(r[1]), {k: int(v) for k, v in zip(USAGE_KEYS, r[2:], strict=True)})
                for r in rows}
