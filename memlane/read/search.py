"""The search pipeline, described as data: retrievers, then fusion.

``SearchConfig`` names the retrievers and how their rankings are fused; ``RECIPES`` holds
the named configurations (``hybrid`` is the default). Every retriever runs on the same
``RecordQuery``, so each is restricted to the caller's scope before it ranks anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..embed.base import Embedder
from ..errors import InvalidInputError
from ..store.base import RecordQuery, Store
from ..types import MemoryRecord, Scored, SearchHit, SignalDetail
from .fusion import reciprocal_rank_fusion

Retriever = Callable[[Store, Embedder, RecordQuery, str, int], list[Scored]]


def dense(store: Store, embedder: Embedder, query: RecordQuery, text: str,
          limit: int) -> list[Scored]:
    return store.vector_search(query, embedder.embed_one(text, "query"), limit)


def keyword(store: Store, embedder: Embedder, query: RecordQuery, text: str,
            limit: int) -> list[Scored]:
    return store.keyword_search(query, text, limit)


RETRIEVERS: dict[str, Retriever] = {"dense": dense, "keyword": keyword}


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """Which retrievers run, how deep each looks, and how their rankings are fused."""

    retrievers: tuple[str, ...] = ("dense", "keyword")
    depth: int = 50
    rrf_k: int = 60
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [r for r in self.retrievers if r not in RETRIEVERS]
        if unknown or not self.retrievers:
            raise InvalidInputError(
                f"unknown retriever(s) {unknown}; choose from {sorted(RETRIEVERS)}"
            )
        if self.depth < 1:
            raise InvalidInputError("depth must be at least 1")


RECIPES: dict[str, SearchConfig] = {
    "hybrid": SearchConfig(),
    "bm25": SearchConfig(retrievers=("keyword",)),
    "dense": SearchConfig(retrievers=("dense",)),
}


def resolve(config: str | SearchConfig | None, default: SearchConfig) -> SearchConfig:
    if config is None:
        return default
    if isinstance(config, SearchConfig):
        return config
    if config not in RECIPES:
        raise InvalidInputError(f"unknown search recipe {config!r}; choose from {sorted(RECIPES)}")
    return RECIPES[config]


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memlane-retriever")


def _run_all(names: tuple[str, ...], store: Store, embedder: Embedder, query: RecordQuery,
             text: str, depth: int) -> list[list[Scored]]:
    """Run retrievers concurrently: the model and the database both release the GIL, so
    the query embedding overlaps the keyword search."""
    if len(names) == 1:
        return [RETRIEVERS[names[0]](store, embedder, query, text, depth)]
    futures = [_POOL.submit(RETRIEVERS[n], store, embedder, query, text, depth) for n in names]
    return [f.result() for f in futures]


def run(store: Store, embedder: Embedder, config: SearchConfig, query: RecordQuery,
        text: str, limit: int, *, explain: bool = False) -> list[SearchHit]:
    """Run each retriever to ``max(depth, limit)`` and fuse their rankings."""
    depth = max(config.depth, limit)
    by_id: dict[str, MemoryRecord] = {}
    rankings: dict[str, list[str]] = {}
    raw: dict[str, dict[str, float]] = {}
    for name, found in zip(config.retrievers, _run_all(config.retrievers, store, embedder,
                                                       query, text, depth), strict=True):
        rankings[name] = [s.record.id for s in found]
        raw[name] = {s.record.id: s.score for s in found}
        by_id.update((s.record.id, s.record) for s in found)
    fused = reciprocal_rank_fusion(rankings, k=config.rrf_k, weights=config.weights)
    hits = []
    for item in fused[:limit]:
        details = None
        if explain:
            details = {name: SignalDetail(rank, raw[name][item.id], contribution)
                       for name, (rank, contribution) in item.signals.items()}
        hits.append(SearchHit(by_id[item.id], item.score, details))
    return hits
