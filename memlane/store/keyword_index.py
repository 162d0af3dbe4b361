"""BM25 over one scope's documents, in process, derived from the stored rows.

Like the vector cache it is keyed by (rowid, version), so it is never stale: a search
passes the rows its query admits, documents not seen yet (or whose version moved) are
tokenized and appended as a new immutable segment, and scoring looks only at admitted
positions. Statistics (document count, average length, document frequency) are computed
over the admitted documents, so the score is exactly Okapi BM25 over the caller's scope
(k1 = 1.2, b = 0.75 by default), whatever else the store holds.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..text import Analyzer, analyze

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
TextLoader = Callable[[list[int]], Iterable[tuple[int, str]]]
MAX_SEGMENTS = 12

Postings = dict[str, tuple[IntArray, FloatArray]]


class KeywordIndex:
    def __init__(self, *, analyzer: Analyzer = "plain", k1: float = 1.2,
                 b: float = 0.75) -> None:
        self.analyzer, self.k1, self.b = analyzer, k1, b
        self._pos_of = np.full(1024, -1, dtype=np.int64)
        self._version = np.zeros(1024, dtype=np.int64)
        self._rowid = np.zeros(1024, dtype=np.int64)
        self._length = np.zeros(1024, dtype=np.float32)
        self._size = 0
        self._segments: list[Postings] = []

    @property
    def size(self) -> int:
        return self._size

    def positions(self, rowids: IntArray, versions: IntArray, load: TextLoader) -> IntArray:
        """Positions of these (rowid, version) documents, indexing any that are new."""
        if len(rowids):
            self._grow_rowids(int(rowids.max()) + 1)
        pos = self._pos_of[rowids] if len(rowids) else np.zeros(0, dtype=np.int64)
        stale = (pos < 0) | (self._version[np.maximum(pos, 0)] != versions)
        if stale.any():
            self._append(rowids[stale], versions[stale], load)
            pos = self._pos_of[rowids]
        return pos[pos >= 0]

    def _append(self, rowids: IntArray, versions: IntArray, load: TextLoader) -> None:
        wanted = dict(zip(rowids.tolist(), versions.tolist(), strict=True))
        postings: defaultdict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for rowid, text in load(list(wanted)):
            position = self._allocate()
            bag = Counter(analyze(text, self.analyzer))
            self._pos_of[rowid] = position
            self._version[position] = wanted[rowid]
            self._rowid[position] = rowid
            self._length[position] = sum(bag.values())
            for term, tf in bag.items():
                entry = postings[term]
                entry[0].append(position)
                entry[1].append(tf)
        self._segments.append({
            term: (np.asarray(p, dtype=np.int64), np.asarray(tf, dtype=np.float32))
            for term, (p, tf) in postings.items()
        })
        if len(self._segments) > MAX_SEGMENTS:
            self._merge()

    def _merge(self) -> None:
        merged: defaultdict[str, tuple[list[IntArray], list[FloatArray]]] = defaultdict(
            lambda: ([], []))
        for segment in self._segments:
            for term, (p, tf) in segment.items():
                merged[term][0].append(p)
                merged[term][1].append(tf)
        self._segments = [{t: (np.concatenate(p), np.concatenate(tf))
                           for t, (p, tf) in merged.items()}]

    def search(self, positions: IntArray, query: str,
               limit: int) -> tuple[IntArray, IntArray, npt.NDArray[np.float64]]:
        """The best ``limit`` (rowids, versions, BM25 scores) among ``positions`` with
        score > 0, plus any tied with the last: the caller breaks ties (by id) and cuts."""
        words = list(dict.fromkeys(analyze(query, self.analyzer)))
        if not words or not len(positions) or limit <= 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float64)
        admitted = np.zeros(self._size, dtype=bool)
        admitted[positions] = True
        n_docs = len(positions)
        norm = self.k1 * (1.0 - self.b + self.b * self._length[: self._size]
                          / max(float(self._length[positions].mean()), 1e-9))
        scores = np.zeros(self._size, dtype=np.float64)
        for word in words:
            p, tf = self._postings(word, admitted)
            if not len(p):
                continue
            idf = math.log(1.0 + (n_docs - len(p) + 0.5) / (len(p) + 0.5))
            scores += np.bincount(p, idf * tf * (self.k1 + 1.0) / (tf + norm[p]),
                                  minlength=self._size)
        hits = np.flatnonzero(scores > 0)
        hits = hits[top_with_ties(scores[hits], limit)]
        return self._rowid[hits], self._version[hits], scores[hits]

    def _postings(self, word: str, admitted: npt.NDArray[np.bool_]) -> tuple[IntArray,
                                                                             FloatArray]:
        parts = [seg[word] for seg in self._segments if word in seg]
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        p = np.concatenate([x for x, _ in parts]) if len(parts) > 1 else parts[0][0]
        tf = np.concatenate([y for _, y in parts]) if len(parts) > 1 else parts[0][1]
        keep = admitted[p]
        return p[keep], tf[keep]

    def _grow_rowids(self, size: int) -> None:
        if size > len(self._pos_of):
            grown = np.full(max(size, 2 * len(self._pos_of)), -1, dtype=np.int64)
            grown[: len(self._pos_of)] = self._pos_of
            self._pos_of = grown

    def _allocate(self) -> int:
        if self._size == len(self._version):
            capacity = 2 * self._size
            for name in ("_version", "_rowid", "_length"):
                old = getattr(self, name)
                new = np.zeros(capacity, dtype=old.dtype)
                new[: self._size] = old
                setattr(self, name, new)
        self._size += 1
        return self._size - 1



def top_with_ties(scores: npt.NDArray[np.floating[Any]], limit: int) -> IntArray:
    """Indices of the ``limit`` highest scores and of every score tied with the lowest kept."""
    if len(scores) <= limit:
        return np.arange(len(scores))
    kth = np.partition(scores, len(scores) - limit)[len(scores) - limit]
    return np.flatnonzero(scores >= kth)
