"""Long messages cut into passages: spans of the message, each small enough for the embedder.

A passage is a character span of its message (``text == message[start:end]``), so the
message stays verbatim and a passage always points back into it. Cuts fall, in order of
preference, between paragraphs (blank lines), between lines of a fenced code block (a code
block is kept whole when it fits), between sentences, between words, and only inside a word
that alone is too long. Consecutive pieces are packed greedily up to ``size`` characters;
no passage is longer than ``size``, none is blank, and every character that is not
whitespace lies in exactly one passage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InvalidInputError

PASSAGE_CHARS = 1_000
"""The default passage size in characters (about 250 tokens of English prose: what the
default embedder reads of a text)."""

_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_LINE_BREAK = re.compile(r"\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"')\]]*\s+")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Passage:
    """``text`` is ``message[start:end]``."""

    start: int
    end: int
    text: str


def split(message: str, size: int = PASSAGE_CHARS) -> list[Passage]:
    """The passages of ``message``, in order (one passage if it fits in ``size``)."""
    if size < 1:
        raise InvalidInputError(f"a passage size must be at least 1, not {size}")
    spans = _pack(list(_pieces(message, 0, len(message), size)), size)
    return [Passage(s, e, message[s:e]) for s, e in spans]


def _pieces(text: str, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """Spans of ``text[start:end]`` no longer than ``size``, cut at the best boundaries."""
    for s, e in _blocks(text, start, end):
        s, e = _trimmed(text, s, e)
        if s >= e:
            continue
        if e - s <= size:
            yield s, e
        else:
            yield from _cut(text, s, e, size)


def _blocks(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Paragraphs and fenced code blocks, in order."""
    at = start
    for fence in _FENCE.finditer(text, start, end):
        yield from _between(text, at, fence.start(), _PARAGRAPH_BREAK)
        yield fence.start(), fence.end()
        at = fence.end()
    yield from _between(text, at, end, _PARAGRAPH_BREAK)


def _cut(text: str, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """A block longer than ``size``: by lines, else sentences, else words, else characters."""
    for boundary in (_LINE_BREAK, _SENTENCE_END, _SPACE):
        parts = [p for p in (_trimmed(text, s, e) for s, e in _between(text, start, end,
                                                                         boundary)) if p[0] < p[1]]
        if len(parts) > 1:
            for s, e in parts:
                yield from ([(s, e)] if e - s <= size else _cut(text, s, e, size))
            return
    for at in range(start, end, size):
        yield at, min(at + size, end)


def _between(text: str, start: int, end: int, boundary: re.Pattern[str],
             ) -> Iterator[tuple[int, int]]:
    """The spans of ``text[start:end]`` between matches of ``boundary``."""
    at = start
    for match in boundary.finditer(text, start, end):
        yield at, match.start()
        at = match.end()
    yield at, end


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pack(pieces: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Consecutive pieces joined while the span from the first's start to the last's end
    stays within ``size``."""
    spans: list[tuple[int, int]] = []
    for start, end in pieces:
        if spans and end - spans[-1][0] <= size:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans
