"""The embedder interface: one public method, with batching and caching done once here.

Small requests made at the same time by several threads (a server's searches) share model
calls: while one call runs, the requests that arrive queue, and the next call takes them
all. A model call on many short texts costs about half as much per text as one per text,
and nobody waits on a timer: a lone request is computed at once.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..errors import ModelError

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
        self._shared = _SharedCalls(self._embed)

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
            fresh = _normalize(self._shared.embed([texts[i] for i in firsts], kind))
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


SHARED_MAX = 16
"""Requests of at most this many texts share model calls; larger ones run on their own."""
CALL_MAX = 64
"""The most texts one shared model call takes."""


class _Request:
    __slots__ = ("error", "kind", "leads", "result", "texts", "wake")

    def __init__(self, texts: list[str], kind: EmbedKind) -> None:
        self.texts, self.kind = texts, kind
        self.result: Matrix | None = None
        self.error: BaseException | None = None
        self.leads = False
        self.wake = threading.Event()

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None


class _SharedCalls:
    """Runs ``embed`` for queued small requests together, one model call at a time. A
    request that finds no call running makes the call; the others queue. After a call,
    its requests are woken with their vectors, and the oldest queued request (if any) is
    woken to make the next call, for every queued request of its kind (up to ``CALL_MAX``
    texts)."""

    def __init__(self, embed: Callable[[list[str], EmbedKind], Matrix]) -> None:
        self._model = embed
        self._lock = threading.Lock()
        self._queued: list[_Request] = []
        self._running = False

    def embed(self, texts: list[str], kind: EmbedKind) -> Matrix:
        if len(texts) > SHARED_MAX:
            return self._model(texts, kind)
        request = _Request(texts, kind)
        with self._lock:
            self._queued.append(request)
            request.leads, self._running = not self._running, True
        try:
            while not request.finished:
                if request.leads:
                    request.leads = False
                    self._call(self._take(kind))
                else:
                    request.wake.wait()
                    request.wake.clear()
        except BaseException:  # e.g. Ctrl-C while it waited: the others go on without it
            self._abandon(request)
            raise
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _abandon(self, request: _Request) -> None:
        """A request given up: off the queue, and the next call passed on if it was to
        make it."""
        with self._lock:
            if request in self._queued:
                self._queued.remove(request)
            following = None
            if request.leads:
                request.leads = False
                following = self._queued[0] if self._queued else None
                self._running = following is not None
                if following is not None:
                    following.leads = True
        if following is not None:
            following.wake.set()

    def _take(self, kind: EmbedKind) -> list[_Request]:
        """Queued requests of ``kind``, oldest first, up to ``CALL_MAX`` texts (taken off
        the queue)."""
        with self._lock:
            batch: list[_Request] = []
            size = 0
            for request in self._queued:
                if request.kind == kind and (not batch or size + len(request.texts) <= CALL_MAX):
                    batch.append(request)
                    size += len(request.texts)
            self._queued = [r for r in self._queued if r not in batch]
            return batch

    def _call(self, batch: list[_Request]) -> None:
        """One model call for ``batch``; then its requests, and the next caller, woken."""
        try:
            self._compute(batch)
        except BaseException:  # the caller was interrupted: the others learn it, it raises
            for request in batch:
                if not request.finished:
                    request.error = ModelError("the embedding was interrupted; try again")
            raise
        finally:
            with self._lock:
                following = self._queued[0] if self._queued else None
                self._running = following is not None
                if following is not None:
                    following.leads = True
            for request in (*batch, *([following] if following is not None else [])):
                request.wake.set()

    def _compute(self, batch: list[_Request]) -> None:
        """Vectors for each request of ``batch``. If the shared call fails, each request is
        computed on its own: a text the model refuses fails only the request that sent it."""
        try:
            vectors = self._model([t for r in batch for t in r.texts], batch[0].kind)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for request in batch:
                try:
                    request.result = self._model(request.texts, request.kind)
                except Exception as own:
                    request.error = own
            return
        start = 0
        for request in batch:
            request.result = vectors[start: start + len(request.texts)]
            start += len(request.texts)


def _key(kind: str, text: str) -> bytes:
    return hashlib.blake2b(f"{kind}\x1f{text}".encode(), digest_size=16).digest()


def _normalize(matrix: Matrix) -> Matrix:
    values = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    result: Matrix = (values / np.maximum(norms, 1e-12)).astype(np.float32)
    return result
