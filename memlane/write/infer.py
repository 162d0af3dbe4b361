"""The LLM stage of the write path: one job per add, run outside any write transaction.

A job reads its turns and their recent context, asks for candidate facts, decides for each
one against the most similar current facts of the scope (including those this job already
decided), and then writes every change together with the job's outcome in one batch. So a
job applies all of its decisions or none, and a retried job that already finished does
nothing. Model errors mark the job failed with the error text; the raw turns stay as they
were. The batch is written only while the job is still this run's claim: a job erased
meanwhile (``forget``, ``reset``) or taken over after its lease writes nothing, and its
result is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from .. import kinds
from ..embed.base import Embedder
from ..errors import ModelError, ModelOutputError
from ..filters import parse
from ..ids import new_id
from ..llm.base import LLM, Usage
from ..read import search as pipeline
from ..store.base import (
    JobFinish,
    JobReleased,
    RecordQuery,
    RecordUpdate,
    Store,
    Vector,
    WriteBatch,
)
from ..timeutil import utcnow
from ..types import HistoryEvent, Job, MemoryRecord, Message, content_hash
from . import extract, graph, history, reconcile
from .reconcile import ACTOR

SIMILAR_FACTS = 5
MAX_ATTEMPTS = 3


def new_job(turns: Sequence[MemoryRecord], add_key: str, now: datetime) -> Job:
    first = turns[0]
    return Job(id=new_id(), tenant=first.tenant, user_id=first.user_id,
               agent_id=first.agent_id, session_id=first.session_id, add_key=add_key,
               memory_ids=tuple(t.id for t in turns), status="pending", attempts=0,
               created_at=now, updated_at=now)


@dataclass(slots=True)
class _Plan:
    """Decisions of one job, applied to a private overlay before anything is written."""

    inserts: dict[str, tuple[MemoryRecord, Vector]] = field(default_factory=dict)
    updates: dict[str, tuple[MemoryRecord, int, Vector | None]] = field(default_factory=dict)
    events: list[HistoryEvent] = field(default_factory=list)
    entities: dict[str, MemoryRecord] = field(default_factory=dict)
    actions: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class Inference:
    """Runs jobs for one store, embedder and LLM."""

    def __init__(self, store: Store, embedder: Embedder, llm: LLM,
                 pool: pipeline.Pool | None = None) -> None:
        self.store, self.embedder, self.llm, self.pool = store, embedder, llm, pool

    def run(self, job: Job) -> Job | None:
        """Run (or re-run) a claimed job; return it as stored afterwards (None: it was erased
        or taken over while it ran, and wrote nothing)."""
        if job.status == "done":
            return job
        turns = [t for t in self.store.get(job.tenant, job.memory_ids) if t.status == "active"]
        plan = _Plan()
        try:
            if turns:
                self._plan(turns, plan)
        except ModelError as exc:
            return self._finish(job, plan, "failed", _describe(exc))
        return self._finish(job, plan, "done", "; ".join(plan.errors) or None)

    def _finish(self, job: Job, plan: _Plan, status: str, error: str | None) -> Job | None:
        attempts = job.attempts + 1
        if status == "failed" and attempts < MAX_ATTEMPTS:
            status = "pending"
        usage = {"calls": plan.usage.calls, "prompt_tokens": plan.usage.prompt_tokens,
                 "completion_tokens": plan.usage.completion_tokens}
        done = replace(job, status=status, attempts=attempts, error=error, updated_at=utcnow(),
                       actions=tuple(plan.actions) if status == "done" else (), usage=usage)
        batch = WriteBatch(scope=job.scope, finish=JobFinish(claimed=job, result=done))
        if status == "done":
            batch.inserts = list(plan.inserts.values())
            batch.updates = [RecordUpdate(r, v, vec) for r, v, vec in plan.updates.values()]
            batch.events = plan.events
        try:
            self.store.write(batch)
        except JobReleased:  # erased or taken over meanwhile: drop the result
            return None
        return done

    def _plan(self, turns: list[MemoryRecord], plan: _Plan) -> None:
        context = self._context(turns)
        summary = self._summary(turns[0])
        result = extract.candidates(self.llm, turns, context,
                                    summary.text if summary else None)
        plan.usage += result.usage
        plan.errors += result.problems
        if result.summary:
            self._stage_summary(summary, result.summary, turns, plan)
        for candidate in result.candidates:
            vector = self.embedder.embed_one(candidate.text, "document")
            similar = self._similar(turns[0], candidate.text, vector, plan)
            try:
                decision, usage = reconcile.decide(self.llm, candidate, similar)
            except ModelOutputError as exc:
                plan.errors.append(_describe(exc))
                continue
            plan.usage += usage
            self._apply(decision, turns[0], plan)

    def _summary(self, anchor: MemoryRecord) -> MemoryRecord | None:
        """The rolling summary of the anchor's conversation (exactly its scope)."""
        found = self.store.find(RecordQuery(anchor.scope, kinds=(kinds.SUMMARY,)))
        exact = [s for s in found if s.scope == anchor.scope]
        return exact[-1] if exact else None

    def _stage_summary(self, current: MemoryRecord | None, text: str,
                       turns: list[MemoryRecord], plan: _Plan) -> None:
        """A summary cites every turn of its conversation."""
        now = utcnow()
        new_sources = tuple(t.source_ids[0] for t in turns)
        vector = self.embedder.embed_one(text, "document")
        if current is None:
            first = turns[0]
            record = replace(first, id=new_id(), kind=kinds.SUMMARY, text=text, role=None,
                             speaker=None, hash=content_hash(text), source_ids=new_sources,
                             created_at=now, updated_at=now, metadata={}, version=1)
            record = replace(record, event_time=turns[-1].event_time)
            plan.inserts[record.id] = (record, vector)
            plan.events.append(history.event(record, "add", None, text, ACTOR, "summary"))
            return
        record = replace(current, text=text, hash=content_hash(text),
                         source_ids=tuple(dict.fromkeys((*current.source_ids, *new_sources))),
                         event_time=turns[-1].event_time, version=current.version + 1,
                         updated_at=now)
        self._stage_update(plan, current, record, vector)
        plan.events.append(history.event(record, "update", current.text, text, ACTOR,
                                          "summary"))

    def _context(self, turns: list[MemoryRecord]) -> list[Message]:
        new = {t.source_ids[0] for t in turns}
        recent = self.store.recent_messages(turns[0].scope,
                                            extract.CONTEXT_MESSAGES + len(turns))
        return [m for m in reversed(recent) if m.id not in new][-extract.CONTEXT_MESSAGES:]

    def _similar(self, anchor: MemoryRecord, text: str, vector: Vector,
                 plan: _Plan) -> list[MemoryRecord]:
        """The most similar current facts: stored ones as this job has changed them, and
        the ones this job added."""
        query = RecordQuery(graph.owner_scope(anchor), kinds=(kinds.FACT,))
        hits = pipeline.run(self.store, self.embedder, pipeline.on_turns(
            kinds=(kinds.FACT,)), query, text, SIMILAR_FACTS, pool=self.pool)
        stored = [plan.updates[h.id][0] if h.id in plan.updates else h.memory for h in hits]
        pool = [r for r in stored if r.status == "active"]
        pool += [r for r, _ in plan.inserts.values() if r.status == "active"]
        if not pool:
            return []
        vectors = self.embedder.embed([r.text for r in pool], "document")
        ranked = sorted(zip(pool, (float(v @ vector) for v in vectors), strict=True),
                        key=lambda pair: -pair[1])
        return [r for r, _ in ranked[:SIMILAR_FACTS]]

    def _apply(self, decision: reconcile.Decision, anchor: MemoryRecord, plan: _Plan) -> None:
        now = utcnow()
        action, target = decision.action, decision.target
        if action == "NOOP" or (action == "UPDATE" and target is not None
                                and target.text == decision.text):
            plan.actions.append({"action": "NOOP", "memory_id": target.id if target else "",
                                 "text": decision.candidate.text, "reason": decision.reason})
            return
        if action == "UPDATE" and target is not None:
            new = self._linked(reconcile.updated(target, decision, now), decision.candidate,
                               plan)
            self._stage_update(plan, target, new, self.embedder.embed_one(new.text))
            plan.events.append(history.event(new, "update", target.text, new.text, ACTOR,
                                             decision.reason or None))
        else:
            new = reconcile.new_fact(decision.candidate, decision.text, anchor, now)
            new = self._linked(new, decision.candidate, plan)
            plan.inserts[new.id] = (new, self.embedder.embed_one(new.index_text, "document"))
            plan.events.append(history.event(new, "add", None, new.text, ACTOR,
                                             decision.reason or None))
            if action == "SUPERSEDE" and target is not None:
                old = reconcile.superseded(target, new, now)
                self._stage_update(plan, target, old, None)
                plan.events.append(history.event(old, "supersede", target.text, new.text,
                                                 ACTOR, decision.reason or None))
                self._close_relations(target, new, plan)
        plan.actions.append({"action": action, "memory_id": new.id, "text": new.text,
                             "replaces": target.id if target else "", "reason": decision.reason})

    def _linked(self, fact: MemoryRecord, candidate: extract.Candidate,
                plan: _Plan) -> MemoryRecord:
        """The fact with its entities resolved (or created) and its relations staged."""
        names = [*candidate.entities, *(n for s, _, o in candidate.relations for n in (s, o))]
        found = {n: self._entity(n, fact, plan) for n in dict.fromkeys(names)}
        known = {n: e for n, e in found.items() if e is not None}
        now = utcnow()
        for subject, predicate, obj in candidate.relations:
            if subject in known and obj in known:
                rel = graph.relation(known[subject], predicate, known[obj], fact, now)
                plan.inserts[rel.id] = (rel, self.embedder.embed_one(rel.text, "document"))
                plan.events.append(history.event(rel, "add", None, rel.text, ACTOR,
                                                 "relation"))
        ids = list(dict.fromkeys([*fact.metadata.get("entities", []),
                                  *(e.id for e in known.values())]))
        return replace(fact, metadata={**fact.metadata, "entities": ids}) if ids else fact

    def _entity(self, name: str, fact: MemoryRecord, plan: _Plan) -> MemoryRecord | None:
        """The scope's entity for ``name``: same normalized name, or a name whose vector is
        nearly the same; a new entity otherwise."""
        norm = graph.normalize(name)
        if not norm:
            return None
        if norm in plan.entities:
            return plan.entities[norm]
        owner = graph.owner_scope(fact)
        same = self.store.find(RecordQuery(owner, kinds=(kinds.ENTITY,),
                                           filters=parse({"metadata.norm": norm})), limit=1)
        vector = self.embedder.embed_one(name, "document")
        if not same:
            near = self.store.vector_search(RecordQuery(owner, kinds=(kinds.ENTITY,)),
                                            vector, 1)
            same = [h.record for h in near if h.score >= graph.MERGE_SIMILARITY]
        if same:
            plan.entities[norm] = same[0]
            return same[0]
        new = graph.entity(name, fact, utcnow())
        plan.inserts[new.id] = (new, vector)
        plan.entities[norm] = new
        plan.events.append(history.event(new, "add", None, new.text, ACTOR, "entity"))
        return new

    def _close_relations(self, old: MemoryRecord, new: MemoryRecord, plan: _Plan) -> None:
        """Relations read from a superseded fact stop being valid when it does."""
        stored = self.store.find(RecordQuery(graph.owner_scope(old), kinds=(kinds.RELATION,),
                                             filters=parse({"metadata.fact": old.id})))
        staged = [r for r, _ in plan.inserts.values()
                  if r.kind == kinds.RELATION and r.metadata.get("fact") == old.id]
        for rel in [*stored, *staged]:
            closed = reconcile.superseded(rel, new, utcnow())
            self._stage_update(plan, rel, closed, None)
            plan.events.append(history.event(closed, "supersede", rel.text, None, ACTOR,
                                             "its fact was superseded"))

    @staticmethod
    def _stage_update(plan: _Plan, before: MemoryRecord, after: MemoryRecord,
                      vector: Vector | None) -> None:
        if before.id in plan.inserts:  # a fact this job added: change the insert itself
            old_vector = plan.inserts[before.id][1]
            plan.inserts[before.id] = (replace(after, version=1),
                                       vector if vector is not None else old_vector)
            return
        expected = plan.updates[before.id][1] if before.id in plan.updates else before.version
        plan.updates[before.id] = (replace(after, version=expected + 1), expected,
                                   vector if vector is not None else (
                                       plan.updates[before.id][2] if before.id in plan.updates
                                       else None))


def _describe(exc: ModelError) -> str:
    raw = getattr(exc, "raw", None)
    return f"{exc} (answer: {raw[:300]!r})" if raw else str(exc)

