"""Retrieval metrics over ranked lists of source-id sets, as the LoCoMo and LongMemEval
evaluations define them. Pure functions; the harness and the tests share them.

A ranking is a list of retrieved units, best first, each given by the set of source (turn)
ids it cites. With E the gold evidence and R_k the union of the top k units' sources:
- ``recall@k`` = |E ∩ R_k| / |E|;
- ``all@k`` = 1 if E ⊆ R_k (every piece of evidence retrieved), else 0;
- ``any@k`` = 1 if E ∩ R_k is not empty;
- ``ndcg@k`` with gain 1 for a unit whose sources meet E; the ideal DCG is taken over
  min(k, number of such units anywhere in the ranking);
- ``recall_within@B`` = recall over the top units whose returned text adds up to at most B
  tokens (a unit that would pass B, and any after it, does not count): what a prompt of B
  tokens holds, so that units of different sizes compare at equal cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

Ranking = Sequence[Sequence[str]]
_TURN_ID = re.compile(r"D(\d+):(\d+)")


def clean_locomo_evidence(evidence: Iterable[object], valid: set[str]) -> list[str]:
    """LoCoMo gold turn ids: split joined entries, normalize ``D30:05`` to ``D30:5``, drop
    ids that are not turns of the conversation, keep first occurrences in order."""
    out: list[str] = []
    for entry in evidence:
        for session, turn in _TURN_ID.findall(str(entry)):
            turn_id = f"D{int(session)}:{int(turn)}"
            if turn_id in valid and turn_id not in out:
                out.append(turn_id)
    return out


def _dcg(relevance: Sequence[float]) -> float:
    return sum(rel / math.log2(i + 2) for i, rel in enumerate(relevance))


def scores_at(ranked: Ranking, gold: Sequence[str], k: int) -> dict[str, float]:
    """recall, all, any and ndcg at k for one question."""
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("a question without gold evidence cannot be scored")
    top = [set(unit) for unit in ranked[:k]]
    covered = set().union(*top) if top else set()
    relevance = [1.0 if unit & gold_set else 0.0 for unit in top]
    n_relevant = sum(1 for unit in ranked if set(unit) & gold_set)
    ideal = _dcg([1.0] * min(k, n_relevant))
    hit = gold_set & covered
    return {
        f"recall@{k}": len(hit) / len(gold_set),
        f"all@{k}": float(gold_set <= covered),
        f"any@{k}": float(bool(hit)),
        f"ndcg@{k}": _dcg(relevance) / ideal if ideal else 0.0,
    }


def recall_within(ranked: Ranking, tokens: Sequence[int], gold: Sequence[str],
                  budget: int) -> float:
    """Recall over the leading units whose token counts (``tokens``, one per unit) add up
    to at most ``budget``."""
    if len(tokens) != len(ranked):
        raise ValueError("one token count per ranked unit is needed")
    total, kept = 0, 0
    for cost in tokens:
        if total + cost > budget:
            break
        total, kept = total + cost, kept + 1
    gold_set = set(gold)
    if not gold_set:
        raise ValueError("a question without gold evidence cannot be scored")
    found = set().union(*(set(unit) for unit in ranked[:kept])) if kept else set()
    return len(gold_set & found) / len(gold_set)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
