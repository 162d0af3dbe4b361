"""Rank fusion: pure functions from ranked id lists to one ranking. Nothing is mutated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class Fused:
    """One fused result: its id, a score in [0, 1], and (rank, contribution) per signal."""

    id: str
    score: float
    signals: dict[str, tuple[int, float]]


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[str]], *, k: int = 60,
                           weights: Mapping[str, float] | None = None) -> list[Fused]:
    """Weighted RRF: each signal adds ``w / (k + rank)`` (ranks from 1) to an id's score.

    Scores are divided by the best possible total (first in every signal), so they lie in
    [0, 1] and an id ranked first by every signal scores exactly 1. Ties break on the best
    rank reached, then on id, so the result is deterministic.
    """
    if k < 0:
        raise InvalidInputError("k must be non-negative")
    weight = {name: (weights or {}).get(name, 1.0) for name in rankings}
    if any(w < 0 for w in weight.values()):
        raise InvalidInputError("weights must be non-negative")
    best_total = sum(w / (k + 1) for w in weight.values()) or 1.0
    signals: dict[str, dict[str, tuple[int, float]]] = {}
    for name, ids in rankings.items():
        for rank, item in enumerate(dict.fromkeys(ids), start=1):
            signals.setdefault(item, {})[name] = (rank, weight[name] / (k + rank))
    fused = [
        Fused(item, min(1.0, sum(c for _, c in parts.values()) / best_total), parts)
        for item, parts in signals.items()
    ]
    fused.sort(key=lambda f: (-f.score, min(r for r, _ in f.signals.values()), f.id))
    return fused
