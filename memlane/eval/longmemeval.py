"""``memlane eval longmemeval``: evidence retrieval on LongMemEval-format files.

Each question brings its own haystack: its sessions are ingested into a scope of their own
(user id = question id), in order, with their dates; turn ids are ``<session id>:<index>``.
Gold turns are those marked ``has_answer``; gold sessions are ``answer_session_ids``.
Abstention questions (ids ending in ``_abs``) have no evidence and are skipped, as in the
benchmark's own retrieval evaluation. Metrics, per question type and pooled, at turn and at
session level: recall_any@k, recall_all@k and ndcg_any@k.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..memory import Memory
from ..timeutil import parse_with_formats, utcnow
from ..tokens import TOKENIZER_NAME
from .harness import Answer, Question, aggregate, ask, latency
from .locomo import RECIPES
from .machine import describe
from .metrics import scores_at
from .report import table

DATE_FORMATS = ("%Y/%m/%d (%a) %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d")
REQUIRED = ("question_id", "question", "haystack_session_ids", "haystack_dates",
            "haystack_sessions", "answer_session_ids")


@dataclass(slots=True)
class LongMemEvalRun:
    report: dict[str, Any]
    answers: dict[str, list[Answer]]


def parse_date(value: str) -> datetime:
    return parse_with_formats(value, DATE_FORMATS, "LongMemEval")


def load(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path} is not a readable JSON file: {exc}") from exc
    if not isinstance(data, list) or not data or not all(
            isinstance(item, dict) and all(k in item for k in REQUIRED) for item in data):
        raise InvalidInputError(f"{path} is not in the LongMemEval format (a list of "
                                f"questions with {', '.join(REQUIRED)})")
    return data


def turn_id(session_id: str, index: int) -> str:
    return f"{session_id}:{index}"


def session_of(source_id: str) -> str:
    return source_id.rsplit(":", 1)[0]


def ingest(memory: Memory, items: Sequence[dict[str, Any]], *, progress: bool) -> int:
    from tqdm import tqdm

    turns = 0
    for item in tqdm(items, desc="ingest", unit="question", disable=not progress):
        sessions = zip(item["haystack_session_ids"], item["haystack_dates"],
                       item["haystack_sessions"], strict=True)
        for session_id, date, session in sorted(sessions, key=lambda s: parse_date(s[1])):
            messages = [{"role": t.get("role", "user"), "content": t["content"],
                         "id": turn_id(session_id, i)}
                        for i, t in enumerate(session) if str(t.get("content", "")).strip()]
            if messages:
                memory.add(messages, user_id=item["question_id"], session_id=session_id,
                           timestamp=parse_date(date))
                turns += len(messages)
    return turns


def questions(items: Sequence[dict[str, Any]]) -> tuple[list[Question], int]:
    """Scorable questions; gold holds the evidence turns and, after '|', the sessions."""
    out, skipped = [], 0
    for index, item in enumerate(items):
        if str(item["question_id"]).endswith("_abs") or not item["answer_session_ids"]:
            skipped += 1
            continue
        gold_turns = [turn_id(sid, i)
                      for sid, session in zip(item["haystack_session_ids"],
                                              item["haystack_sessions"], strict=True)
                      for i, t in enumerate(session) if t.get("has_answer")]
        gold = (*gold_turns, "|", *item["answer_session_ids"])
        out.append(Question((str(item["question_id"]), index), str(item["question_id"]),
                            str(item["question"]), str(item.get("question_type", "all")),
                            gold))
    return out, skipped


def _split(gold: Sequence[str]) -> tuple[list[str], list[str]]:
    cut = list(gold).index("|")
    return list(gold[:cut]), list(gold[cut + 1:])


def scorer(answer: Answer, k: int) -> dict[str, float]:
    """Turn- and session-level recall_any, recall_all and ndcg_any at k."""
    turns, sessions = _split(answer.question.gold)
    ranked_sessions = [[s] for s in dict.fromkeys(session_of(src) for unit in answer.ranked
                                                  for src in unit)]
    out: dict[str, float] = {}
    for level, gold, ranked in (("turn", turns, answer.ranked),
                                ("session", sessions, ranked_sessions)):
        if not gold:
            continue
        s = scores_at(ranked, gold, k)
        out[f"{level}_recall_any@{k}"] = s[f"any@{k}"]
        out[f"{level}_recall_all@{k}"] = s[f"all@{k}"]
        out[f"{level}_ndcg_any@{k}"] = s[f"ndcg@{k}"]
    return out


def run(memory: Memory, data: Path, *, retriever: str = "hybrid",
        ks: Sequence[int] = (1, 3, 5, 10, 30, 50), progress: bool = True) -> LongMemEvalRun:
    items = load(data)
    turns = ingest(memory, items, progress=progress)
    asked, skipped = questions(items)
    types = sorted({q.group for q in asked})
    groups = {t: [t] for t in types} | {"all": types}
    recipes = [retriever, *(r for r in RECIPES if r != retriever)]
    answers = {r: ask(memory, asked, r, max(ks), progress=progress) for r in recipes}
    report = {
        "benchmark": "longmemeval", "data": data.name,
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "date": utcnow().strftime("%Y-%m-%d"), "machine": describe(),
        "embedder": memory.embedder.model_id, "tokenizer": TOKENIZER_NAME,
        "configured": retriever, "ks": list(ks), "turns": turns,
        "questions_scored": len(asked), "skipped_abstention": skipped,
        "retrievers": {r: {"metrics": aggregate(a, ks, groups, scorer), "latency": latency(a)}
                       for r, a in answers.items()},
    }
    return LongMemEvalRun(report, answers)


def markdown(report: dict[str, Any]) -> str:
    ks = report["ks"]
    rows = []
    for name, result in report["retrievers"].items():
        m = result["metrics"]["all"]
        for level in ("turn", "session"):
            rows.append([name, level, m["n"],
                         *(f"{m.get(f'{level}_recall_any@{k}', 0.0):.3f}" for k in ks),
                         *(f"{m.get(f'{level}_recall_all@{k}', 0.0):.3f}" for k in ks),
                         *(f"{m.get(f'{level}_ndcg_any@{k}', 0.0):.3f}" for k in ks)])
    headers = ["retriever", "level", "n", *(f"any@{k}" for k in ks), *(f"all@{k}" for k in ks),
               *(f"nDCG@{k}" for k in ks)]
    return "\n".join([
        f"LongMemEval evidence retrieval on `{report['data']}` ({report['questions_scored']} "
        f"questions scored, {report['skipped_abstention']} abstention skipped, "
        f"{report['turns']} turns). Embedder {report['embedder']}. Date {report['date']}; "
        f"machine: {report['machine']}.", "", table(rows, headers),
    ])

