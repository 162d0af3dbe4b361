"""Text helpers shared by the keyword indexes: one tokenizer, one stopword list."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+")

STOPWORDS = frozenset(
    """a an and are as at be but by did do does for from had has have he her his how i if in
    into is it its me my no not of on or our she so that the their them then there these they
    this to was we were what when where which who whom why will with would you your""".split()
)


def tokens(text: str) -> list[str]:
    """Lowercase alphanumeric tokens, in order, stopwords included."""
    return _TOKEN.findall(text.lower())


def terms(text: str) -> list[str]:
    """Tokens without stopwords: what a keyword search looks for."""
    return [t for t in tokens(text) if t not in STOPWORDS]
