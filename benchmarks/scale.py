"""Scale: search latency against corpus size, peak memory and file size.

    python -m benchmarks.scale [--sizes 1000,10000,100000] [--spread 1000000:1000]

Each configuration runs in its own process (so peak RSS is its own) on a fresh SQLite file:
one scope holding N memories; and a store of M memories over S scopes with skewed sizes,
searched in randomly chosen scopes (the first search of a scope builds its in-process
indexes: reported apart as "cold").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from memlane import Memory, MiniLMEmbedder
from memlane.eval.machine import describe as machine
from memlane.store import RecordQuery, SQLiteStore, Store
from memlane.types import Scope

from .report import update_section
from .run import DISTINCT_VECTORS, RESULTS, ROOT, corpus_vectors, write_turns
from .synthetic import Generator

CHUNK = 5_000


def _vectors(base: np.ndarray, start: int, count: int) -> np.ndarray:
    """Real vectors for the first DISTINCT_VECTORS positions, noisy copies beyond."""
    idx = np.arange(start, start + count)
    out = base[idx % len(base)].copy()
    beyond = idx >= len(base)
    if beyond.any():
        rng = np.random.default_rng(start)
        out[beyond] += rng.normal(0, 0.02, (int(beyond.sum()), base.shape[1])).astype(np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _load(store: Store, gen: Generator, total: int, scopes: int,
          base: np.ndarray) -> tuple[float, list[tuple[str, int]]]:
    """Write ``total`` memories over ``scopes`` scopes; return the rate and scope sizes."""
    sizes = gen.scope_sizes(total, scopes)
    start, position = time.perf_counter(), 0
    for index, size in enumerate(sizes):
        scope = Scope("default", f"user-{index:05d}")
        for offset in range(0, size, CHUNK):
            n = min(CHUNK, size - offset)
            write_turns(store, scope, [gen.sentence() for _ in range(n)],
                        _vectors(base, position, n))
            position += n
    return total / (time.perf_counter() - start), [
        (f"user-{i:05d}", s) for i, s in enumerate(sizes)]


def _timed(mem: Memory, query: str, user: str) -> float:
    mem.embedder.clear_cache()
    start = time.perf_counter()
    mem.search(query, user_id=user, limit=10)
    return (time.perf_counter() - start) * 1000


def _ann_recall(store: Store, embedder: MiniLMEmbedder, asks: list[str],
                user: str) -> float | None:
    """Mean share of the exact top 10 (windows of the largest scope) that HNSW finds."""
    exact_search = getattr(store, "vector_search_in_process", None)
    if exact_search is None:
        return None
    query = RecordQuery(Scope("default", user), exclude_kinds=("turn",))
    shares = []
    for text in asks:
        vector = embedder.embed_one(text, "query")
        exact = {h.record.id for h in exact_search(query, vector, 10)}
        found = {h.record.id for h in store.ann_search(query, vector, 10)}  # type: ignore[attr-defined]
        shares.append(len(exact & found) / max(1, len(exact)))
    return round(float(np.mean(shares)), 4)


def _in_database_keyword(store: Store, asks: list[str], user: str) -> dict[str, float]:
    """Latency of BM25 computed in the database (tsvector, GIN) on the largest scope, for
    the first 40 queries."""
    query = RecordQuery(Scope("default", user), exclude_kinds=("turn",))
    search = store.gin_keyword_search  # type: ignore[attr-defined]
    times = []
    for text in asks[:40]:
        start = time.perf_counter()
        search(query, text, 100, "stem")
        times.append((time.perf_counter() - start) * 1000)
    return _stats(times)


def _build_indexes(store: Store, dim: int, sizes: list[tuple[str, int]]) -> float | None:
    """Build the approximate indexes of the scopes that will use one (the store's
    threshold applies to the windows a hybrid search admits: one per turn), if the store
    has them; seconds taken."""
    build = getattr(store, "ensure_ann_index", None)
    threshold = getattr(store, "index_threshold", None)
    if build is None or threshold is None:
        return None
    start = time.perf_counter()
    for user, size in sizes:
        if size > threshold:
            build(Scope("default", user), dim)
    return round(time.perf_counter() - start, 1)


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values, 50)), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2)}


@contextmanager
def _store(kind: str) -> Iterator[tuple[Store, Callable[[], int]]]:
    """A fresh store of that kind, and a function giving its size on disk in bytes."""
    if kind == "postgres":
        from memlane.dev.postgres import fresh_database, server
        from memlane.store.postgres import PostgresStore

        with server() as admin:
            pg = PostgresStore(fresh_database(admin))
            yield pg, lambda: int(pg._rows("SELECT pg_database_size(current_database())")[0][0])
            pg.close()
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.db"
        yield SQLiteStore(path), lambda: sum(p.stat().st_size
                                             for p in path.parent.glob("scale.db*"))


def configuration(total: int, scopes: int, queries: int, kind: str, out: Any) -> None:
    """One measured configuration (runs in a child process)."""
    embedder = MiniLMEmbedder()
    base = corpus_vectors(embedder, [t.text for t in Generator(seed=5).turns(DISTINCT_VECTORS)])
    gen = Generator(seed=17)
    asks = gen.queries(queries)
    with _store(kind) as (store, size):
        rate, sizes = _load(store, gen, total, scopes, base)
        index_s = _build_indexes(store, base.shape[1], sizes)
        mem = Memory(store=store, embedder=embedder)
        rng = random.Random(1)
        chosen = [rng.choice(sizes)[0] for _ in asks]
        cold = [_timed(mem, q, user) for q, user in zip(asks, chosen, strict=True)]
        warm = [_timed(mem, q, user) for q, user in zip(asks, chosen, strict=True)]
        large = index_s is not None and sizes[0][1] > getattr(store, "index_threshold", 0)
        recall = _ann_recall(store, embedder, asks[:50], sizes[0][0]) if large else None
        keyword = _in_database_keyword(store, asks, sizes[0][0]) if large else None
        result = {
            "memories": total, "scopes": scopes,
            "largest_scope": sizes[0][1], "median_scope": sorted(s for _, s in sizes)[scopes // 2],
            "load_rows_per_s": round(rate), "cold": _stats(cold), "warm": _stats(warm),
            "file_mb": round(size() / 2**20),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "ann_recall_at_10": recall,
            "index_build_s": index_s,
            "db_keyword": keyword,
        }
        mem.close()
    out.put(result)


def measure(total: int, scopes: int, queries: int, kind: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=configuration, args=(total, scopes, queries, kind, queue))
    proc.start()
    result: dict[str, Any] = queue.get()
    proc.join()
    return result


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = [r for r in rows if r["scopes"] == 1]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--")):
        ax.plot([r["memories"] for r in single], [r["warm"][key] for r in single], style,
                label=f"one scope, {key[:3]}")
    for r in rows:
        if r["scopes"] > 1:
            ax.plot([r["memories"]], [r["warm"]["p95_ms"]], "k^",
                    label=f"{r['memories']:,} over {r['scopes']:,} scopes, p95")
    ax.set_xscale("log")
    ax.set_xlabel("memories in the store")
    ax.set_ylabel("hybrid search latency (ms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict[str, Any]], command: str, image: str, kind: str) -> str:
    lines = [f"Command: `{command}`  ", f"Date: {time.strftime('%Y-%m-%d')}  ",
             f"Machine: {machine()}", "",
             "Hybrid search (dense + BM25, limit 10, query embedding included, embedding "
             f"cache cleared before each query) on {kind}. A query goes to a random scope; "
             "cold is the first search of that scope in the process (it builds the scope's "
             "in-process indexes), warm a repeat.", "",
             "| memories | scopes | largest scope | median scope | cold p50 | cold p95 | "
             "warm p50 | warm p95 | load rows/s | file MB | peak RSS MB |"
             + (" HNSW build s | HNSW recall@10 | GIN BM25 p50 | GIN BM25 p95 |"
                if kind == "postgres" else ""),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             + ("---:|---:|---:|---:|" if kind == "postgres" else "")]
    for r in rows:
        lines.append(f"| {r['memories']:,} | {r['scopes']:,} | {r['largest_scope']:,} | "
                     f"{r['median_scope']:,} | {r['cold']['p50_ms']} | {r['cold']['p95_ms']} | "
                     f"{r['warm']['p50_ms']} | {r['warm']['p95_ms']} | {r['load_rows_per_s']:,} "
                     f"| {r['file_mb']:,} | {r['peak_rss_mb']:,} |"
                     + (f" {_cell(r['index_build_s'])} | {_cell(r['ann_recall_at_10'])} | "
                        f"{_cell(r['db_keyword'], 'p50_ms')} | "
                        f"{_cell(r['db_keyword'], 'p95_ms')} |" if kind == "postgres" else ""))
    if kind == "postgres":
        lines += ["", "File MB is the database size (pg_database_size); peak RSS is the "
                  "client process only (the server runs apart). A scope whose query admits "
                  "more than 50,000 rows searches vectors on the scope's own HNSW index (built "
                  "after the load: HNSW build s; ef_search 200, iterative scan); smaller "
                  "scopes search vectors in process. Keywords are searched in process up to "
                  "1,000,000 admitted rows. HNSW recall@10 compares its top 10 with exact "
                  "search on the largest scope for 50 queries. GIN BM25 times the in-database "
                  "keyword search used beyond that (exact BM25 over tsvector columns with a "
                  "GIN index, same scores as in process; top 100, stemmed) on the largest "
                  "scope for 40 queries. A dash: no scope above 50,000."]
    lines += ["", "Memories counts turns; each also has its window, so the store holds twice "
              "as many rows. Load rate: turns per second written with their windows from "
              "pre-computed vectors in batches of 5,000 (no embedding). Vectors beyond the first "
              f"{DISTINCT_VECTORS:,} are noisy copies of real ones.", "", f"![latency]({image})"]
    return "\n".join(lines)


def side_by_side(sqlite: list[dict[str, Any]], postgres: list[dict[str, Any]]) -> str:
    """Both stores' results for the configurations each has, one row per configuration."""
    pg = {(r["memories"], r["scopes"]): r for r in postgres}
    lines = ["Rows of the two scale sections above, for the configurations both ran (warm "
             "hybrid search in ms; load in turns per second with their windows).", "",
             "| memories | scopes | load SQLite | load PostgreSQL | p50 SQLite | "
             "p50 PostgreSQL | p95 SQLite | p95 PostgreSQL | HNSW recall@10 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sqlite:
        p = pg.get((r["memories"], r["scopes"]))
        if p is None:
            continue
        lines.append(f"| {r['memories']:,} | {r['scopes']:,} | {r['load_rows_per_s']:,} | "
                     f"{p['load_rows_per_s']:,} | {r['warm']['p50_ms']} | "
                     f"{p['warm']['p50_ms']} | {r['warm']['p95_ms']} | {p['warm']['p95_ms']} | "
                     f"{_cell(p['ann_recall_at_10'])} |")
    return "\n".join(lines)


def _write_side_by_side() -> None:
    files = [RESULTS / "scale.json", RESULTS / "scale-postgres.json"]
    if all(f.exists() for f in files):
        sqlite, postgres = (json.loads(f.read_text()) for f in files)
        update_section(ROOT / "docs" / "benchmarks.md", "Scale: SQLite and PostgreSQL",
                       side_by_side(sqlite, postgres))


def _cell(value: Any, key: str | None = None) -> str:
    if value is None:
        return "-"
    return str(value[key] if key else value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--spread", default="1000000:1000", help="TOTAL:SCOPES, or ''")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    configs = [(int(s), 1) for s in args.sizes.split(",") if s]
    if args.spread:
        total, scopes = args.spread.split(":")
        configs.append((int(total), int(scopes)))
    rows = []
    for total, scopes in configs:
        print(f"measuring {total:,} memories over {scopes:,} scope(s)", flush=True)
        rows.append(measure(total, scopes, args.queries, args.store))
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.store == "sqlite" else f"-{args.store}"
    (RESULTS / f"scale{suffix}.json").write_text(json.dumps(rows, indent=2))
    image = ROOT / "docs" / f"benchmarks-scale{suffix}.png"
    plot(rows, image)
    shown = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.scale", *(a or "''" for a in shown)])
    title = "Scale: latency against corpus size" + (
        "" if args.store == "sqlite" else f" ({args.store})")
    update_section(ROOT / "docs" / "benchmarks.md", title,
                   markdown(rows, command, image.name, args.store))
    _write_side_by_side()


if __name__ == "__main__":
    main()
