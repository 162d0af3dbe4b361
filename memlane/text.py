"""Text helpers shared by the keyword indexes: one tokenizer, one stopword list, analyzers.

Two analyzers turn text into keyword terms. ``plain``: lowercase alphanumeric tokens without
stopwords (the reference BM25 setting). ``stem``: the same, with common English inflections
stripped (``painting``, ``paints`` and ``painted`` all become ``paint``), which finds
evidence phrased in another form than the question.

Tokens are runs of letters and digits of any script, after Unicode NFKC normalization and
case folding (``Straße`` and ``STRASSE`` are both ``strasse``). Runs longer than
``MAX_TOKEN_CHARS`` (encoded blobs, hashes) are not tokens. Text without spaces between
words (Chinese, Japanese) is not segmented: a run is one token.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

Analyzer = Literal["plain", "stem"]
ANALYZERS: tuple[Analyzer, ...] = ("plain", "stem")

MAX_TOKEN_CHARS = 100
_TOKEN = re.compile(rf"(?<![^\W_])[^\W_]{{1,{MAX_TOKEN_CHARS}}}(?![^\W_])")
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")

STOPWORDS = frozenset(
    """a an and are as at be but by did do does for from had has have he her his how i if in
    into is it its me my no not of on or our she so that the their them then there these they
    this to was we were what when where which who whom why will with would you your""".split()
)
# longest first; (suffix, replacement)
_SUFFIXES = (("ingly", ""), ("edly", ""), ("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""),
             ("ly", ""), ("s", ""))
_MIN_STEM = 3


def tokens(text: str) -> list[str]:
    """Case-folded alphanumeric tokens, in order, stopwords included."""
    if text.isascii():  # the common case, about twice as fast
        found: list[str] = _ASCII_TOKEN.findall(text.lower())
        if max(map(len, found), default=0) <= MAX_TOKEN_CHARS:
            return found
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def terms(text: str) -> list[str]:
    """Tokens without stopwords: what a plain keyword search looks for."""
    return [t for t in tokens(text) if t not in STOPWORDS]


@lru_cache(maxsize=100_000)
def stem(word: str) -> str:
    """Strip one common inflectional suffix, keeping at least three characters."""
    if word.isdigit():
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            if suffix == "s" and word.endswith("ss"):
                return word
            root = word[: -len(suffix)] + replacement
            if suffix in ("ing", "ed") and root[-1] == root[-2] and root[-1] not in "lsz":
                root = root[:-1]  # running -> run, stopped -> stop
            return root
    return word


def analyze(text: str, analyzer: Analyzer = "plain") -> list[str]:
    """Keyword terms of ``text`` under an analyzer."""
    found = terms(text)
    return [stem(t) for t in found] if analyzer == "stem" else found
