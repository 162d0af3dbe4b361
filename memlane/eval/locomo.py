"""``memlane eval locomo``: evidence retrieval on LoCoMo-format conversations.

Each conversation is ingested into its own scope (user id = sample id), session by session
in order, each session's date as the event time and each turn's ``dia_id`` as its source
id. Every question with evidence left after cleaning is asked as its raw text; the ranked
memories' source ids are scored against the gold turn ids per category (by number) and for
categories 1-4 together. Baselines (BM25 alone, dense alone) run on the same store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exchange import locomo
from ..memory import Memory
from ..read.search import ABLATION
from ..timeutil import utcnow
from ..tokens import TOKENIZER_NAME
from .harness import Answer, Question, aggregate, ask, latency
from .machine import describe
from .metrics import clean_locomo_evidence

CATEGORIES = {"1": "multi-hop", "2": "temporal", "3": "open-domain", "4": "single-hop",
              "5": "adversarial"}
RECIPES = ("hybrid", "bm25", "dense")


@dataclass(slots=True)
class LocomoRun:
    report: dict[str, Any]
    answers: dict[str, list[Answer]]


def questions(conversations: Sequence[locomo.Conversation]) -> tuple[list[Question], int]:
    """Scorable questions (cleaned evidence left) and the number skipped for lack of it."""
    out, skipped = [], 0
    for conv in conversations:
        valid = {m["id"] for s in conv.sessions for m in s.messages}
        for index, qa in enumerate(conv.qa):
            gold = clean_locomo_evidence(qa.get("evidence", []), valid)
            if not gold or not str(qa.get("question", "")).strip():
                skipped += 1
                continue
            out.append(Question((conv.sample_id, index), conv.sample_id, str(qa["question"]),
                                str(qa.get("category")), tuple(gold)))
    return out, skipped


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c: [c] for c in CATEGORIES}
    out["cat1-4"] = ["1", "2", "3", "4"]
    return out


def recipes(retriever: str, ablation: bool) -> list[str]:
    """The configured retriever first, then the baselines, then the ablation steps."""
    names = [retriever, *(r for r in RECIPES if r != retriever)]
    return names + [n for n in ABLATION if n not in names] if ablation else names


def run(memory: Memory, data: Path, *, retriever: str = "hybrid",
        ks: Sequence[int] = (1, 3, 5, 10, 20, 50), progress: bool = True,
        ablation: bool = False) -> LocomoRun:
    """Ingest ``data`` into ``memory`` (a fresh store) and score every retriever."""
    conversations = locomo.load(data)
    ingested = locomo.ingest(memory, conversations, progress=progress)
    asked, skipped = questions(conversations)
    answers = {r: ask(memory, asked, r, max(ks), progress=progress)
               for r in recipes(retriever, ablation)}
    report = {
        "benchmark": "locomo",
        "data": data.name,
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "date": utcnow().strftime("%Y-%m-%d"),
        "machine": describe(),
        "embedder": memory.embedder.model_id,
        "tokenizer": TOKENIZER_NAME,
        "configured": retriever,
        "ks": list(ks),
        "conversations": len(conversations),
        "turns": sum(c.turn_count for c in conversations),
        "messages_left_out": ingested["rejected"],
        "questions_scored": len(asked),
        "skipped_no_evidence": skipped,
        "categories": CATEGORIES,
        "retrievers": {
            r: {"metrics": aggregate(a, ks, groups()), "latency": latency(a)}
            for r, a in answers.items()
        },
    }
    return LocomoRun(report, answers)


def dump_rankings(answers: Sequence[Answer], path: Path) -> None:
    """One line per question in the format of the reference scorer (tools/locomo_score.py),
    with ``tokens`` beside ``ranked``: each result's token count as it is returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for a in answers:
            sample_id, index = a.question.key
            out.write(json.dumps({"sample_id": sample_id, "qa_index": index,
                                  "ranked": a.ranked, "tokens": a.costs}) + "\n")
