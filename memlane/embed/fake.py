"""A deterministic embedder for tests: hashed tokens, no model, same vector every run."""

from __future__ import annotations

import hashlib

import numpy as np

from ..text import terms
from .base import Embedder, EmbedKind, Matrix


class FakeEmbedder(Embedder):
    """Texts sharing words get similar vectors; nothing is learned or downloaded."""

    def __init__(self, dim: int = 64, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.dim = dim
        self.model_id = f"fake-hash-{dim}"

    def _embed(self, texts: list[str], kind: EmbedKind) -> Matrix:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = terms(text) or ["\x00empty"]
            for word in words:
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                index = int.from_bytes(digest[:4], "little") % self.dim
                out[row, index] += 1.0 if digest[4] & 1 else -1.0
        return out
