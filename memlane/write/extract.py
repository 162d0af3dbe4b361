"""Extract: candidate facts from new turns and their recent context, by an LLM.

Each candidate keeps the ids of the raw messages it was read from. Sources are shown to the
model as small integers and mapped back; a candidate citing no new user line is dropped
(assistant-authored text is never stored as a fact about the user).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..llm.base import LLM, Usage
from ..prompts import extract as prompt
from ..types import MemoryRecord, Message

CONTEXT_MESSAGES = 6


@dataclass(frozen=True, slots=True)
class Candidate:
    text: str
    source_ids: tuple[str, ...]
    speaker: str | None
    event_time: datetime
    entities: tuple[str, ...] = ()
    relations: tuple[tuple[str, str, str], ...] = ()


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class Extraction:
    candidates: list[Candidate]
    summary: str | None
    usage: Usage
    problems: list[str]


def candidates(llm: LLM, turns: Sequence[MemoryRecord], context: Sequence[Message],
               summary: str | None = None) -> Extraction:
    """Candidates from ``turns`` (the new ones), with ``context`` as earlier lines and the
    conversation's summary so far; and the summary brought up to date."""
    shown = [prompt.line(f"c{i + 1}", _when(m.event_time), m.name or m.role, m.role, m.content)
             for i, m in enumerate(context)]
    new = [prompt.line(str(i + 1), _when(t.event_time), t.speaker or t.role or "user",
                       t.role or "user", t.text) for i, t in enumerate(turns)]
    answer, usage = llm.complete_json(prompt.messages(shown, new, summary), prompt.SCHEMA,
                                      prompt.NAME)
    out, problems = [], []
    for fact in answer["facts"]:
        text = " ".join(str(fact["text"]).split())
        cited = [turns[n - 1] for n in dict.fromkeys(fact["sources"])
                 if isinstance(n, int) and 1 <= n <= len(turns)]
        users = [t for t in cited if (t.role or "user") == "user"]
        if not text or not users:
            problems.append(f"dropped a fact citing no new user line: {text[:80]!r}")
            continue
        entities = tuple(dict.fromkeys(
            " ".join(str(e).split()) for e in fact.get("entities", []) if str(e).strip()))
        relations = tuple((" ".join(r["subject"].split()), " ".join(r["predicate"].split()),
                           " ".join(r["object"].split())) for r in fact.get("relations", [])
                          if all(str(r[k]).strip() for k in ("subject", "predicate", "object")))
        out.append(Candidate(text, tuple(t.source_ids[0] for t in users), users[-1].speaker,
                             max(t.event_time for t in users), entities, relations))
    new_summary = " ".join(str(answer.get("summary") or "").split()) or None
    return Extraction(out, new_summary, usage, problems)
