"""The vectors of messages: a long message is embedded passage by passage.

The embedder reads only the start of a long text, so a message longer than a passage is
split (``passages.split``) and each passage embedded; the message's turn takes the
normalized mean of its passages' vectors, so every part of the message counts and the turn
costs no model call of its own. A short message is embedded whole, as its turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..embed.base import Embedder
from ..types import index_text
from . import passages
from .windows import Vector, mean_vector


@dataclass(frozen=True, slots=True)
class Embedded:
    """A message's turn vector, and its passages with theirs (none for a short message)."""

    vector: Vector
    passages: list[tuple[passages.Passage, Vector]]


def embed_messages(embedder: Embedder,
                   messages: Sequence[tuple[str, str | None]]) -> list[Embedded]:
    """``messages`` as (content, speaker name) pairs, embedded in one call."""
    plans = [passages.split(text) if passages.is_long(text) else None for text, _ in messages]
    texts: list[str] = []
    for (text, name), parts in zip(messages, plans, strict=True):
        texts.extend([index_text(p.text, name) for p in parts] if parts is not None
                     else [index_text(text, name)])
    vectors = iter(embedder.embed(texts, "document")) if texts else iter(())
    out = []
    for parts in plans:
        if parts is None:
            out.append(Embedded(next(vectors), []))
        else:
            pairs = [(p, next(vectors)) for p in parts]
            out.append(Embedded(mean_vector([v for _, v in pairs]), pairs))
    return out


def turn_vector(embedder: Embedder, text: str, name: str | None) -> Vector:
    """The vector of a turn with this text and speaker (its passages' mean if long)."""
    return embed_messages(embedder, [(text, name)])[0].vector
