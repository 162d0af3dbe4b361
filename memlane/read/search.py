"""The search pipeline, described as data: retrievers, fusion, then a redundancy filter.

``SearchConfig`` names the retrievers, the units they rank (memory kinds), the keyword
analyzer, how rankings are fused and how overlapping results are thinned; ``RECIPES`` holds
named configurations. ``hybrid`` is the default: windows (a turn with the two before it)
and facts ranked by dense vectors and stemmed BM25 (and, where the LLM write path built an
entity graph, by graph expansion), fused by reciprocal rank with k = 10, then a result
whose sources are at least half covered by better results is dropped. ``bm25`` and
``dense`` are the single-signal baselines over single turns. Every retriever runs on the
same ``RecordQuery``, so each is restricted to the caller's scope before it ranks anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from ..embed.base import Embedder
from ..errors import InvalidInputError
from ..filters import And, parse
from ..store.base import RecordQuery, Store
from ..text import ANALYZERS, Analyzer
from ..types import MemoryRecord, Scored, SearchHit, SignalDetail
from .fusion import Fused, reciprocal_rank_fusion


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Which retrievers run on which units, and how their rankings become one."""

    retrievers: tuple[str, ...] = ("dense", "keyword", "graph")
    kinds: tuple[str, ...] | None = None
    """Kinds searched when the caller names none (None: every kind not excluded)."""
    exclude_kinds: tuple[str, ...] = ("turn", "entity", "relation")
    analyzer: Analyzer = "stem"
    depth: int = 100
    rrf_k: int = 10
    weights: Mapping[str, float] = field(default_factory=dict)
    redundancy: float | None = 0.5
    """Drop a result when at least this share of its sources is already covered by better
    results (None keeps everything)."""

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
    names = replace(query, kinds=("entity",), exclude_kinds=(), filters=None)
    named = [h.record.id for h in store.keyword_search(names, text, GRAPH_ENTITIES, "plain")]
    if not named:
        return []
    links = replace(query, kinds=("relation",), exclude_kinds=(), filters=parse(
        {"or": [{"metadata.subject": {"in": named}}, {"metadata.object": {"in": named}}]}))
    near = {i for r in store.find(links, limit=200)
            for i in (r.metadata.get("subject"), r.metadata.get("object"))
            if isinstance(i, str) and i not in named}
    wanted = [*named, *near]
    mention = parse({"or": [{"metadata.entities": {"contains": i}} for i in wanted]})
    assert mention is not None
    scoped = replace(query, kinds=("fact",), exclude_kinds=(),
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
    base = SearchConfig(kinds=("turn",), exclude_kinds=(), redundancy=None)
    return replace(base, **changes)  # type: ignore[arg-type]


RECIPES: dict[str, SearchConfig] = {
    "hybrid": SearchConfig(),
    "bm25": on_turns(retrievers=("keyword",), analyzer="plain"),
    "dense": on_turns(retrievers=("dense",)),
}
ABLATION: dict[str, SearchConfig] = {
    "turns, rrf k60": on_turns(analyzer="plain", rrf_k=60, depth=50),
    "+ stemming": on_turns(rrf_k=60, depth=50),
    "+ rrf k10, depth 100": on_turns(),
    "+ windows": SearchConfig(retrievers=("dense", "keyword"), redundancy=None),
    "+ redundancy filter": SearchConfig(retrievers=("dense", "keyword")),
    "+ graph (hybrid)": SearchConfig(),
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


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memlane-retriever")


def _run_all(config: SearchConfig, store: Store, embedder: Embedder, query: RecordQuery,
             text: str) -> list[list[Scored]]:
    """Run retrievers concurrently: the model and the database both release the GIL, so
    the query embedding overlaps the keyword search."""
    calls = [(RETRIEVERS[n], (store, embedder, config, query, text, config.depth))
             for n in config.retrievers]
    if len(calls) == 1:
        return [calls[0][0](*calls[0][1])]
    futures = [_POOL.submit(fn, *args) for fn, args in calls]
    return [f.result() for f in futures]


def thin(fused: Sequence[Fused], sources: Mapping[str, Sequence[str]],
         redundancy: float | None) -> list[Fused]:
    """Drop results whose sources are mostly covered by better results already kept."""
    if redundancy is None:
        return list(fused)
    covered: set[str] = set()
    kept = []
    for item in fused:
        own = set(sources[item.id])
        if own and len(own & covered) >= redundancy * len(own):
            continue
        kept.append(item)
        covered |= own
    return kept


def run(store: Store, embedder: Embedder, config: SearchConfig, query: RecordQuery,
        text: str, limit: int, *, explain: bool = False) -> list[SearchHit]:
    """Rank with each retriever (to ``max(depth, limit)``), fuse, thin, cut to ``limit``."""
    if query.kinds is None and not query.exclude_kinds:
        query = replace(query, kinds=config.kinds, exclude_kinds=config.exclude_kinds)
    config = replace(config, depth=max(config.depth, limit))
    by_id: dict[str, MemoryRecord] = {}
    rankings: dict[str, list[str]] = {}
    raw: dict[str, dict[str, float]] = {}
    for name, found in zip(config.retrievers, _run_all(config, store, embedder, query, text),
                           strict=True):
        if not found:
            continue  # a signal with nothing to say takes no part in the fusion
        rankings[name] = [s.record.id for s in found]
        raw[name] = {s.record.id: s.score for s in found}
        by_id.update((s.record.id, s.record) for s in found)
    fused = reciprocal_rank_fusion(rankings, k=config.rrf_k, weights=config.weights)
    sources = {i: r.source_ids for i, r in by_id.items()}
    hits = []
    for item in thin(fused, sources, config.redundancy)[:limit]:
        details = None
        if explain:
            details = {name: SignalDetail(rank, raw[name][item.id], contribution)
                       for name, (rank, contribution) in item.signals.items()}
        hits.append(SearchHit(by_id[item.id], item.score, details))
    return hits
