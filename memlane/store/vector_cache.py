"""An in-process copy of stored vectors, derived from the rows and checked against them.

The database stays the truth. A search first asks SQL which rows its scope and filters
admit (with each row's version), then takes their vectors from this cache, loading only
rows it has not seen or whose version moved. So the cache is never stale, even when other
processes write to the same file, and needs no invalidation protocol. Row ids are never
reused (``AUTOINCREMENT``), so a (rowid, version) pair names one vector for good.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt

from ..errors import StoreError

Loader = Callable[[list[int]], Iterable[tuple[int, bytes]]]
IntArray = npt.NDArray[np.int64]


class VectorsMissing(StoreError):
    """Rows without a stored vector: erased since a query read them, or a damaged store."""

    def __init__(self, rowids: list[int]) -> None:
        super().__init__("a stored memory has no vector: the store is damaged")
        self.rowids = rowids


class VectorCache:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.Lock()
        self._slot_of = np.full(1024, -1, dtype=np.int64)
        self._version = np.zeros(1024, dtype=np.int64)
        self._matrix = np.zeros((1024, dim), dtype=np.float32)
        self._used = 0

    def matrix_for(self, rowids: IntArray, versions: IntArray,
                   load: Loader) -> npt.NDArray[np.float32]:
        """The vectors of ``rowids`` in that order, loading what is missing or stale."""
        with self._lock:
            self._grow_index(int(rowids.max()) + 1 if len(rowids) else 0)
            slots = self._slot_of[rowids]
            stale = (slots < 0) | (self._version[np.maximum(slots, 0)] != versions)
            if stale.any():
                self._load(rowids[stale], versions[stale], load)
                slots = self._slot_of[rowids]
                if (slots < 0).any():
                    raise VectorsMissing(rowids[slots < 0].tolist())
            return self._matrix[slots]

    def _load(self, rowids: IntArray, versions: IntArray, load: Loader) -> None:
        wanted = dict(zip(rowids.tolist(), versions.tolist(), strict=True))
        for rowid, blob in load(list(wanted)):
            slot = int(self._slot_of[rowid])
            if slot < 0:
                slot = self._allocate()
                self._slot_of[rowid] = slot
            self._matrix[slot] = np.frombuffer(blob, dtype=np.float32)
            self._version[slot] = wanted[rowid]

    def _grow_index(self, size: int) -> None:
        if size > len(self._slot_of):
            grown = np.full(max(size, 2 * len(self._slot_of)), -1, dtype=np.int64)
            grown[: len(self._slot_of)] = self._slot_of
            self._slot_of = grown

    def _allocate(self) -> int:
        if self._used == len(self._matrix):
            capacity = 2 * len(self._matrix)
            matrix = np.zeros((capacity, self.dim), dtype=np.float32)
            matrix[: self._used] = self._matrix
            version = np.zeros(capacity, dtype=np.int64)
            version[: self._used] = self._version[: self._used]
            self._matrix, self._version = matrix, version
        self._used += 1
        return self._used - 1
