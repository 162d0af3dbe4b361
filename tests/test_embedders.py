"""The packaged MiniLM embedder (real model, shipped weights) and the test embedder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from memlane import FakeEmbedder, MiniLMEmbedder
from memlane.embed.base import CALL_MAX, SHARED_MAX, Embedder, EmbedKind, Matrix
from memlane.errors import ModelError
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


class Slow(Embedder):
    """The test embedder, each model call taking a while and recorded (its texts)."""

    model_id, dim = "slow-fake", 64

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__(cache_size=0)
        self.inner = FakeEmbedder(cache_size=0)
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def _embed(self, texts: list[str], kind: EmbedKind) -> Matrix:
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(0.02)
        if self.fail_on in texts:
            raise ModelError("the model broke on a text")
        return self.inner.embed(texts, kind)


def ask_together(embedder: Embedder, asks: list[list[str]]) -> list[Matrix | Exception]:
    """``embed`` from one thread per request, all started at once."""
    start = threading.Barrier(len(asks))

    def one(texts: list[str]) -> Matrix | Exception:
        start.wait()
        try:
            return embedder.embed(texts, "query")
        except ModelError as exc:
            return exc

    with ThreadPoolExecutor(len(asks)) as pool:
        return list(pool.map(one, asks))


def test_small_requests_at_once_share_model_calls_and_get_their_own_vectors() -> None:
    embedder = Slow()
    asks = [[f"question {n}"] for n in range(24)] + [["two texts", "in one ask"]]
    answers = ask_together(embedder, asks)
    alone = FakeEmbedder()
    for texts, answer in zip(asks, answers, strict=True):
        assert isinstance(answer, np.ndarray)
        np.testing.assert_allclose(answer, alone.embed(texts, "query"), atol=1e-6)
    assert sorted(t for call in embedder.calls for t in call) == sorted(
        t for texts in asks for t in texts)  # every text computed once
    assert len(embedder.calls) < len(asks) / 3  # while one call ran, the others queued
    assert max(len(call) for call in embedder.calls) <= CALL_MAX


def test_a_text_the_model_refuses_fails_only_its_own_request() -> None:
    embedder = Slow(fail_on="bad")
    answers = ask_together(embedder, [["bad"], *[[f"fine {n}"] for n in range(9)]])
    assert isinstance(answers[0], ModelError)
    assert all(isinstance(a, np.ndarray) and a.shape == (1, 64) for a in answers[1:])
    assert any("bad" in call and len(call) > 1 for call in embedder.calls)  # it was shared
    assert embedder.embed(["fine again"], "query").shape == (1, 64)


INTERRUPTED = textwrap.dedent("""
    import os, signal, sys, threading, time
    from memlane import FakeEmbedder
    from memlane.embed.base import Embedder

    gate = threading.Event()

    class Gated(Embedder):
        model_id, dim = "gated", 64
        def __init__(self):
            super().__init__(cache_size=0)
            self.inner = FakeEmbedder(cache_size=0)
        def _embed(self, texts, kind):
            gate.wait()
            return self.inner.embed(texts, kind)

    embedder = Gated()
    worker = threading.Thread(target=embedder.embed, args=(["from the worker"], "document"),
                              daemon=True)
    worker.start()  # a call that takes a while (a background job's, say)
    time.sleep(0.2)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:  # the main thread queues behind it and is interrupted while it waits
        embedder.embed(["from the main thread"], "query")
        print("not interrupted")
        sys.exit(2)
    except KeyboardInterrupt:
        pass
    gate.set()
    worker.join(5)
    later = threading.Thread(target=embedder.embed, args=(["later"], "query"), daemon=True)
    later.start()
    later.join(5)
    print("stuck" if later.is_alive() else "served", flush=True)
    os._exit(0)
""")


def test_a_request_interrupted_while_it_waits_leaves_the_others_served() -> None:
    done = subprocess.run([sys.executable, "-c", INTERRUPTED], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.strip() == "served", (done.stdout, done.stderr)


def test_a_large_request_runs_on_its_own() -> None:
    embedder = Slow()
    texts = [f"document {n}" for n in range(SHARED_MAX + 1)]
    ask_together(embedder, [texts, ["a query"]])
    assert sorted(map(len, embedder.calls)) == [1, SHARED_MAX + 1]
