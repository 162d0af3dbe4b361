"""Record queries and filters compiled to PostgreSQL (JSONB, ``%s`` parameters).

Same semantics as ``filters.matches`` and the SQLite compiler: the congruence and filter
property tests hold every store to them. Text order uses the C collation (code point
order, as Python compares strings).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..filters import Cmp, Node, same_type
from .base import RecordQuery
from .sql_common import ORDER_SQL, by_type, compile_tree, record_where

Params = list[Any]


def where_clause(query: RecordQuery, alias: str = "m") -> tuple[str, Params]:
    """The WHERE clause that admits exactly what ``query.admits`` admits."""
    return record_where(query, alias, "%s", _member, compile_filter)


def _member(expr: str, values: Sequence[str]) -> tuple[str, Params]:
    return f"{expr} = ANY(%s)", [list(values)]


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


# --- keyword search in the database: BM25 over tsvector columns with a GIN index ----------

KEYWORD_COLUMNS = {"plain": "kw_plain", "stem": "kw_stem"}
"""The tsvector column that holds a record's terms under each analyzer."""
MAX_TF = 256
"""tsvector keeps at most 256 positions per lexeme: term frequency counts up to this."""
_POSITIONS = [",".join(map(str, range(1, n + 1))) for n in range(MAX_TF + 1)]


def tsvector_literal(terms: list[str]) -> str:
    """A tsvector holding each term with as many positions as it occurs, so that
    ``cardinality(positions)`` is its term frequency. Terms are runs of letters and digits
    of at most 100 characters (``text.tokens``): no quote or backslash to escape, and within
    the lexeme size limit."""
    return " ".join(f"'{t}':{_POSITIONS[min(n, MAX_TF)]}" for t, n in Counter(terms).items())


def tsquery_literal(terms: list[str]) -> str:
    """A tsquery matching documents holding any of ``terms``."""
    return " | ".join(f"'{t}'" for t in terms)


def document_frequencies_sql(where: str, column: str, n_terms: int) -> str:
    """How many admitted rows hold each of ``n_terms`` terms. Parameters: one tsquery per
    term, the tsquery of them all, the where-clause values."""
    counts = ", ".join([f"count(*) FILTER (WHERE m.{column} @@ %s::tsquery)"] * n_terms)
    return f"SELECT {counts} FROM memories m WHERE m.{column} @@ %s::tsquery AND {where}"


def bm25_sql(where: str, column: str) -> str:
    """Okapi BM25 of the admitted rows that hold one of the candidate terms, best first,
    ties by id, as the in-process index computes it. Every query term counts in the score;
    the statistics (N, average length, each term's document frequency over the admitted
    rows) come in as parameters (``bm25_params``)."""
    return f"""
        WITH k AS (SELECT %s::float8 AS n, %s::float8 AS avgdl, %s::float8 AS k1,
                          %s::float8 AS b),
        d AS (SELECT * FROM unnest(%s::text[], %s::float8[]) AS d(lexeme, df)),
        hits AS MATERIALIZED (
            SELECT m.rid, m.id, m.version, m.kw_len, u.lexeme, cardinality(u.positions) AS tf
            FROM memories m, unnest(m.{column}) u
            WHERE u.lexeme = ANY(%s) AND m.{column} @@ %s::tsquery AND {where})
        SELECT h.rid, h.version, sum(
            ln(1 + (k.n - d.df + 0.5) / (d.df + 0.5)) * h.tf * (k.k1 + 1)
            / (h.tf + k.k1 * (1 - k.b + k.b * h.kw_len / greatest(k.avgdl, 1e-9)))) AS score
        FROM hits h JOIN d USING (lexeme) CROSS JOIN k
        GROUP BY h.rid, h.id, h.version
        ORDER BY score DESC, h.id COLLATE "C" LIMIT %s"""


def bm25_params(params: Params, terms: list[str], dfs: list[int], candidates: list[str],
                n_docs: int, mean_length: float, k1: float, b: float, limit: int) -> Params:
    return [n_docs, mean_length, k1, b, terms, [float(x) for x in dfs], terms,
            tsquery_literal(candidates), *params, limit]
