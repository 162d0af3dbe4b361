"""What the SQL stores' filter compilers share: the WHERE clause of a record query and the
walk over a filter tree, given the dialect's pieces (the shared queries are in
``sql_reads``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..filters import And, Cmp, Node, Not, Or
from ..timeutil import to_text
from ..types import SCOPE_FIELDS
from .base import AS_OF_STATUSES, RecordQuery
from .rows import scope_condition

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
