"""Okapi BM25 over a small corpus computed from scratch: the in-memory store searches with it,
and the in-process index of the SQL stores (``keyword_index``) must agree with it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ..text import Analyzer, analyze


def bm25_scores(query: str, documents: Sequence[str], *, k1: float = 1.2, b: float = 0.75,
                analyzer: Analyzer = "plain") -> list[float]:
    """BM25 of ``query`` against each document, with statistics from ``documents`` alone."""
    q_terms = set(analyze(query, analyzer))
    if not q_terms or not documents:
        return [0.0] * len(documents)
    bags = [Counter(analyze(doc, analyzer)) for doc in documents]
    lengths = [sum(bag.values()) for bag in bags]
    avg_len = (sum(lengths) / len(lengths)) or 1.0
    n_docs = len(documents)
    idf = {}
    for term in q_terms:
        df = sum(1 for bag in bags if term in bag)
        idf[term] = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
    scores = []
    for bag, length in zip(bags, lengths, strict=True):
        norm = k1 * (1.0 - b + b * length / avg_len)
        score = 0.0
        for term in q_terms:
            tf = bag.get(term, 0)
            if tf:
                score += idf[term] * tf * (k1 + 1.0) / (tf + norm)
        scores.append(score)
    return scores
