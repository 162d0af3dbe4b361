"""Search on in-process indexes derived from stored rows, held by the SQL stores.

A store gives a ``RowSource``: which rows a query admits (row id and version) and how to
load texts, vectors and records by row id. The index keeps, per process, the admitted sets
(reused until the source's generation changes, that is until any writer commits; then, if
the source can tell what changed since, only the changed rows are read again), the
vectors of admitted rows (``vector_cache``), a BM25 index per scope and analyzer
(``keyword_index``) and recently returned records. Everything is keyed by (row id,
version), so nothing is ever stale, and scoring is exactly the same on every store: an
admitted set is kept in row id order, however it was read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from ..text import Analyzer, analyze
from ..types import MemoryRecord, Scope, Scored
from .base import RecordQuery, Vector, dense_score, keyword_score
from .keyword_index import KeywordIndex, top_with_ties
from .vector_cache import VectorCache, VectorsMissing

RECORD_CACHE = 50_000
"""Records kept in process, keyed by row id and checked against the row's version."""
KEYWORD_DOCS = 1_000_000
"""Documents kept in in-process keyword indexes; least recently searched scopes go first."""


class Delta(NamedTuple):
    """What changed in a store since a mark, as a query sees it."""

    changed: Sequence[int]
    """The row ids written since the mark (whether the query admits them or not): every
    row of ``rows`` among them."""
    rows: Sequence[Sequence[Any]]
    """Of the rows written since the mark, those the query admits now (as
    ``RowSource.admitted_rows`` gives them)."""


class _Buffer:
    __slots__ = ("array", "used")

    def __init__(self, array: npt.NDArray[np.float32], used: int) -> None:
        self.array, self.used = array, used


class Matrix:
    """An admitted set's vectors in its order, with room after them: a set that only gained
    rows appends them in place (its predecessor, which searches may still hold, keeps
    seeing its own rows only)."""

    __slots__ = ("_buffer", "_n")

    def __init__(self, rows: npt.NDArray[np.float32]) -> None:
        array = np.empty((len(rows) + len(rows) // 4 + 64, rows.shape[1]), dtype=np.float32)
        array[: len(rows)] = rows
        self._buffer, self._n = _Buffer(array, len(rows)), len(rows)

    @property
    def rows(self) -> npt.NDArray[np.float32]:
        return self._buffer.array[: self._n]

    def extended(self, extra: npt.NDArray[np.float32]) -> Matrix:
        buffer, n = self._buffer, self._n
        if buffer.used != n or n + len(extra) > len(buffer.array):
            return Matrix(np.concatenate([self.rows, extra]))
        buffer.array[n: n + len(extra)] = extra
        buffer.used = n + len(extra)
        grown = Matrix.__new__(Matrix)
        grown._buffer, grown._n = buffer, buffer.used
        return grown


class Admitted(NamedTuple):
    generation: Hashable
    mark: Hashable
    """Where the source's changes after this set was read start (``RowSource.mark``)."""
    ids: npt.NDArray[np.int64]
    versions: npt.NDArray[np.int64]
    matrices: dict[int, Matrix]
    lengths: npt.NDArray[np.float64] | None
    """Each row's keyword term count, if the store returns it (a third column)."""


def scope_key(scope: Scope) -> tuple[str, ...]:
    return (scope.tenant, scope.user_id or "", scope.agent_id or "", scope.session_id or "")


class RowSource(Protocol):
    """What a store tells its index: the rows a query admits, and loaders by row id."""

    def generation(self, query: RecordQuery) -> Hashable:
        """Changes whenever a write that this query could see commits."""
        ...

    def admitted_key(self, query: RecordQuery) -> Hashable:
        """Equal for queries that admit the same rows (e.g. the compiled SQL and values)."""
        ...

    def admitted_rows(self, query: RecordQuery) -> Sequence[Sequence[Any]]:
        """The (row id, version) rows the query admits; a store that searches keywords in
        the database adds each row's term count (``Admitted.lengths``)."""
        ...

    def mark(self, query: RecordQuery) -> Hashable:
        """Where the changes to the query's tenant written after now start; None if the
        source cannot tell."""
        ...

    def changes(self, query: RecordQuery, since: Hashable, now: Hashable,
                most: int) -> Delta | None:
        """What changed between the marks ``since`` and ``now`` (and perhaps after), as
        ``query`` sees it; None to have every admitted row read again (more than ``most``
        rows changed, rows were removed, or the source cannot tell)."""
        ...

    def load_texts(self, rowids: list[int]) -> Iterable[tuple[int, str]]: ...

    def load_vectors(self, rowids: list[int]) -> Iterable[tuple[int, bytes]]: ...

    def records_by_rowid(self, rowids: list[int]) -> dict[int, MemoryRecord]: ...


def nothing_to_find(text: str, limit: int, analyzer: Analyzer) -> bool:
    """A keyword search that can find nothing (no limit, no term), answered without reads."""
    return limit <= 0 or not analyze(text, analyzer)


class DerivedIndex:
    """``keyword_search`` and ``vector_search`` over the rows of a ``RowSource``; the parts
    (``admitted``, the in-process rankings, ``ranked``) for a store that searches some
    scopes elsewhere.

    ``lock`` guards the caches; a store whose reads take a lock of their own passes that
    one, so that a search and a write on one connection never wait for each other."""

    def __init__(self, source: RowSource, *, query_cache_rows: int,
                 lock: threading.RLock | None = None) -> None:
        self._source = source
        self._lock = lock or threading.RLock()
        self._vectors: VectorCache | None = None
        self._queries: OrderedDict[Hashable, Admitted] = OrderedDict()
        self._keyword: OrderedDict[tuple[str, ...], KeywordIndex] = OrderedDict()
        self._records: OrderedDict[int, MemoryRecord] = OrderedDict()
        self._query_cache_rows = query_cache_rows

    @property
    def keyword_indexes(self) -> int:
        """How many in-process keyword indexes (one per scope and analyzer) are kept."""
        return len(self._keyword)

    def clear(self) -> None:
        """Forget everything (after an erasure: nothing erased stays in the process)."""
        with self._lock:
            self._vectors = None
            self._queries.clear()
            self._keyword.clear()
            self._records.clear()

    def keyword_search(self, query: RecordQuery, text: str, limit: int,
                       analyzer: Analyzer = "plain") -> list[Scored]:
        if nothing_to_find(text, limit, analyzer):
            return []
        return self.keyword_ranked(query, self.admitted(query), text, limit, analyzer)

    def vector_search(self, query: RecordQuery, vector: Vector, limit: int) -> list[Scored]:
        if limit <= 0:
            return []
        return self.vector_ranked(self.admitted(query), vector, limit)

    def keyword_ranked(self, query: RecordQuery, admitted: Admitted, text: str, limit: int,
                       analyzer: Analyzer) -> list[Scored]:
        """BM25 over the admitted rows, in process."""
        with self._lock:
            key = (*scope_key(query.scope), analyzer)
            index = self._keyword.get(key)
            if index is None or index.size > 4 * len(admitted.ids) + 10_000:
                index = KeywordIndex(analyzer=analyzer)
            self._keyword[key] = index
            self._keyword.move_to_end(key)
            while sum(i.size for i in self._keyword.values()) > KEYWORD_DOCS and len(
                    self._keyword) > 1:
                self._keyword.popitem(last=False)
            positions = index.positions(admitted.ids, admitted.versions,
                                        self._source.load_texts)
            rowids, versions, scores = index.search(positions, text, limit)
        return self.ranked(rowids.tolist(), versions.tolist(),
                           [keyword_score(s) for s in scores.tolist()], limit)

    def vector_ranked(self, admitted: Admitted, vector: Vector, limit: int) -> list[Scored]:
        """Exact cosine search over the admitted rows, in process."""
        if not len(admitted.ids):
            return []
        with self._lock:
            matrix = self._matrix(admitted, len(vector))
        # not ``matrix @ vector``: BLAS would split the product over every core, and its
        # workers spin after each product, taking the cores from concurrent searches and
        # the embedding model (measured: twice the CPU per search under load)
        cosines = np.einsum("ij,j->i", matrix, vector).astype(np.float64)
        top = top_with_ties(cosines, limit)
        return self.ranked(admitted.ids[top].tolist(), admitted.versions[top].tolist(),
                           [dense_score(c) for c in cosines[top].tolist()], limit)

    def ranked(self, rowids: list[int], versions: list[int], scores: list[float],
               limit: int) -> list[Scored]:
        """Records for scored rows, best first, ties broken by id as in every store."""
        by_rowid = self._cached_records(rowids, versions)
        hits = [Scored(by_rowid[r], s) for r, s in zip(rowids, scores, strict=True)
                if r in by_rowid]
        hits.sort(key=lambda h: (-h.score, h.record.id))
        return hits[:limit]

    def admitted(self, query: RecordQuery) -> Admitted:
        """The (row id, version) pairs a query admits, reused until the store changes.
        What changed is read outside the lock (searches do not queue behind a database
        round trip); a set refreshed meanwhile by another search is kept."""
        key = self._source.admitted_key(query)
        generation = self._source.generation(query)
        with self._lock:
            cached = self._queries.get(key)
            if cached is not None and cached.generation == generation:
                self._queries.move_to_end(key)
                return cached
        mark, delta = self._read(query, cached)
        with self._lock:
            if isinstance(delta, Delta):
                assert cached is not None
                entry = self._updated(cached, delta, generation, mark)
            else:
                entry = _admitted(generation, mark, delta)
            if self._queries.get(key) is cached:
                self._queries[key] = entry
                self._queries.move_to_end(key)
                while sum(len(e.ids) for e in self._queries.values()) > self._query_cache_rows:
                    self._queries.popitem(last=False)
            return entry

    def _read(self, query: RecordQuery,
              cached: Admitted | None) -> tuple[Hashable, Delta | Sequence[Sequence[Any]]]:
        """Where the source's changes stand now, and what changed since ``cached`` or (the
        first time, or when the source cannot tell) every row the query admits."""
        mark = self._source.mark(query)
        if cached is not None and cached.mark is not None:
            delta = self._source.changes(query, cached.mark, mark,
                                         max(1_000, len(cached.ids) // 4))
            if delta is not None:
                return mark, delta
        return mark, self._source.admitted_rows(query)

    def _updated(self, cached: Admitted, delta: Delta, generation: Hashable,
                 mark: Hashable) -> Admitted:
        """``cached`` with the rows of ``delta``: appended in place when the set only gained
        rows after its last one (the common add), else a new set in row id order."""
        fresh = _admitted(generation, mark, delta.rows)
        keep = ~np.isin(cached.ids, np.asarray(delta.changed, dtype=np.int64))
        if not keep.all() or (len(cached.ids) and len(fresh.ids)
                              and fresh.ids[0] <= cached.ids[-1]):
            return _admitted(generation, mark, None, _joined(cached, fresh, keep))
        matrices = {dim: m.extended(self._vectors_for(fresh, dim))
                    for dim, m in cached.matrices.items()}
        ids, versions, lengths = _joined(cached, fresh, keep)
        return Admitted(generation, mark, ids, versions, matrices, lengths)

    def _vectors_for(self, admitted: Admitted, dim: int) -> npt.NDArray[np.float32]:
        """The vectors of the admitted rows; a row erased since the set was read gets
        zeros (it has no record either, so it is never returned)."""
        if self._vectors is None or self._vectors.dim != dim:
            self._vectors = VectorCache(dim)
        try:
            return self._vectors.matrix_for(admitted.ids, admitted.versions,
                                            self._source.load_vectors)
        except VectorsMissing as missing:
            if self._source.records_by_rowid(missing.rowids):
                raise  # the row is there without its vector
            gone, blank = set(missing.rowids), np.zeros(dim, dtype=np.float32).tobytes()

            def load(rowids: list[int]) -> Iterable[tuple[int, bytes]]:
                yield from self._source.load_vectors(rowids)
                yield from ((r, blank) for r in rowids if r in gone)

            return self._vectors.matrix_for(admitted.ids, admitted.versions, load)

    def _matrix(self, admitted: Admitted, dim: int) -> npt.NDArray[np.float32]:
        """The admitted rows' vectors in order, kept with the admitted set."""
        matrix = admitted.matrices.get(dim)
        if matrix is None:
            matrix = Matrix(self._vectors_for(admitted, dim))
            admitted.matrices[dim] = matrix
        return matrix.rows

    def _cached_records(self, rowids: list[int], versions: list[int]) -> dict[int, MemoryRecord]:
        """Records of these (rowid, version) rows, from the record cache where it has them."""
        with self._lock:
            out = {}
            for rowid, version in zip(rowids, versions, strict=True):
                hit = self._records.get(rowid)
                if hit is not None and hit.version == version:
                    out[rowid] = hit
            missing = [r for r in rowids if r not in out]
            if missing:
                fresh = self._source.records_by_rowid(missing)
                out.update(fresh)
                self._records.update(fresh)
                while len(self._records) > RECORD_CACHE:
                    self._records.popitem(last=False)
            return out


Columns = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64] | None]


def _admitted(generation: Hashable, mark: Hashable, rows: Sequence[Sequence[Any]] | None,
              columns: Columns | None = None) -> Admitted:
    """An admitted set from rows (row id, version[, length]) or columns, in row id order."""
    if columns is None:
        assert rows is not None
        table = np.array(rows, dtype=np.float64 if rows and len(rows[0]) > 2 else np.int64)
        table = table.reshape(len(rows), -1) if len(rows) else np.zeros((0, 2), np.int64)
        columns = (table[:, 0].astype(np.int64), table[:, 1].astype(np.int64),
                   table[:, 2].astype(np.float64) if table.shape[1] > 2 else None)
    ids, versions, lengths = columns
    if len(ids) > 1 and not bool(np.all(ids[:-1] < ids[1:])):
        order = np.argsort(ids, kind="stable")
        ids, versions = ids[order], versions[order]
        lengths = lengths[order] if lengths is not None else None
    return Admitted(generation, mark, ids, versions, {}, lengths)


def _joined(cached: Admitted, fresh: Admitted, keep: npt.NDArray[np.bool_]) -> Columns:
    """The columns of ``cached`` where ``keep`` holds, then those of ``fresh``."""
    kept = cached.ids[keep]
    lengths = None  # known when every row has one (an empty set's are unknown: none needed)
    if (cached.lengths is not None or not len(kept)) and (
            fresh.lengths is not None or not len(fresh.ids)):
        lengths = np.concatenate([np.zeros(0) if cached.lengths is None else cached.lengths[keep],
                                  np.zeros(0) if fresh.lengths is None else fresh.lengths])
    return (np.concatenate([kept, fresh.ids]),
            np.concatenate([cached.versions[keep], fresh.versions]), lengths)
