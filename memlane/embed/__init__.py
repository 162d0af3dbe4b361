"""Embedders: text to unit vectors; ``MiniLMEmbedder`` by default, ``FakeEmbedder`` in tests."""

from .base import Embedder, EmbedKind
from .fake import FakeEmbedder
from .onnx_minilm import MiniLMEmbedder

__all__ = ["EmbedKind", "Embedder", "FakeEmbedder", "MiniLMEmbedder"]
