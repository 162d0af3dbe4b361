"""Embedders: text to unit vectors. ``MiniLMEmbedder`` is the default, ``FakeEmbedder`` for tests."""

from .base import EmbedKind, Embedder
from .fake import FakeEmbedder
from .onnx_minilm import MiniLMEmbedder

__all__ = ["EmbedKind", "Embedder", "FakeEmbedder", "MiniLMEmbedder"]
