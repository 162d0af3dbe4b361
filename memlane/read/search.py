"""The search pipeline, described as data: retrievers, fusion, then a redundancy filter.

``SearchConfig`` names the retrievers, the units they rank (memory kinds), the keyword
analyzer, how rankings are fused and how overlapping results are thinned; ``RECIPES`` holds
named configurations. ``hybrid`` is the default: windows (a turn with the two before it)
and facts ranked by dense vectors and stemmed BM25 (and, where the LLM write path built an
entity graph, by graph expansion), fused by reciprocal rank with k = 10, then a result
whose sources are at least half covered by better results is dropped, unless its text holds
a query term that no better result kept holds. ``bm25`` and ``dense`` are the single-signal
baselines over single turns. Every retriever runs on the same ``RecordQuery``, so each is
restricted to the caller's scope before it ranks anything. A hit names the memories behind
what was ranked (a window's turns), which a caller can update, delete or cite.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from ..embed.base import Embedder
from ..errors import InvalidInputError
from ..filters import And, parse
from ..kinds import ENTITY, FACT, GRAPH_KINDS, PASSAGE, RELATION, TURN, WINDOW
from ..store.base import RecordQuery, Store
from ..text import ANALYZERS, Analyzer, analyze
from ..types import MemoryRecord, Scope, Scored, SearchHit, SignalDetail, Status
from .fusion import Fused, reciprocal_rank_fusion


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Which retrievers run on which units, and how their rankings become one."""

    retrievers: tuple[str, ...] = ("dense", "keyword", "graph")
    kinds: tuple[str, ...] | None = None
    """Kinds searched when the caller names none (None: every kind not excluded)."""
    exclude_kinds: tuple[str, ...] = (TURN, *GRAPH_KINDS)
    analyzer: Analyzer = "stem"
    depth: int = 100
    rrf_k: int = 10
    weights: Mapping[str, float] = field(default_factory=dict)
    redundancy: float | None = 0.5
    """Drop a result when at least this share of its sources is already covered by better
    results and it holds no query term they lack (None keeps everything)."""
    role_weights: Mapping[str, float] = field(default_factory=dict)
    """A factor on the fused score of a record said by each role (``MemoryRecord.role``),
    applied before results are thinned and cut; a role not named keeps its score."""

    def __post_init__(self) -> None:
        unknown = [r for r in self.retrievers if r not in RETRIEVERS]
        if unknown or not self.retrievers:
            raise InvalidInputError(
                f"unknown retriever(s) {unknown}; choose from {sorted(RETRIEVERS)}"
            )
        if self.depth < 1 or self.rrf_k < 0:
            raise InvalidInputError("depth must be at least 1 and rrf_k non-negative")
        if self.analyzer not in ANALYZERS:
            raise InvalidInputError(f"unknown analyzer {self.analyzer!r}; use {ANALYZERS}")
        if self.redundancy is not None and not 0 < self.redundancy <= 1:
            raise InvalidInputError("redundancy must be in (0, 1] or None")
        if any(not 0 <= w <= 1 for w in self.role_weights.values()):
            raise InvalidInputError("role weights must be in [0, 1]")


Retriever = Callable[[Store, Embedder, SearchConfig, RecordQuery, str, int], list[Scored]]


def dense(store: Store, embedder: Embedder, config: SearchConfig, query: RecordQuery,
          text: str, limit: int) -> list[Scored]:
    return store.vector_search(query, embedder.embed_one(text, "query"), limit)


def keyword(store: Store, embedder: Embedder, config: SearchConfig, query: RecordQuery,
            text: str, limit: int) -> list[Scored]:
    return store.keyword_search(query, text, limit, config.analyzer)


GRAPH_ENTITIES = 5


def graph(store: Store, embedder: Embedder, config: SearchConfig, query: RecordQuery,
          text: str, limit: int) -> list[Scored]:
    """Facts about the entities the query names, then facts about their neighbours.

    Entities are found by their names' terms in the query; neighbours through relations
    valid in the query's view. Facts are ranked by how many of those entities they
    mention (named ones count double), then by recency. Nothing when the scope has no
    entity graph (facts come from the LLM write path).
    """
    names = replace(query, kinds=(ENTITY,), exclude_kinds=(), filters=None)
    named = [h.record.id for h in store.keyword_search(names, text, GRAPH_ENTITIES, "plain")]
    if not named:
        return []
    links = replace(query, kinds=(RELATION,), exclude_kinds=(), filters=parse(
        {"or": [{"metadata.subject": {"in": named}}, {"metadata.object": {"in": named}}]}))
    near = {i for r in store.find(links, limit=200)
            for i in (r.metadata.get("subject"), r.metadata.get("object"))
            if isinstance(i, str) and i not in named}
    wanted = [*named, *near]
    mention = parse({"or": [{"metadata.entities": {"contains": i}} for i in wanted]})
    assert mention is not None
    scoped = replace(query, kinds=(FACT,), exclude_kinds=(),
                     filters=mention if query.filters is None else And((query.filters, mention)))
    facts = store.find(scoped, limit=limit * 4, newest_first=True)
    weight = {i: 2.0 for i in named} | {i: 1.0 for i in near}
    scored = [(sum(weight.get(i, 0.0) for i in f.metadata.get("entities", [])), f) for f in facts]
    scored.sort(key=lambda pair: -pair[0])  # stable: newest first among equals
    top = max((s for s, _ in scored), default=1.0) or 1.0
    return [Scored(f, s / top) for s, f in scored[:limit]]


RETRIEVERS: dict[str, Retriever] = {"dense": dense, "keyword": keyword, "graph": graph}

def on_turns(**changes: object) -> SearchConfig:
    """A configuration ranking single turns, with no redundancy filter."""
    base = SearchConfig(kinds=(TURN,), exclude_kinds=(), redundancy=None)
    return replace(base, **changes)  # type: ignore[arg-type]


ASSISTANT_WEIGHT = 0.3
"""The default recipe's factor on what the assistant said (chiefly the passages of its long
answers): an agent's memory is above all what its user said; the assistant's own words
still rank when nothing the user said matches better."""
HYBRID = SearchConfig(role_weights={"assistant": ASSISTANT_WEIGHT})

RECIPES: dict[str, SearchConfig] = {
    "hybrid": HYBRID,
    "bm25": on_turns(retrievers=("keyword",), analyzer="plain"),
    "dense": on_turns(retrievers=("dense",)),
}
ABLATION: dict[str, SearchConfig] = {
    "turns, rrf k60": on_turns(analyzer="plain", rrf_k=60, depth=50),
    "+ stemming": on_turns(rrf_k=60, depth=50),
    "+ rrf k10, depth 100": on_turns(),
    "+ windows": SearchConfig(retrievers=("dense", "keyword"), redundancy=None,
                              exclude_kinds=(TURN, PASSAGE, *GRAPH_KINDS)),
    "+ passages": SearchConfig(retrievers=("dense", "keyword"), redundancy=None),
    "+ redundancy filter": SearchConfig(retrievers=("dense", "keyword")),
    "+ graph": SearchConfig(),
    "+ assistant weighed (hybrid)": HYBRID,
}
"""Each step of the default pipeline added in turn, for the evaluation's ablation table."""


def resolve(config: str | SearchConfig | None, default: SearchConfig) -> SearchConfig:
    if config is None:
        return default
    if isinstance(config, SearchConfig):
        return config
    named = RECIPES.get(config) or ABLATION.get(config)
    if named is None:
        raise InvalidInputError(f"unknown search recipe {config!r}; choose from {sorted(RECIPES)}")
    return named


RETRIEVER_THREADS = 4
"""Threads a ``Pool`` runs retrievers on, shared by every search of a ``Memory``: at most
this many of its searches' reads hold a store connection at once (the searching thread
holds none while it waits for them)."""


class Pool:
    """Threads that run a search's retrievers side by side: the model and the database both
    release the GIL, so the query embedding overlaps the keyword search.

    The threads start with the first search that has more than one retriever and stop at
    ``close``; after that (or with no pool at all) retrievers run one after another.
    """

    def __init__(self, workers: int = RETRIEVER_THREADS) -> None:
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()

    def run(self, calls: Sequence[Callable[[], list[Scored]]]) -> list[list[Scored]]:
        if len(calls) < 2:
            return [call() for call in calls]
        with self._lock:
            if self._closed:
                futures = None
            else:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self._workers, thread_name_prefix="memlane-retriever")
                futures = [self._executor.submit(call) for call in calls]
        if futures is None:
            return [call() for call in calls]
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._lock:
            self._closed, executor, self._executor = True, self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def _run_all(config: SearchConfig, store: Store, embedder: Embedder, query: RecordQuery,
             text: str, pool: Pool | None) -> list[list[Scored]]:
    calls = [functools.partial(RETRIEVERS[n], store, embedder, config, query, text,
                               config.depth) for n in config.retrievers]
    return pool.run(calls) if pool is not None else [call() for call in calls]


def thin(fused: Sequence[Fused], sources: Mapping[str, Sequence[Hashable]],
         redundancy: float | None, matches: Callable[[str], Collection[str]] | None = None,
         *, limit: int | None = None) -> list[Fused]:
    """Drop results whose sources are mostly covered by better results already kept,
    unless a result matches something no kept result matches (``matches(id)``: the query
    terms its text holds); stop once ``limit`` results are kept."""
    if redundancy is None:
        return list(fused[:limit])
    covered: set[Hashable] = set()
    matched: set[str] = set()
    kept: list[Fused] = []
    for item in fused:
        if limit is not None and len(kept) >= limit:
            break
        own = set(sources[item.id])
        terms = set(matches(item.id)) if matches is not None else set()
        if own and len(own & covered) >= redundancy * len(own) and terms <= matched:
            continue
        kept.append(item)
        covered |= own
        matched |= terms
    return kept


def query_matches(config: SearchConfig, text: str,
                  records: Mapping[str, MemoryRecord]) -> Callable[[str], Collection[str]]:
    """The query's terms (by the recipe's analyzer) that a record's indexed text holds."""
    wanted = frozenset(analyze(text, config.analyzer))

    def matches(memory_id: str) -> frozenset[str]:
        if not wanted:
            return wanted
        return wanted.intersection(analyze(records[memory_id].index_text, config.analyzer))

    return matches


def by_role(fused: Sequence[Fused], records: Mapping[str, MemoryRecord],
            weights: Mapping[str, float]) -> list[Fused]:
    """The fused ranking with each record's score times its role's weight, re-sorted (ties
    keep their order)."""
    if not weights:
        return list(fused)
    weighed = [replace(f, score=f.score * weights.get(records[f.id].role or "", 1.0))
               for f in fused]
    return sorted(weighed, key=lambda f: -f.score)


SHOWN_STATUSES: tuple[Status, ...] = ("active", "superseded", "archived")
Conversation = tuple[str | None, str | None, str | None]
"""The user, agent and session of a conversation, exactly (a window never spans two)."""


def conversation(record: MemoryRecord) -> Conversation:
    return (record.user_id, record.agent_id, record.session_id)


def shown(store: Store, query: RecordQuery,
          records: Sequence[MemoryRecord]) -> dict[str, tuple[MemoryRecord, ...]]:
    """The memories behind each record that a caller can act on: a window's turns, oldest
    first; a passage's turn (its whole message); any other record is itself. One read per
    conversation the windows and passages come from."""
    out: dict[str, tuple[MemoryRecord, ...]] = {}
    windows: dict[Conversation, list[MemoryRecord]] = {}
    for record in records:
        if record.kind in (WINDOW, PASSAGE):
            windows.setdefault(conversation(record), []).append(record)
        else:
            out[record.id] = (record,)
    for talk, group in windows.items():
        sources = sorted({s for w in group for s in w.source_ids})
        found = store.turns_citing(Scope(query.scope.tenant, *talk), sources)
        turns = {t.source_ids[0]: t for t in found if t.status in SHOWN_STATUSES}
        out.update((w.id, tuple(turns[s] for s in w.source_ids if s in turns)) for w in group)
    return out


def run(store: Store, embedder: Embedder, config: SearchConfig, query: RecordQuery,
        text: str, limit: int, *, explain: bool = False,
        pool: Pool | None = None) -> list[SearchHit]:
    """Rank, then name the memories behind each hit (``shown``)."""
    hits = rank(store, embedder, config, query, text, limit, explain=explain, pool=pool)
    behind = shown(store, query, [h.memory for h in hits])
    return [replace(h, memory_ids=tuple(r.id for r in behind[h.memory.id])) for h in hits]


def rank(store: Store, embedder: Embedder, config: SearchConfig, query: RecordQuery,
         text: str, limit: int, *, explain: bool = False,
         pool: Pool | None = None) -> list[SearchHit]:
    """Rank with each retriever (to ``max(depth, limit)``), fuse, thin, cut to ``limit``;
    the hits do not yet name the memories behind them. The retrievers run side by side on
    ``pool``, one after another without one."""
    if query.kinds is None and not query.exclude_kinds:
        query = replace(query, kinds=config.kinds, exclude_kinds=config.exclude_kinds)
    config = replace(config, depth=max(config.depth, limit))
    by_id: dict[str, MemoryRecord] = {}
    rankings: dict[str, list[str]] = {}
    raw: dict[str, dict[str, float]] = {}
    found_by = _run_all(config, store, embedder, query, text, pool)
    for name, found in zip(config.retrievers, found_by, strict=True):
        if not found:
            continue  # a signal with nothing to say takes no part in the fusion
        rankings[name] = [s.record.id for s in found]
        raw[name] = {s.record.id: s.score for s in found}
        by_id.update((s.record.id, s.record) for s in found)
    fused = by_role(reciprocal_rank_fusion(rankings, k=config.rrf_k, weights=config.weights),
                    by_id, config.role_weights)
    sources = {i: [(r.user_id, r.agent_id, r.session_id, s) for s in r.source_ids]
               for i, r in by_id.items()}  # message ids are unique within a conversation
    hits = []
    for item in thin(fused, sources, config.redundancy, query_matches(config, text, by_id),
                     limit=limit):
        details = None
        if explain:
            details = {name: SignalDetail(rank, raw[name][item.id], contribution)
                       for name, (rank, contribution) in item.signals.items()}
        hits.append(SearchHit(by_id[item.id], item.score, details))
    return hits
