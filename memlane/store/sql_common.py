"""What the SQL stores share beyond row encoding: the walk over a filter tree, and the
queries that only differ by the dialect's WHERE clause."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..filters import And, Cmp, Node, Not, Or
from ..types import SCOPE_FIELDS, Scope
from .base import USAGE_KEYS, RecordQuery
from .rows import scope_condition

Params = list[Any]
Leaf = Callable[[Cmp, str], tuple[str, Params]]
"""Compile one comparison, given the SQL expression of its field (or metadata column)."""


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
    """``count``, ``tally`` and ``count_messages`` for a store with ``_rows``, a dialect's
    ``_where`` and its parameter marker ``_mark``."""

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

    def count_messages(self, scope: Scope) -> int:
        parts, params = scope_condition(scope, self._mark)
        return int(self._rows(f"SELECT count(*) FROM messages WHERE {' AND '.join(parts)}",
                              params)[0][0])

    _usage_number: str
    """SQL of one usage counter as a number, ``{key}`` standing for its name."""

    def tally_jobs(self, scope: Scope) -> dict[str, tuple[int, dict[str, int]]]:
        parts, params = scope_condition(scope, self._mark)
        sums = ", ".join(f"coalesce(sum({self._usage_number.format(key=k)}), 0)"
                         for k in USAGE_KEYS)
        rows = self._rows(f"SELECT status, count(*), {sums} FROM jobs WHERE "
                          f"{' AND '.join(parts)} GROUP BY status", params)
        return {r[0]: (int(r[1]), {k: int(v) for k, v in zip(USAGE_KEYS, r[2:], strict=True)})
                for r in rows}
