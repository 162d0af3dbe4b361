"""The part of a long text that an embedder reads, found without tokenizing all of it.

The model reads a text's first few hundred tokens; tokenizing a megabyte message whole to
keep them costs over a second. ``head`` tokenizes growing prefixes instead, and stops at the
first one whose tokens already hold the text's first ``keep`` tokens: those of the words it
holds entire. Its last word may be cut, so a prefix serves only once a later word follows
the ``keep``-th token (WordPiece reads each word on its own).
"""

from __future__ import annotations

from typing import Any

HEAD_CHARS = 2_048
"""The first prefix tried, in characters (English prose holds four or five characters a
token; a text this short is tokenized whole)."""
GROWTH = 4


def head(tokenizer: Any, text: str, keep: int, first: int = HEAD_CHARS) -> str:
    """A prefix of ``text`` whose first ``keep`` tokens are the first ``keep`` tokens of
    ``text`` (``text`` itself if none shorter is). ``tokenizer`` (``tokenizers.Tokenizer``)
    must truncate to more than ``keep`` tokens, as the embedder's does."""
    cut = first
    while cut < len(text):
        words = tokenizer.encode(text[:cut], add_special_tokens=False).word_ids
        if len(words) > keep and words[keep - 1] != words[-1]:
            return text[:cut]
        cut *= GROWTH
    return text
