"""How the MiniLM embedder spends its model time: calls cut to pad little, run side by side,
and long texts cut before they are tokenized; none of it changes a text's vector."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memlane import MiniLMEmbedder
from memlane.embed import batching
from memlane.embed.onnx_minilm import load_tokenizer
from memlane.embed.truncation import head
from memlane.errors import ModelError

LENGTHS = st.lists(st.integers(3, 256), max_size=150).map(sorted)


@settings(max_examples=200, deadline=None)
@given(lengths=LENGTHS)
def test_a_plan_covers_every_text_once_in_order_within_the_limits(lengths: list[int]) -> None:
    calls = batching.plan(lengths)
    assert [p for call in calls for p in call] == list(range(len(lengths)))
    for call in calls:
        assert len(call) == 1 or (len(call) <= batching.CALL_TEXTS and
                                  len(call) * lengths[call[-1]] <= batching.CALL_TOKENS)
    eights = [range(i, min(i + 8, len(lengths))) for i in range(0, len(lengths), 8)]
    singles = [range(i, i + 1) for i in range(len(lengths))]
    assert batching.cost(lengths, calls) <= batching.cost(lengths, singles)
    if all(len(c) * lengths[c[-1]] <= batching.CALL_TOKENS for c in eights):
        assert batching.cost(lengths, calls) <= batching.cost(lengths, eights)


def all_cuts(n: int) -> list[list[range]]:
    cuts = []
    for marks in itertools.product([False, True], repeat=n - 1):
        bounds = [0, *(i + 1 for i, cut in enumerate(marks) if cut), n]
        cuts.append([range(a, b) for a, b in itertools.pairwise(bounds)])
    return cuts


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(3, 256), min_size=1, max_size=9).map(sorted))
def test_a_plan_costs_no_more_than_any_other_cut(lengths: list[int]) -> None:
    allowed = [cut for cut in all_cuts(len(lengths)) if all(
        len(c) == 1 or len(c) * lengths[c[-1]] <= batching.CALL_TOKENS for c in cut)]
    least = min(batching.cost(lengths, cut) for cut in allowed)
    assert batching.cost(lengths, batching.plan(lengths)) == least


def test_a_plan_pads_a_conversation_little() -> None:
    lengths = sorted([9, 12, 14, 17, 20, 22, 23, 25, 28, 30, 31, 33, 36, 40, 44, 52, 61, 75])
    calls = batching.plan(lengths)
    padded = sum(len(c) * lengths[c[-1]] for c in calls)
    assert padded <= 1.1 * sum(lengths) and len(calls) < len(lengths)


PIECES = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12),
    st.sampled_from(["café", "e\u0301t\u0301e\u0301", "東京都", "ΣΊΣΥΦΟΣ", "naïve", "🙂🙃",
                     "don't", "a" * 120, "x.y,z", "\u200b", "\t\n", "  ", "\x00\x07"]),
    st.sampled_from([" ", "\n", ". "]),
)
TEXTS = st.lists(PIECES, max_size=80).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, keep=st.integers(1, 20), first=st.integers(1, 40))
def test_the_head_of_a_text_holds_its_first_tokens(text: str, keep: int, first: int) -> None:
    tokenizer = load_tokenizer(keep + 2)  # as the embedder's: [CLS], keep tokens, [SEP]
    assert (tokenizer.encode(head(tokenizer, text, keep, first)).ids
            == tokenizer.encode(text).ids)


class Recording:
    """A tokenizer that records the length of every text it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    def encode(self, text: str, **kwargs: Any) -> Any:
        self.lengths.append(len(text))
        return self.inner.encode(text, **kwargs)


def test_a_megabyte_message_is_not_tokenized_whole() -> None:
    text = " ".join(f"word{n % 997} and more prose, sentence {n}." for n in range(40_000))
    assert len(text) > 1_000_000
    tokenizer = Recording(load_tokenizer(256))
    kept = head(tokenizer, text, 254)
    assert max(tokenizer.lengths) <= 10_000 and len(kept) <= 10_000
    assert tokenizer.inner.encode(kept).ids == tokenizer.inner.encode(text).ids


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Texts of many lengths: a word, chat turns, paragraphs, a text far past the model's
    window and a megabyte one."""
    turns = [f"Speaker {n % 3}: " + "we talked about the trip to Lisbon and " * (n % 7)
             + f"item {n}" for n in range(40)]
    return ["ok", *turns, "A paragraph about gardening. " * 40, "long " * 3000,
            "Une phrase accentuée, très longue. " * 30_000]


@pytest.mark.parametrize("parallel_calls", [1, 2])
def test_vectors_do_not_depend_on_the_texts_computed_with_them(
        texts: list[str], parallel_calls: int) -> None:
    embedder = MiniLMEmbedder(threads=1, parallel_calls=parallel_calls, cache_size=0)
    together = embedder.embed(texts)
    backwards = embedder.embed(texts[::-1])[::-1]
    alone = np.stack([embedder.embed([t])[0] for t in texts])  # one call each, no padding
    for vectors in (together, backwards):
        cosines = np.sum(vectors * alone, axis=1)
        assert cosines.min() >= 1 - 1e-4
        np.testing.assert_allclose(vectors, alone, atol=1e-5)


def test_calls_run_side_by_side_each_once_and_a_failure_is_raised() -> None:
    done: list[int] = []
    threads: set[str] = set()

    def work(call: range) -> None:
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        done.append(call[0])

    batching.run_calls(work, [range(i, i + 1) for i in range(20)], 2)
    assert sorted(done) == list(range(20)) and len(threads) == 2

    def failing(call: range) -> None:
        if call[0] == 3:
            raise ModelError("the model failed")
        done.append(call[0])

    with pytest.raises(ModelError, match="failed"):
        batching.run_calls(failing, [range(i, i + 1) for i in range(8)], 2)
    assert not [t for t in threading.enumerate() if t.name == "memlane-embed"]  # all stopped
