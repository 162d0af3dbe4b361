"""The embedder interface: one public method, with batching and caching done once here."""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

EmbedKind = Literal["query", "document"]
Matrix = npt.NDArray[np.float32]


class Embedder(ABC):
    """Turns texts into unit-length float32 vectors; cosine similarity is a dot product.

    Subclasses implement ``_embed`` only. ``embed`` answers repeated texts from an LRU cache
    keyed by content hash, so re-adding or re-asking costs no model call.
    """

    model_id: str
    dim: int

    def __init__(self, *, cache_size: int = 20_000) -> None:
        self._cache: OrderedDict[bytes, npt.NDArray[np.float32]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def embed(self, texts: Sequence[str], kind: EmbedKind = "document") -> Matrix:
        """Vectors for ``texts``, shape ``(len(texts), dim)``, each of unit length."""
        keys = [_key(kind, t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        with self._cache_lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is None:
                    missing.setdefault(key, []).append(i)
                else:
                    self._cache.move_to_end(key)
                    out[i] = hit
        if missing:
            firsts = [positions[0] for positions in missing.values()]
            fresh = _normalize(self._embed([texts[i] for i in firsts], kind))
            with self._cache_lock:
                for (key, positions), vector in zip(missing.items(), fresh, strict=True):
                    out[positions] = vector
                    self._cache[key] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def embed_one(self, text: str, kind: EmbedKind = "query") -> npt.NDArray[np.float32]:
        vector: npt.NDArray[np.float32] = self.embed([text], kind)[0]
        return vector

    @abstractmethod
    def _embed(self, texts: list[str], kind: EmbedKind) -> Matrix:
        """Vectors for distinct, uncached texts (need not be normalized)."""


def _key(kind: str, text: str) -> bytes:
    return hashlib.blake2b(f"{kind}\x1f{text}".encode(), digest_size=16).digest()


def _normalize(matrix: Matrix) -> Matrix:
    values = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    result: Matrix = (values / np.maximum(norms, 1e-12)).astype(np.float32)
    return result
