"""The packaged MiniLM embedder (real model, shipped weights) and the test embedder."""

from __future__ import annotations

import numpy as np
import pytest

from memlane import FakeEmbedder, MiniLMEmbedder
from memlane.embed.base import Embedder, EmbedKind, Matrix
from memlane.tokens import count_tokens


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(threads=1)


def test_minilm_gives_unit_vectors_that_capture_meaning(minilm: MiniLMEmbedder) -> None:
    texts = ["I moved to Lisbon last spring.", "She relocated to Portugal's capital.",
             "The quarterly revenue report is due Friday."]
    vectors = minilm.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > 0.4 and similar > unrelated + 0.2


def test_minilm_batches_agree_with_single_calls(minilm: MiniLMEmbedder) -> None:
    texts = ["short", "a much longer sentence that pads the batch " * 3, "medium length text"]
    together = minilm.embed(texts)
    fresh = MiniLMEmbedder(threads=1)
    alone = np.stack([fresh.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)


class Counting(Embedder):
    """MiniLM behind the shared cache, counting the texts that reach the model."""

    model_id, dim = "counting-minilm", 384

    def __init__(self, model: MiniLMEmbedder) -> None:
        super().__init__()
        self.model = model
        self.asked: list[str] = []

    def _embed(self, texts: list[str], kind: EmbedKind) -> Matrix:
        self.asked += texts
        return self.model.embed(texts, kind)


def test_cache_answers_repeats_without_the_model(minilm: MiniLMEmbedder) -> None:
    embedder = Counting(minilm)
    first = embedder.embed(["cache me"])
    again = embedder.embed(["cache me", "new", "cache me", "new"])
    assert embedder.asked == ["cache me", "new"]  # each distinct text once, then cached
    np.testing.assert_array_equal(again[[0, 2]], np.vstack([first] * 2))
    np.testing.assert_allclose(again[1], minilm.embed(["new"])[0], atol=1e-6)
    embedder.clear_cache()
    embedder.embed(["cache me"])
    assert embedder.asked == ["cache me", "new", "cache me"]


def test_long_text_is_truncated_not_rejected(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed(["word " * 2000]).shape == (1, 384)


def test_fake_embedder_is_deterministic_and_lexical() -> None:
    a, b = FakeEmbedder(), FakeEmbedder()
    np.testing.assert_array_equal(a.embed(["lisbon trams"]), b.embed(["lisbon trams"]))
    v = a.embed(["lisbon trams", "lisbon", "quarterly revenue"])
    assert v[0] @ v[1] > v[0] @ v[2]


def test_token_counter_is_offline_and_plausible() -> None:
    assert count_tokens("hello world") == 2
    assert 8 <= count_tokens("The quick brown fox jumps over the lazy dog.") <= 12
