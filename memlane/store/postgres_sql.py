"""Record queries and filters compiled to PostgreSQL (JSONB, ``%s`` parameters).

Same semantics as ``filters.matches`` and the SQLite compiler: the congruence and filter
property tests hold every store to them. Text order uses the C collation (code point
order, as Python compares strings). ``DIALECT`` gives the shared queries (``sql_reads``)
PostgreSQL's pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..filters import Cmp, Node, same_type
from .base import RecordQuery
from .sql_common import ORDER_SQL, by_type, compile_tree, record_where
from .sql_reads import Dialect

Params = list[Any]


def where_clause(query: RecordQuery, alias: str = "m") -> tuple[str, Params]:
    """The WHERE clause that admits exactly what ``query.admits`` admits."""
    return record_where(query, alias, "%s", _member, compile_filter)


def _member(expr: str, values: Sequence[str]) -> tuple[str, Params]:
    return f"{expr} = ANY(%s)", [list(values)]


def _one_of(values: Sequence[object]) -> tuple[str, Params]:
    return "= ANY(%s)", [list(values)]


def compile_filter(node: Node, alias: str = "m") -> tuple[str, Params]:
    return compile_tree(node, alias, _column_leaf, _json_leaf, "FALSE")


def _either(pieces: list[tuple[str, Params]], negate: bool) -> tuple[str, Params]:
    sql = "(" + " OR ".join(s for s, _ in pieces) + ")" if pieces else "FALSE"
    params = [p for _, ps in pieces for p in ps]
    return (f"NOT COALESCE({sql}, FALSE)" if negate else sql), params


def _column_leaf(node: Cmp, col: str) -> tuple[str, Params]:
    op, value = node.op, node.value
    if node.ftype == "list":
        return f"{col} @> jsonb_build_array(%s::text)", [value]
    if op in ("eq", "ne", "in", "nin"):
        values = value if op in ("in", "nin") else (value,)
        return _either(_column_in(col, values), op in ("ne", "nin"))
    if op == "contains":
        return f"strpos({col}, %s) > 0", [value]
    if isinstance(value, str):
        return f'{col} COLLATE "C" {ORDER_SQL[op]} %s', [value]
    return f"{col} {ORDER_SQL[op]} %s", [value]


_ARRAYS = {"text": "text[]", "int": "bigint[]", "float": "float8[]"}
"""Each group of ``by_type`` binds as one array: no parameter limit, whatever the list."""


def _column_in(col: str, values: Sequence[Any]) -> list[tuple[str, Params]]:
    groups = by_type(values)
    groups["int"] += [int(v) for v in groups["other"] if v is not None]
    pieces = [(f"{col} = ANY(%s::{_ARRAYS[name]})", [group])
              for name, group in groups.items() if name in _ARRAYS and group]
    return pieces + [(f"{col} IS NULL", []) for v in groups["other"] if v is None]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number" if same_type(value, 0) else "string"


def _json_eq(meta: str, path: list[str], value: Any) -> tuple[str, Params]:
    kind = _json_type(value)
    guard = f"jsonb_typeof({meta} #> %s) = '{kind}'"
    if kind == "boolean":
        return f"({meta} #> %s) = %s::jsonb", [path, "true" if value else "false"]
    if kind == "null":
        return guard, [path]
    cast = "::float8" if kind == "number" else ""
    return f"({guard} AND ({meta} #>> %s){cast} = %s)", [path, path, value]


def _json_in(meta: str, path: list[str], values: Sequence[Any]) -> list[tuple[str, Params]]:
    """Numbers compare as float8, as in ``_json_eq``."""
    groups = by_type(values)
    pieces = [_json_eq(meta, path, v) for v in groups["other"]]
    if groups["text"]:
        pieces.append((f"(jsonb_typeof({meta} #> %s) = 'string' AND "
                       f"({meta} #>> %s) = ANY(%s::text[]))", [path, path, groups["text"]]))
    numbers = [float(v) for v in groups["int"] + groups["float"]]
    if numbers:
        pieces.append((f"(jsonb_typeof({meta} #> %s) = 'number' AND "
                       f"({meta} #>> %s)::float8 = ANY(%s::float8[]))", [path, path, numbers]))
    return pieces


def _json_leaf(node: Cmp, meta: str) -> tuple[str, Params]:
    op, value, path = node.op, node.value, list(node.path)
    if op in ("eq", "ne", "in", "nin"):
        pieces = (_json_in(meta, path, value) if op in ("in", "nin")
                  else [_json_eq(meta, path, value)])
        return _either(pieces, op in ("ne", "nin"))
    if op == "contains":
        return _json_contains(meta, path, value)
    kind = _json_type(value)
    expr = f"({meta} #>> %s)::float8" if kind == "number" else f'({meta} #>> %s) COLLATE "C"'
    return (f"(jsonb_typeof({meta} #> %s) = '{kind}' AND {expr} {ORDER_SQL[op]} %s)",
            [path, path, value])


def _json_contains(meta: str, path: list[str], value: Any) -> tuple[str, Params]:
    kind = _json_type(value)
    if kind == "null":
        element, eparams = "'[null]'::jsonb", []
    else:
        cast = {"boolean": "boolean", "number": "float8", "string": "text"}[kind]
        element, eparams = f"jsonb_build_array(%s::{cast})", [value]
    array = f"(jsonb_typeof({meta} #> %s) = 'array' AND ({meta} #> %s) @> {element})"
    params: Params = [path, path, *eparams]
    if kind == "string":
        array += f" OR (jsonb_typeof({meta} #> %s) = 'string' AND strpos({meta} #>> %s, %s) > 0)"
        params += [path, path, value]
    return f"({array})", params


DIALECT = Dialect(
    mark="%s", where=where_clause, one_of=_one_of, chunk=None, rowid="rid",
    collate=' COLLATE "C"', no_limit=None,
    as_text=frozenset({"source_ids", "tags", "metadata", "memory_ids", "actions", "usage"}),
    # with each row's keyword count: BM25 in the database needs their mean
    admitted="m.rid, m.version, m.kw_len",
    hidden_messages=(
        "EXISTS (SELECT 1 FROM memories m WHERE {scope} AND m.kind = %s AND m.status = %s "
        "AND m.user_id = messages.user_id AND m.agent_id = messages.agent_id AND "
        "m.session_id = messages.session_id AND m.source_ids @> jsonb_build_array(messages.id))"),
    usage_number="(usage ->> '{key}')::bigint",
    vectors_by_rowid="SELECT rid, vec FROM memories WHERE rid {ids}",
    vectors_by_id="SELECT m.id, m.vec FROM memories m WHERE m.tenant = %s AND m.id {ids}",
    first_source="(source_ids ->> 0)",
)
