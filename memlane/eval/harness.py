"""The shared machinery of retrieval evaluations: ask questions, keep rankings, aggregate.

A dataset loader turns its file into scopes to ingest and ``Question`` values; ``ask``
runs every question through ``Memory.search`` with each retriever recipe and records the
ranked source ids, the tokens retrieved and the latency; ``aggregate`` averages the
metrics per group (a LoCoMo category, a LongMemEval question type).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..memory import Memory
from ..tokens import count_many
from .metrics import mean, percentile, recall_within, scores_at

DEFAULT_KS = (1, 3, 5, 10, 20, 50)
BUDGETS = (1_000, 2_000, 4_000)
"""Token budgets at which recall is reported (``metrics.recall_within``)."""


@dataclass(frozen=True, slots=True)
class Question:
    key: tuple[str, int]
    """Identifies the question in its file, e.g. (sample_id, index in its qa list)."""
    user_id: str
    text: str
    group: str
    gold: tuple[str, ...]


@dataclass(slots=True)
class Answer:
    """What one retriever returned for one question."""

    question: Question
    ranked: list[list[str]]
    tokens: list[int]
    """Cumulative tokens of the retrieved memories' text: tokens[i] for the top i + 1."""
    latency_ms: float

    @property
    def costs(self) -> list[int]:
        """Each retrieved memory's own token count, in rank order."""
        return [b - a for a, b in zip([0, *self.tokens], self.tokens, strict=False)]


def ask(memory: Memory, questions: Sequence[Question], recipe: str, max_k: int, *,
        progress: bool = True) -> list[Answer]:
    from tqdm import tqdm

    answers = []
    for q in tqdm(questions, desc=f"search ({recipe})", unit="q", disable=not progress):
        memory.embedder.clear_cache()  # every query pays for its embedding, as a new one would
        start = time.perf_counter()
        hits = memory.search(q.text, user_id=q.user_id, limit=max_k, recipe=recipe)
        latency = (time.perf_counter() - start) * 1000
        costs = count_many([h.memory.index_text for h in hits])
        cumulative, total = [], 0
        for cost in costs:
            total += cost
            cumulative.append(total)
        answers.append(Answer(q, [list(h.memory.source_ids) for h in hits], cumulative,
                              latency))
    return answers


def tokens_at(answer: Answer, k: int) -> int:
    if not answer.tokens:
        return 0
    return answer.tokens[min(k, len(answer.tokens)) - 1]


Scorer = Callable[[Answer, int], dict[str, float]]


def locomo_scorer(answer: Answer, k: int) -> dict[str, float]:
    return scores_at(answer.ranked, answer.question.gold, k)


def aggregate(answers: Sequence[Answer], ks: Sequence[int],
              groups: Mapping[str, Sequence[str]], scorer: Scorer = locomo_scorer,
              ) -> dict[str, Any]:
    """Mean metrics per group name; ``groups`` maps a report name to the question groups
    it pools (e.g. "cat1-4" pools categories 1 to 4)."""
    out: dict[str, Any] = {}
    for name, members in groups.items():
        chosen = [a for a in answers if a.question.group in members]
        if not chosen:
            continue
        sums: defaultdict[str, list[float]] = defaultdict(list)
        for answer in chosen:
            for k in ks:
                for metric, value in scorer(answer, k).items():
                    sums[metric].append(value)
                sums[f"tokens@{k}"].append(float(tokens_at(answer, k)))
            if answer.question.gold:
                for budget in BUDGETS:
                    sums[f"recall_within@{budget}"].append(recall_within(
                        answer.ranked, answer.costs, answer.question.gold, budget))
        out[name] = {"n": len(chosen), **{m: round(mean(v), 4) for m, v in sums.items()}}
    return out


def latency(answers: Sequence[Answer]) -> dict[str, float]:
    values = [a.latency_ms for a in answers]
    return {"p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2),
            "mean_ms": round(mean(values), 2)}

