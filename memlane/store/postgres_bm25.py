"""Keyword search of large scopes in PostgreSQL: each record's terms as ``tsvector``
columns with GIN indexes, and Okapi BM25 computed in SQL with the statistics of exactly the
admitted rows, so its scores equal the in-process index's (``keyword_index``)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ..text import Analyzer, analyze, stem

Params = list[Any]

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


def keywords(text: str) -> tuple[str, str, int]:
    """The values of the keyword columns (``kw_plain``, ``kw_stem``, ``kw_len``) for a
    record's index text."""
    plain = analyze(text, "plain")
    return tsvector_literal(plain), tsvector_literal([stem(t) for t in plain]), len(plain)


def bm25_rows(conn: Any, where: tuple[str, Params], text: str, analyzer: Analyzer,
              n_docs: int, mean_length: float, limit: int, k1: float = 1.2,
              b: float = 0.75) -> list[Any]:
    """The best ``limit`` (row id, version, BM25) rows of those ``where`` admits (``n_docs``
    rows of ``mean_length`` terms), in a transaction on ``conn``.

    Document frequencies are counted first (GIN); then, as in MaxScore, terms held by more
    than a tenth of the rows are left out of the candidate set when the best ``limit`` rows
    holding a rarer term all score more than those frequent terms could add together;
    otherwise every matching row is scored."""
    terms = list(dict.fromkeys(analyze(text, analyzer)))
    column = KEYWORD_COLUMNS[analyzer]
    conn.execute("SET LOCAL work_mem = '64MB'")  # the scored rows, without spilling
    counts = conn.execute(document_frequencies_sql(where[0], column, len(terms)), [
        *(tsquery_literal([t]) for t in terms), tsquery_literal(terms), *where[1],
    ]).fetchone()
    df = {t: int(c) for t, c in zip(terms, counts, strict=True) if c}
    present = [t for t in terms if t in df]
    if not present:
        return []

    def scored(candidates: list[str]) -> list[Any]:
        return conn.execute(  # type: ignore[no-any-return]
            bm25_sql(where[0], column), bm25_params(
                where[1], present, [df[t] for t in present], candidates, n_docs,
                mean_length, k1, b, limit)).fetchall()

    frequent = sorted((t for t in present if 10 * df[t] > n_docs),
                      key=lambda t: -df[t])[: len(present) - 1]
    if not frequent:
        return scored(present)
    rows = scored([t for t in present if t not in frequent])
    ceiling = sum(math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5)) * (k1 + 1)
                  for t in frequent)  # no row of frequent terms alone reaches it
    if len(rows) == limit and float(rows[-1][2]) > ceiling * (1 + 1e-9):
        return rows
    return scored(present)
