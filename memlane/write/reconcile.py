"""Reconcile: decide ADD, UPDATE, SUPERSEDE or NOOP for each candidate, and turn the
decisions into one write batch.

The model sees the most similar current facts of the same scope as numbers 0..n-1 and can
only act on those; an answer naming another number, or failing validation, is an error
and applies nothing. Nothing is ever hard-deleted: SUPERSEDE closes the old fact's
validity (``valid_to``, status ``superseded``) and keeps it for history and ``as_of``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from .. import kinds
from ..errors import ModelOutputError
from ..ids import new_id
from ..llm.base import LLM, Usage
from ..prompts import reconcile as prompt
from ..types import MemoryRecord, content_hash
from .extract import Candidate

ACTOR = "llm"


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    candidate: Candidate
    target: MemoryRecord | None
    text: str
    reason: str


def decide(llm: LLM, candidate: Candidate,
           similar: Sequence[MemoryRecord]) -> tuple[Decision, Usage]:
    """Ask the model; raise ModelOutputError when the answer is unusable."""
    if any(s.hash == content_hash(candidate.text) for s in similar):
        same = next(s for s in similar if s.hash == content_hash(candidate.text))
        return Decision("NOOP", candidate, same, candidate.text, "identical fact stored"), Usage()
    chat = prompt.messages(candidate.text, candidate.event_time.strftime("%Y-%m-%d"),
                           [(s.valid_from.strftime("%Y-%m-%d"), s.text) for s in similar])
    answer, usage = llm.complete_json(chat, prompt.SCHEMA, prompt.NAME)
    action, target = answer["action"], answer.get("target")
    chosen = None
    if action in ("UPDATE", "SUPERSEDE"):
        if not isinstance(target, int) or not 0 <= target < len(similar):
            raise ModelOutputError(f"{action} names memory {target!r}, which was not shown "
                                   f"(shown: 0..{len(similar) - 1})", str(answer))
        chosen = similar[target]
    text = answer.get("text") if action == "UPDATE" else None
    text = " ".join(str(text).split()) if text else candidate.text
    return Decision(action, candidate, chosen, text, str(answer.get("reason") or "")), usage


def new_fact(candidate: Candidate, text: str, template: MemoryRecord,
             now: datetime) -> MemoryRecord:
    """A fact memory in the scope of ``template`` (one of the turns it came from)."""
    return MemoryRecord(
        id=new_id(), tenant=template.tenant, user_id=template.user_id,
        agent_id=template.agent_id, session_id=template.session_id, kind=kinds.FACT, text=text,
        role=None, speaker=candidate.speaker, hash=content_hash(text),
        source_ids=candidate.source_ids, event_time=candidate.event_time,
        valid_from=candidate.event_time, created_at=now, updated_at=now,
        metadata={"extracted_by": prompt.VERSION},
    )


def updated(target: MemoryRecord, decision: Decision, now: datetime) -> MemoryRecord:
    sources = tuple(dict.fromkeys((*target.source_ids, *decision.candidate.source_ids)))
    return replace(target, text=decision.text, hash=content_hash(decision.text),
                   source_ids=sources, version=target.version + 1, updated_at=now)


def superseded(target: MemoryRecord, by: MemoryRecord, now: datetime) -> MemoryRecord:
    return replace(target, status="superseded", valid_to=by.valid_from, superseded_by=by.id,
                   version=target.version + 1, updated_at=now)
