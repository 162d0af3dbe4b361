"""``memlane eval knowledge-update``: does the current value outrank the stale ones?

A deterministic generator writes conversations (LoCoMo format) in which facts about a
person change over monthly sessions: where they live, their job, their partner, their
favourite food. Each question asks for the current value; its gold evidence is the turn
that stated the latest value, and the turns that stated earlier values are stale. Scored
like LoCoMo, plus how often a stale turn is ranked above the current one (or is retrieved
while the current one is not).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..exchange import locomo
from ..llm.fake import ScriptedLLM
from ..memory import Memory
from ..timeutil import utcnow
from ..tokens import TOKENIZER_NAME
from .harness import Answer, Question, aggregate, ask, latency
from .locomo import RECIPES
from .machine import describe
from .report import retriever_table, table

NAMES = ["Ada", "Bilal", "Chiara", "Dmitri", "Esme", "Farid", "Greta", "Hiro", "Ilse", "Jonah",
         "Kalani", "Luca", "Maya", "Nils", "Odette", "Pavel", "Qiana", "Ravi", "Sofia", "Tomas"]
CITIES = ["Lisbon", "Porto", "Berlin", "Oslo", "Kyoto", "Denver", "Dublin", "Vienna", "Seoul",
          "Lima", "Perth", "Tallinn"]
JOBS = ["nurse", "architect", "baker", "data analyst", "teacher", "pilot", "electrician",
        "lawyer", "journalist", "chef", "pharmacist", "translator"]
PARTNERS = ["Sam", "Alex", "Robin", "Jamie", "Noa", "Kim", "Ari", "Sasha", "Eli", "Remy"]
FOODS = ["ramen", "paella", "tacos", "curry", "dumplings", "risotto", "falafel", "pho"]

ATTRIBUTES: dict[str, tuple[list[str], str, str, str]] = {
    # attribute: (values, first statement, change statement, question)
    "city": (CITIES, "I live in {v} these days, right in the center.",
             "Big news: I moved to {v} last week, still unpacking boxes.",
             "Where does {name} live now?"),
    "job": (JOBS, "I work as a {v}, it keeps me busy.",
            "I quit my old job and started working as a {v} this month.",
            "What is {name}'s job now?"),
    "partner": (PARTNERS, "My partner {v} and I just celebrated our anniversary.",
                "I'm with {v} now, we met a few weeks ago and it's going really well.",
                "Who is {name}'s partner now?"),
    "food": (FOODS, "My favourite food is {v}, I could eat it every day.",
             "Lately my favourite food has become {v}, I can't get enough of it.",
             "What is {name}'s favourite food these days?"),
}
FILLER = [
    "How was your weekend?", "Pretty relaxed, I mostly read and went for walks.",
    "Did you see the game last night?", "The weather has been so strange lately.",
    "I've been trying to drink more water.", "We should catch up over coffee soon.",
    "Work has been hectic but fine.", "I finally fixed my bike's brakes.",
    "Have you watched anything good recently?", "I'm thinking about learning to paint.",
    "My neighbour's dog keeps barking at night.", "That sounds like a fun plan!",
]


@dataclass(frozen=True, slots=True)
class Fact:
    attribute: str
    value: str
    dia_id: str


def generate(people: int, seed: int = 1, sessions: int = 6) -> tuple[list[dict[str, Any]],
                                                                      dict[str, list[Any]]]:
    """LoCoMo-format samples, and per sample the (question, current, stale ids) triples."""
    rng = random.Random(seed)
    samples, truths = [], {}
    for p in range(people):
        name = NAMES[p % len(NAMES)] + ("" if p < len(NAMES) else f" {p // len(NAMES) + 1}")
        sample_id = f"ku-{p:03d}"
        conv, facts = _conversation(rng, name, sessions)
        samples.append({"sample_id": sample_id, "conversation": conv, "qa": []})
        truths[sample_id] = [
            (ATTRIBUTES[attr][3].format(name=name), history[-1].dia_id,
             [f.dia_id for f in history[:-1]])
            for attr, history in facts.items() if len(history) > 1
        ]
    return samples, truths


def _conversation(rng: random.Random, name: str,
                  sessions: int) -> tuple[dict[str, Any], dict[str, list[Fact]]]:
    friend = rng.choice([n for n in NAMES if n != name.split()[0]])
    conv: dict[str, Any] = {"speaker_a": name, "speaker_b": friend}
    facts: dict[str, list[Fact]] = {a: [] for a in ATTRIBUTES}
    start = datetime(2024, 1, 5, 18, 30, tzinfo=UTC)
    for s in range(1, sessions + 1):
        statements = list(ATTRIBUTES) if s == 1 else [
            a for a in ATTRIBUTES if rng.random() < 0.35]
        turns: list[dict[str, str]] = []
        for attribute in rng.sample(statements, len(statements)):
            values, first, change, _ = ATTRIBUTES[attribute]
            old = {f.value for f in facts[attribute]}
            value = rng.choice([v for v in values if v not in old])
            _say(turns, s, friend, rng.choice(FILLER))
            text = (first if not facts[attribute] else change).format(v=value)
            facts[attribute].append(Fact(attribute, value, _say(turns, s, name, text)))
        for _ in range(rng.randint(2, 5)):
            _say(turns, s, rng.choice([name, friend]), rng.choice(FILLER))
        when = start + timedelta(days=30 * (s - 1))
        conv[f"session_{s}_date_time"] = when.strftime("%I:%M %p on %d %B, %Y")
        conv[f"session_{s}"] = turns
    return conv, facts


def _say(turns: list[dict[str, str]], session: int, speaker: str, text: str) -> str:
    dia_id = f"D{session}:{len(turns) + 1}"
    turns.append({"speaker": speaker, "dia_id": dia_id, "text": text})
    return dia_id


@dataclass(slots=True)
class KnowledgeUpdateRun:
    report: dict[str, Any]
    answers: dict[str, list[Answer]]


FACTS = {"city": "{name} lives in {v}.", "job": "{name} works as a {v}.",
         "partner": "{name}'s partner is {v}.", "food": "{name}'s favourite food is {v}."}
_LINE = re.compile(r"^\[(\d+)\] \S+ (.+?) \((\w+)\): (.*)$")


def _statement_patterns() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for attribute, (_, first, change, _) in ATTRIBUTES.items():
        for template in (first, change):
            pattern = re.escape(template).replace(re.escape("{v}"), "(?P<v>.+?)")
            out.append((attribute, re.compile("^" + pattern + "$")))
    return out


def scripted_llm() -> ScriptedLLM:
    """A stand-in LLM that reads this generator's sentences without error (a perfect
    extractor), so the set measures what memlane does with correct facts: reconcile,
    supersede and rank. Not a model of any real LLM's quality."""
    patterns = _statement_patterns()

    def answer(messages: list[dict[str, str]], name: str) -> str:
        body = messages[-1]["content"]
        if "NEW lines:" in body:
            facts = []
            for raw in body.split("NEW lines:\n", 1)[1].splitlines():
                m = _LINE.match(raw)
                for attribute, pattern in patterns if m else []:
                    found = pattern.match(m.group(4)) if m else None
                    if m and found:
                        text = FACTS[attribute].format(name=m.group(2), v=found.group("v"))
                        facts.append({"text": text, "sources": [int(m.group(1))],
                                      "entities": [m.group(2), found.group("v")]})
            return json.dumps({"facts": facts})
        fact = body.split("\n", 1)[0].split("): ", 1)[1]
        for number, text in re.findall(r"^\[(\d+)\] \([^)]*\) (.*)$", body, re.M):
            if text.split(" ")[:3] == fact.split(" ")[:3]:
                return json.dumps({"action": "NOOP" if text == fact else "SUPERSEDE",
                                   "target": int(number), "reason": "value changed"})
        return json.dumps({"action": "ADD", "target": None, "reason": "new"})

    return ScriptedLLM(answer, model="scripted-knowledge-update")


def run(memory: Memory, *, people: int = 40, seed: int = 1, retriever: str = "hybrid",
        ks: Sequence[int] = (1, 3, 5, 10), progress: bool = True) -> KnowledgeUpdateRun:
    """Generate, ingest (with fact extraction when ``memory`` has an LLM) and score."""
    samples, truths = generate(people, seed)
    conversations = locomo.parse(samples)
    locomo.ingest(memory, conversations, progress=progress, infer=memory.llm is not None)
    asked, stale = [], {}
    for sample_id, triples in truths.items():
        for index, (text, current, old) in enumerate(triples):
            q = Question((sample_id, index), sample_id, text, "knowledge-update", (current,))
            asked.append(q)
            stale[q.key] = set(old)
    recipes = [retriever, *(r for r in RECIPES if r != retriever)]
    answers = {r: ask(memory, asked, r, max(ks), progress=progress) for r in recipes}
    report = {
        "benchmark": "knowledge-update", "people": people, "seed": seed,
        "llm": memory.llm.model if memory.llm else None,
        "date": utcnow().strftime("%Y-%m-%d"), "machine": describe(),
        "embedder": memory.embedder.model_id, "tokenizer": TOKENIZER_NAME,
        "configured": retriever, "ks": list(ks), "questions_scored": len(asked),
        "turns": sum(c.turn_count for c in conversations),
        "retrievers": {
            r: {"metrics": aggregate(a, ks, {"knowledge-update": ["knowledge-update"]}),
                "latency": latency(a), "stale_first_rate": stale_first_rate(a, stale)}
            for r, a in answers.items()
        },
    }
    return KnowledgeUpdateRun(report, answers)


def _first_rank(ranked: list[list[str]], ids: set[str]) -> int | None:
    return next((i for i, unit in enumerate(ranked) if ids & set(unit)), None)


def stale_first_rate(answers: Sequence[Answer], stale: dict[tuple[str, int], set[str]]) -> float:
    """Share of questions where a stale turn ranks above the current one, or is retrieved
    while the current one is not."""
    worse = 0
    for a in answers:
        current = _first_rank(a.ranked, set(a.question.gold))
        old = _first_rank(a.ranked, stale[a.question.key])
        if old is not None and (current is None or old < current):
            worse += 1
    return round(worse / len(answers), 4) if answers else 0.0


def markdown(report: dict[str, Any]) -> str:
    ks = report["ks"]
    stale_rows = [[name, r["stale_first_rate"]] for name, r in report["retrievers"].items()]
    return "\n".join([
        f"Knowledge-update set: {report['people']} generated people (seed {report['seed']}), "
        f"{report['turns']} turns, {report['questions_scored']} questions about values that "
        f"changed. Embedder {report['embedder']}; "
        f"{'LLM ' + report['llm'] if report.get('llm') else 'no LLM'}. "
        f"Date {report['date']}; machine: "
        f"{report['machine']}.", "",
        retriever_table(report, "knowledge-update", ks), "",
        f"Stale value ranked above the current one (within the top {max(ks)}):", "",
        table(stale_rows, ["retriever", "stale-first rate"]),
    ])
