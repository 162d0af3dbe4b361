"""Long messages cut into passages: verbatim spans, cut at the best boundary that fits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memlane.errors import InvalidInputError
from memlane.write.passages import Passage, split

WORDS = st.text(st.characters(codec="utf-8"), min_size=1,
                max_size=30)
PIECES = st.sampled_from(["\n\n", "\n", " ", ". ", "! ", "```\ncode()\n```\n", "\t", "  \n \n"])
TEXTS = st.lists(st.one_of(WORDS, PIECES), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(message=TEXTS, size=st.integers(1, 120))
def test_passages_are_verbatim_spans_that_cover_the_message(message: str, size: int) -> None:
    passages = split(message, size)
    at = 0
    for p in passages:
        assert p.text == message[p.start:p.end] and p.text.strip() == p.text != ""
        assert at <= p.start < p.end <= len(message) and p.end - p.start <= size
        assert not message[at:p.start].strip()  # only whitespace between passages
        at = p.end
    assert not message[at:].strip()


def test_a_message_that_fits_is_one_passage() -> None:
    assert split("  Short and sweet.\n", 100) == [Passage(2, 18, "Short and sweet.")]
    assert split(" \n\t ", 100) == []


def test_paragraphs_are_kept_whole_and_packed_together() -> None:
    paragraphs = [f"Paragraph {n} says something. It has two sentences." for n in range(6)]
    message = "\n\n".join(paragraphs)
    passages = split(message, 120)
    assert [p.text for p in passages] == ["\n\n".join(paragraphs[i:i + 2]) for i in (0, 2, 4)]


def test_a_code_block_is_not_cut_when_it_fits() -> None:
    code = "```python\ndef f(x):\n\n    return x + 1\n```"
    message = "Here is the fix.\n\n" + code + "\n\nIt adds one."
    texts = [p.text for p in split(message, len(code) + 5)]
    assert code in texts


def test_a_long_paragraph_is_cut_between_sentences_then_words() -> None:
    sentences = [f"Sentence number {n} is here." for n in range(10)]
    passages = split(" ".join(sentences), 60)
    assert all(p.text.endswith(".") for p in passages)
    word = split("alpha beta gamma delta", 11)
    assert [p.text for p in word] == ["alpha beta", "gamma delta"]
    assert [p.text for p in split("x" * 25, 10)] == ["x" * 10, "x" * 10, "x" * 5]


def test_a_bad_size_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="at least 1"):
        split("text", 0)
