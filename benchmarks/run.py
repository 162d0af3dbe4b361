"""Core benchmarks: ingest throughput and search latency on synthetic memories.

    python -m benchmarks.run [--sizes 10000,100000] [--ingest 2000] [--queries 200]

Writes JSON to benchmarks/results/ and a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from memlane import FakeEmbedder, Memory, MiniLMEmbedder
from memlane.embed.base import Embedder
from memlane.eval.machine import describe as machine
from memlane.store import SQLiteStore, Store, WriteBatch
from memlane.timeutil import utcnow
from memlane.types import Scope
from memlane.write import ingest, windows

from .report import update_section
from .synthetic import Generator

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DISTINCT_VECTORS = 10_000


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_ingest(embedder: Embedder, turns: int, batch: int) -> dict[str, Any]:
    """Turns per second through ``Memory.add`` into a fresh SQLite file."""
    texts = [t.text for t in Generator(seed=11).turns(turns)]
    embedder.clear_cache()
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(Path(tmp) / "ingest.db", embedder=embedder)
        embedder.embed(["warm up"])
        start = time.perf_counter()
        for i in range(0, turns, batch):
            mem.add([{"content": t} for t in texts[i:i + batch]], user_id="bench",
                    session_id=f"s{i // batch}")
        elapsed = time.perf_counter() - start
        mem.close()
    return {"turns": turns, "batch": batch, "seconds": round(elapsed, 2),
            "turns_per_s": round(turns / elapsed, 1)}


def corpus_vectors(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Real embeddings for the first DISTINCT_VECTORS texts, cached on disk; beyond that,
    those vectors with small noise (latency depends on sizes, not on the values)."""
    cache = RESULTS / f"vectors-{embedder.model_id}-{DISTINCT_VECTORS}.npy"
    head = texts[:DISTINCT_VECTORS]
    if cache.exists():
        base: np.ndarray = np.load(cache)
    else:
        base = embedder.embed(head, "document")
        RESULTS.mkdir(parents=True, exist_ok=True)
        np.save(cache, base)
    base = base[: len(head)]
    if len(texts) <= len(base):
        return base
    rng = np.random.default_rng(3)
    extra = base[rng.integers(0, len(base), len(texts) - len(base))]
    extra = extra + rng.normal(0, 0.02, extra.shape).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.vstack([base, extra]).astype(np.float32)


def write_turns(store: Store, scope: Scope, texts: list[str],
                vectors: np.ndarray) -> None:
    """What ``Memory.add`` writes (messages, turns and their windows), with given vectors."""
    now = utcnow()
    messages, turns = ingest.build(scope, ingest.normalize([{"content": t} for t in texts]),
                                   timestamp=None, metadata={}, now=now)
    derived = windows.for_new_turns([], turns, list(vectors), now)
    store.write(WriteBatch(scope=scope, messages=messages,
                           inserts=[*zip(turns, vectors, strict=True), *derived]))


def load_scope(store: SQLiteStore, texts: list[str], vectors: np.ndarray, user: str) -> None:
    for start in range(0, len(texts), 5_000):
        write_turns(store, Scope("default", user), texts[start:start + 5_000],
                    vectors[start:start + 5_000])


def bench_search(embedder: Embedder, size: int, queries: int) -> dict[str, Any]:
    gen = Generator(seed=5)
    texts = [t.text for t in gen.turns(size)]
    vectors = corpus_vectors(embedder, texts)
    asks = gen.queries(queries)
    out: dict[str, Any] = {"memories_in_scope": size}
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "search.db")
        load_scope(store, texts, vectors, "big")
        mem = Memory(store=store, embedder=embedder)
        for recipe in ("hybrid", "dense", "bm25"):
            mem.search("warm up the caches", user_id="big", recipe=recipe)
            times = []
            for q in asks:
                embedder.clear_cache()
                start = time.perf_counter()
                mem.search(q, user_id="big", recipe=recipe, limit=10)
                times.append((time.perf_counter() - start) * 1000)
            out[recipe] = {"p50_ms": round(percentile(times, 50), 2),
                           "p95_ms": round(percentile(times, 95), 2),
                           "mean_ms": round(statistics.fmean(times), 2)}
        mem.close()
    return out


def markdown(results: dict[str, Any], command: str) -> str:
    lines = [f"Command: `{command}`  ", f"Date: {results['date']}  ",
             f"Machine: {results['machine']}", "",
             "Ingest through `Memory.add` (raw messages, turns, their windows, history events "
             "and vectors committed per batch; synthetic chat turns, mean "
             f"{results['mean_words']} words):", "",
             "| embedder | batch | turns | turns/s |", "|---|---:|---:|---:|"]
    for row in results["ingest"]:
        lines.append(f"| {row['embedder']} | {row['batch']} | {row['turns']} | "
                     f"{row['turns_per_s']} |")
    lines += ["", "Search latency, one scope holding that many turns (and as many windows, "
              "which the default `hybrid` recipe ranks; `bm25` and `dense` rank the turns), "
              "limit 10, query embedding included (the embedding cache is cleared before every "
              "query):", "",
              "| memories in scope | recipe | p50 ms | p95 ms |", "|---:|---|---:|---:|"]
    for row in results["search"]:
        for recipe in ("hybrid", "dense", "bm25"):
            lines.append(f"| {row['memories_in_scope']:,} | {recipe} | "
                         f"{row[recipe]['p50_ms']} | {row[recipe]['p95_ms']} |")
    lines += ["", f"Corpora beyond {DISTINCT_VECTORS:,} memories reuse the real embeddings "
              f"of the first {DISTINCT_VECTORS:,} with small noise: latency depends on sizes, "
              "not on vector values."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--ingest", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    minilm = MiniLMEmbedder()
    runs: list[tuple[str, Callable[[], Embedder], int]] = [
        ("minilm", lambda: minilm, 20), ("minilm", lambda: minilm, 200),
        ("fake (store only)", FakeEmbedder, 200),
    ]
    ingest_rows = [{"embedder": name, **bench_ingest(make(), args.ingest, batch)}
                   for name, make, batch in runs]
    search_rows = [bench_search(minilm, int(s), args.queries) for s in args.sizes.split(",")]
    sample = [t.text for t in Generator(seed=11).turns(1000)]
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
               "mean_words": round(statistics.fmean(len(t.split()) for t in sample), 1),
               "ingest": ingest_rows, "search": search_rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps(results, indent=2))
    command = "make bench" if argv is None else "python -m benchmarks.run " + " ".join(argv)
    update_section(ROOT / "docs" / "benchmarks.md", "Core engine: ingest and search",
                   markdown(results, command))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
