"""Record queries and filters compiled to SQLite: SQL text from fixed pieces, values as
parameters. ``filters.matches`` is the semantics this must reproduce (a property test
compares the two on random filters and records). ``DIALECT`` gives the shared queries
(``sql_reads``) SQLite's pieces."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..filters import Cmp, Node, same_type
from .base import RecordQuery
from .rows import CHUNK
from .sql_common import ORDER_SQL, by_type, compile_tree, record_where
from .sql_reads import Dialect
from .sqlite_erase import REMOVALS

Params = list[Any]


def where_clause(query: RecordQuery, alias: str = "m") -> tuple[str, Params]:
    """The WHERE clause that admits exactly what ``query.admits`` admits."""
    return record_where(query, alias, "?", _member, compile_filter)


def _member(expr: str, values: Sequence[str]) -> tuple[str, Params]:
    if len(values) > 64:  # SQLite binds 32,766 parameters per query (by default)
        return _in_list(expr, list(values))
    return f"{expr} IN ({_marks(len(values))})", list(values)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _one_of(values: Sequence[Any]) -> tuple[str, Params]:
    return f"IN ({_marks(len(values))})", list(values)


def compile_filter(node: Node, alias: str = "m") -> tuple[str, Params]:
    return compile_tree(node, alias, _column_leaf, _json_leaf, "0")


def _column_leaf(node: Cmp, col: str) -> tuple[str, Params]:
    op, value = node.op, node.value
    if node.ftype == "list":
        return (f"EXISTS (SELECT 1 FROM json_each({col}) WHERE type = 'text' AND value = ?)",
                [value])
    if op in ("eq", "ne", "in", "nin"):
        pieces = _column_in(col, value) if op in ("in", "nin") else [_column_eq(col, value)]
        sql, params = _either(pieces)
        return (sql if op in ("eq", "in") else f"NOT COALESCE({sql}, 0)"), params
    if op == "contains":
        return f"instr({col}, ?) > 0", [value]
    return f"{col} {ORDER_SQL[op]} ?", [value]


def _either(pieces: list[tuple[str, Params]]) -> tuple[str, Params]:
    if not pieces:
        return "0", []
    return "(" + " OR ".join(s for s, _ in pieces) + ")", [p for _, ps in pieces for p in ps]


def _in_list(expr: str, values: list[Any]) -> tuple[str, Params]:
    """``expr`` is one of ``values``: one JSON parameter, however many values."""
    return (f"{expr} IN (SELECT value FROM json_each(?))",
            [json.dumps(values, ensure_ascii=False)])


def _column_in(col: str, values: Sequence[Any]) -> list[tuple[str, Params]]:
    groups = by_type(values)
    scalars = groups["text"] + groups["int"] + groups["float"]
    scalars += [int(v) for v in groups["other"] if v is not None]
    pieces = [_in_list(col, scalars)] if scalars else []
    return pieces + [_column_eq(col, None) for v in groups["other"] if v is None]


def _column_eq(col: str, value: Any) -> tuple[str, Params]:
    if value is None:
        return f"{col} IS NULL", []
    return f"{col} = ?", [int(value) if isinstance(value, bool) else value]


def _json_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{part}"' for part in path)


def _json_type_guard(expr_type: str, value: Any) -> tuple[str, Params]:
    """SQL true when a JSON value of type ``expr_type`` has the same JSON type as ``value``."""
    if isinstance(value, bool):
        return f"{expr_type} = ?", ["true" if value else "false"]
    if value is None:
        return f"{expr_type} = 'null'", []
    if same_type(value, 0):
        return f"{expr_type} IN ('integer', 'real')", []
    return f"{expr_type} = 'text'", []


def _json_eq(meta: str, path: str, value: Any) -> tuple[str, Params]:
    guard, gparams = _json_type_guard(f"json_type({meta}, ?)", value)
    if isinstance(value, bool) or value is None:
        return f"({guard})", [path, *gparams]
    return f"({guard} AND json_extract({meta}, ?) = ?)", [path, *gparams, path, value]


def _json_in(meta: str, path: str, values: Sequence[Any]) -> list[tuple[str, Params]]:
    groups = by_type(values)
    pieces = [_json_eq(meta, path, v) for v in groups["other"]]
    for types, group in (("'text'", groups["text"]),
                         ("'integer', 'real'", groups["int"] + groups["float"])):
        if group:
            sql, params = _in_list(f"json_extract({meta}, ?)", group)
            pieces.append((f"(json_type({meta}, ?) IN ({types}) AND {sql})",
                           [path, path, *params]))
    return pieces


def _json_leaf(node: Cmp, meta: str) -> tuple[str, Params]:
    op, value, path = node.op, node.value, _json_path(node.path)
    if op in ("eq", "ne", "in", "nin"):
        pieces = (_json_in(meta, path, value) if op in ("in", "nin")
                  else [_json_eq(meta, path, value)])
        sql, params = _either(pieces)
        return (sql if op in ("eq", "in") else f"NOT COALESCE({sql}, 0)"), params
    if op == "contains":
        return _json_contains(meta, path, value)
    guard, gparams = _json_type_guard(f"json_type({meta}, ?)", value)
    return (f"({guard} AND json_extract({meta}, ?) {ORDER_SQL[op]} ?)",
            [path, *gparams, path, value])


def _json_contains(meta: str, path: str, value: Any) -> tuple[str, Params]:
    elem, elem_params = _json_type_guard("type", value)
    if not (isinstance(value, bool) or value is None):
        elem, elem_params = f"{elem} AND value = ?", [*elem_params, value]
    array = f"EXISTS (SELECT 1 FROM json_each({meta}, ?) WHERE {elem})"
    if isinstance(value, str):
        text = f"instr(json_extract({meta}, ?), ?) > 0"
        text_params: Params = [path, value]
    else:
        text, text_params = "0", []
    sql = f"CASE json_type({meta}, ?) WHEN 'array' THEN {array} WHEN 'text' THEN {text} ELSE 0 END"
    return sql, [path, path, *elem_params, *text_params]


DIALECT = Dialect(
    mark="?", where=where_clause, one_of=_one_of, chunk=CHUNK, rowid="rowid", collate="",
    no_limit=-1, as_text=frozenset(), admitted="m.rowid, m.version",
    # the deleted turns' sources, collected once into one indexed list of single keys (a
    # list of row values is searched linearly: 25 times slower at 10,000 messages); scope
    # values hold no control character, so char(0) separates the parts unambiguously
    hidden_messages=(
        "((messages.user_id || char(0) || messages.agent_id || char(0) || messages.session_id "
        "|| char(0) || messages.id) IN (SELECT m.user_id || char(0) || m.agent_id || char(0) "
        "|| m.session_id || char(0) || j.value FROM memories m, json_each(m.source_ids) j "
        "WHERE {scope} AND m.kind = ? AND m.status = ?))"),
    usage_number="json_extract(usage, '$.{key}')",
    vectors_by_rowid="SELECT memory_rowid, vec FROM memory_vectors WHERE memory_rowid {ids}",
    change_mark=(f"SELECT (SELECT coalesce(max(seq), 0) FROM memories WHERE tenant = ?), "
                 f"(SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM meta WHERE key = "
                 f"'{REMOVALS}')"),
    change_column="seq", by_change="INDEXED BY memories_tenant_seq",
    vectors_by_id=("SELECT m.id, v.vec FROM memories m JOIN memory_vectors v ON "
                   "v.memory_rowid = m.rowid WHERE m.tenant = ? AND m.id {ids}"),
    first_source="json_extract(source_ids, '$[0]')",
)
