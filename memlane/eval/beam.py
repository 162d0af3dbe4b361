"""``memlane eval beam``: evidence retrieval on BEAM chats (``exchange.beam``).

Each chat is ingested into its own scope (user id ``beam-<name>``), batch by batch in
order, each message's id as its source id. Every probing question with evidence is asked as
its raw text; the ranked memories' source ids are scored against the question's
``source_chat_ids`` (a list, or a mapping of lists: their union) per ability and for all
abilities together, as LoCoMo is scored. Evidence ids that are not messages of the chat are
dropped (and counted), and a question left with none is skipped. Abstention questions have
no evidence (nothing should be found), so recall cannot score them: they are skipped and
counted. A message the store refused at ingest stays in the gold evidence: it cannot be
found, and the report names it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exchange import beam
from ..memory import Memory
from ..timeutil import utcnow
from ..tokens import TOKENIZER_NAME
from .harness import Answer, Question, aggregate, ask, latency
from .locomo import recipes
from .machine import describe
from .report import group_table, recall_by_group, retriever_table

ABSTENTION = "abstention"
ABILITIES = ("contradiction_resolution", "event_ordering", "information_extraction",
             "instruction_following", "knowledge_update", "multi_session_reasoning",
             "preference_following", "summarization", "temporal_reasoning")
"""The abilities whose questions cite evidence, in the report's order."""
POOLED = "all"


@dataclass(slots=True)
class Asked:
    """The scorable questions and what was left out of them."""

    questions: list[Question]
    abstention: int = 0
    """Abstention questions, skipped: they have no evidence to find."""
    no_evidence: int = 0
    """Other questions with no evidence id that is a message of their chat."""
    dropped_ids: int = 0
    """Evidence ids dropped because they are not messages of their chat."""


@dataclass(slots=True)
class BeamRun:
    report: dict[str, Any]
    answers: dict[str, list[Answer]]


def questions(chats: Sequence[beam.Chat]) -> Asked:
    """Every question with evidence, keyed by (user id, position among the chat's
    questions in file order), its ability as its group."""
    asked = Asked([])
    for chat in chats:
        valid = chat.message_ids()
        for index, (ability, item) in enumerate(chat.items()):
            if ability == ABSTENTION:
                asked.abstention += 1
                continue
            cited = beam.evidence(item)
            gold = tuple(i for i in cited if i in valid)
            asked.dropped_ids += len(cited) - len(gold)
            text = str(item.get("question", "")).strip()
            if not gold or not text:
                asked.no_evidence += 1
                continue
            asked.questions.append(Question((chat.user_id, index), chat.user_id, text,
                                            ability, gold))
    return asked


def groups(asked: Sequence[Question]) -> dict[str, list[str]]:
    """Each ability found (the known ones first, in order), then all of them pooled."""
    found = {q.group for q in asked}
    names = [a for a in ABILITIES if a in found] + sorted(found - set(ABILITIES))
    return {**{name: [name] for name in names}, POOLED: names}


def run(memory: Memory, data: Path, *, retriever: str = "hybrid",
        ks: Sequence[int] = (1, 3, 5, 10, 20, 50), progress: bool = True,
        ablation: bool = False) -> BeamRun:
    """Ingest the chats at ``data`` into ``memory`` (a fresh store) and score every
    retriever."""
    chats = beam.load(data, questions=True)
    started = time.perf_counter()
    ingested = beam.ingest(memory, chats, progress=progress)
    ingest_s = time.perf_counter() - started
    asked = questions(chats)
    grouping = groups(asked.questions)
    answers = {r: ask(memory, asked.questions, r, max(ks), progress=progress)
               for r in recipes(retriever, ablation)}
    report = {
        "benchmark": "beam", "data": data.name, "data_sha256": fingerprint(chats),
        "date": utcnow().strftime("%Y-%m-%d"), "machine": describe(),
        "embedder": memory.embedder.model_id, "tokenizer": TOKENIZER_NAME,
        "configured": retriever, "ks": list(ks), "chats": len(chats),
        "messages": ingested["messages"], "ingest_s": round(ingest_s, 1),
        "messages_left_out": ingested["rejected"],
        "questions_scored": len(asked.questions), "skipped_abstention": asked.abstention,
        "skipped_no_evidence": asked.no_evidence, "dropped_evidence_ids": asked.dropped_ids,
        "retrievers": {r: _scores(a, ks, grouping) for r, a in answers.items()},
    }
    return BeamRun(report, answers)


def _scores(answers: Sequence[Answer], ks: Sequence[int],
            grouping: dict[str, list[str]]) -> dict[str, Any]:
    return {"metrics": aggregate(answers, ks, grouping), "latency": latency(answers),
            "latency_by_group": {
                name: latency([a for a in answers if a.question.group in members])
                for name, members in grouping.items()}}


def fingerprint(chats: Sequence[beam.Chat]) -> str:
    """SHA-256 over each chat's name, chat file and probing questions file."""
    digest = hashlib.sha256()
    for chat in chats:
        digest.update(chat.name.encode() + b"\0" + chat.file.read_bytes())
        digest.update((chat.file.parent / beam.QUESTIONS_FILE).read_bytes())
    return digest.hexdigest()


def markdown(report: dict[str, Any]) -> str:
    ks = report["ks"]
    headline = [k for k in ks if k in (5, 10, 20)] or ks
    k10 = 10 if 10 in ks else ks[-1]
    left_out = report["messages_left_out"]
    lines = [
        f"BEAM evidence retrieval on `{report['data']}` ({report['chats']} chats, "
        f"{report['messages']} messages ingested in {report['ingest_s']} s, "
        f"{report['questions_scored']} questions scored; {report['skipped_abstention']} "
        f"abstention questions skipped, as they have no evidence to find; "
        f"{report['skipped_no_evidence']} without evidence skipped; "
        f"{report['dropped_evidence_ids']} evidence ids that are not messages of their chat "
        f"dropped). Embedder {report['embedder']}; tokens counted with the "
        f"{report['tokenizer']} tokenizer. Date {report['date']}; machine: "
        f"{report['machine']}.",
    ]
    if left_out:
        lines += ["", "Messages the store refused, left out (still counted as evidence): "
                      + "; ".join(f"{r['sample']} message {r['message']}: {r['reason']}"
                                  for r in left_out) + "."]
    return "\n".join([
        *lines, "", "All abilities together:", "",
        retriever_table(report, POOLED, headline), "",
        f"Per ability, {report['configured']}:", "",
        group_table(report, report["configured"], headline), "",
        f"Recall@{k10} per ability:", "",
        recall_by_group(report, k10),
    ])
