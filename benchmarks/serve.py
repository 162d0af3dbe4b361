"""The REST server under load: concurrent clients searching and adding over HTTP.

    python -m benchmarks.serve [--seconds 60] [--clients 32] [--memories 10000] [--scopes 3]
                               [--stores sqlite,postgres] [--server-threads 32]
                               [--rates 20,40]

For each store (a SQLite file; PostgreSQL from memlane.dev.postgres), on loopback only:
``memlane serve`` runs as a subprocess on a free port (keys on, rate limit off, the real
MiniLM embedder) over a store preloaded with ``--memories`` memories in each of
``--scopes`` scopes (written through the store with their real embeddings, as the other
benchmarks load their synthetic corpus; PostgreSQL then gathers its table statistics).
Then ``--clients`` threads, each with its own
HTTP connection, send 80% searches and 20% adds for ``--seconds``:

- steady: throughput, p50/p95/p99 latency per operation, errors, and afterwards every
  acknowledged add fetched by id;
- kill: the same, with the server process killed with SIGKILL halfway and started again on
  the same port. Clients retry on connection errors until it is back (for at most
  ``--outage`` seconds); an add whose answer was lost is sent again with the same
  idempotency key. Reports the downtime clients saw, and again every acknowledged add
  fetched by id, and adds stored twice;
- paced, at each of ``--rates``: the clients together send that many requests per second
  on a fixed schedule (an open loop: a client behind its schedule sends at once), each
  latency counted from the request's scheduled time, so that time spent queueing behind a
  slow server counts. In the first two runs each client sends its next request as soon as
  the last is answered, so they measure the most the server can do, and their latency is
  the clients' number divided by that throughput; the paced runs show the latency at a
  given load.

Every query is a distinct text (the server's embedding cache never answers one). Bounded
in time (``--seconds`` per run, ``--outage``) and in count (clients, scopes, memories).
Writes JSON to benchmarks/results/ and a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np

from memlane import FakeEmbedder, MiniLMEmbedder
from memlane.auth import new_key
from memlane.embed.base import Embedder
from memlane.eval.machine import describe as machine
from memlane.store import open_store
from memlane.types import Scope

from .report import report
from .run import DISTINCT_VECTORS, corpus_vectors, write_turns
from .synthetic import Generator

TENANT = "default"
SEARCH_SHARE = 0.8
SEARCH_P95_MS = 30.0
SEARCHES_PER_S = 300.0


# --- the store and the server ------------------------------------------------------------


def _embedder(name: str) -> Embedder:
    return MiniLMEmbedder() if name == "minilm" else FakeEmbedder()


def preload(location: str, memories: int, scopes: int, embedder: str) -> str:
    """Write ``memories`` turns (and their windows) into each scope; a key's secret."""
    # the cached corpus vectors are those of the first DISTINCT_VECTORS texts, always
    texts = [t.text for t in Generator(seed=5).turns(max(memories, DISTINCT_VECTORS))]
    vectors = corpus_vectors(_embedder(embedder), texts) if embedder == "minilm" else (
        FakeEmbedder().embed(texts[:memories]))
    texts, vectors = texts[:memories], vectors[:memories]
    store = open_store(location)
    try:
        for index in range(scopes):
            scope = Scope(TENANT, user_id(index))
            for start in range(0, memories, 5_000):
                write_turns(store, scope, texts[start:start + 5_000],
                            vectors[start:start + 5_000])
        token, key = new_key(TENANT, label="load benchmark")
        store.put_key(key)
    finally:
        store.close()
    if location.startswith("postgresql"):
        analyze(location)
    return token


def analyze(url: str) -> None:
    """Table statistics for the preloaded rows, as autovacuum would soon gather them (right
    after a bulk load the planner has none, and picks scans that a served database
    would not)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def user_id(index: int) -> str:
    return f"user-{index:02d}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``memlane serve`` on 127.0.0.1:``port``; started again on the same port at will."""

    def __init__(self, location: str, embedder: str, threads: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "memlane.cli.main", "--db", location,
                        "--embedder", embedder, "serve", "--host", "127.0.0.1",
                        "--port", str(self.port), "--rate", "0", "--threads", str(threads)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLANE_")}
        self.log: IO[str] = log.open("a")
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 180) -> float:
        """Start it; the seconds until it answers ``/readyz``."""
        started = time.monotonic()
        self.proc = subprocess.Popen(self.command, stdout=self.log, stderr=self.log,
                                     env=self.env, text=True)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server ended at start ({self.proc.returncode})")
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError("the server did not get ready in time")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def restart(self) -> dict[str, float]:
        """Kill it with SIGKILL and start it again; the seconds until it was ready."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return {"restart_s": round(self.start(), 2)}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- the clients -------------------------------------------------------------------------


class Queries:
    """Distinct query texts for all clients (short phrases, as an agent asks)."""

    def __init__(self, seed: int) -> None:
        self.gen = Generator(seed=seed)
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            text = self.gen.clause()
            while text in self.seen:
                text = self.gen.sentence()
            self.seen.add(text)
            return text


@dataclass
class Tally:
    """What one client saw."""

    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"search": [], "add": []})
    errors: Counter[str] = field(default_factory=Counter)
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (id, user)
    adds_sent: int = 0
    adds_acknowledged: int = 0
    retries: int = 0
    outages: list[float] = field(default_factory=list)
    empty_searches: int = 0


class GaveUp(Exception):
    """The server did not come back within the outage bound."""


class Client:
    """One simulated agent: its own HTTP connection, its own session in every scope."""

    def __init__(self, url: str, token: str, number: int, scopes: int, queries: Queries,
                 outage: float) -> None:
        self.http = httpx.Client(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"})
        self.number, self.scopes, self.queries, self.outage = number, scopes, queries, outage
        self.rng = random.Random(number)
        self.gen = Generator(seed=1000 + number)
        self.tally = Tally()
        self.down_since: float | None = None
        self.scheduled: float | None = None

    def run(self, until: float, run_name: str, interval: float = 0.0) -> None:
        """Send requests until ``until``: each as soon as the last is answered, or (with an
        ``interval``) each at its scheduled time, its latency counted from that time."""
        next_at = time.monotonic() + self.rng.uniform(0, interval)
        try:
            while next_at < until:
                if interval:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    self.scheduled = time.perf_counter() - max(0.0, time.monotonic() - next_at)
                if self.rng.random() < SEARCH_SHARE:
                    self.search()
                else:
                    self.add(run_name)
                next_at = next_at + interval if interval else time.monotonic()
        except GaveUp:
            self.tally.errors["gave up: server unreachable"] += 1
        finally:
            self.http.close()

    def search(self) -> None:
        body = {"query": self.queries.next(), "user_id": self.user(), "limit": 10}
        answer = self.send("search", "/v1/search", body)
        if answer is not None and not answer["hits"]:
            self.tally.empty_searches += 1

    def add(self, run_name: str) -> None:
        user = self.user()
        n = self.tally.adds_sent
        self.tally.adds_sent += 1
        body = {"messages": self.gen.sentence(), "user_id": user,
                "session_id": f"{run_name}-{self.number}",
                "idempotency_key": f"{run_name}-{self.number}-{n}"}
        answer = self.send("add", "/v1/memories", body)
        if answer is not None:
            self.tally.adds_acknowledged += 1
            self.tally.acknowledged += [(r["id"], user) for r in answer["memories"]]

    def user(self) -> str:
        return user_id(self.rng.randrange(self.scopes))

    def send(self, op: str, path: str, body: dict[str, Any]) -> Any:
        """POST until answered (both operations are safe to resend); the JSON answer, or
        None after an error answer (counted)."""
        start = time.perf_counter() if self.scheduled is None else self.scheduled
        while True:
            try:
                response = self.http.post(path, json=body)
            except httpx.TransportError:
                self.connection_lost()
                continue
            self.back_up()
            self.tally.latencies[op].append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                self.tally.errors[f"{op} {response.status_code}"] += 1
                return None
            return response.json()

    def connection_lost(self) -> None:
        self.tally.retries += 1
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        elif now - self.down_since > self.outage:
            raise GaveUp
        time.sleep(0.05)

    def back_up(self) -> None:
        if self.down_since is not None:
            self.tally.outages.append(time.monotonic() - self.down_since)
            self.down_since = None


def load(url: str, token: str, args: argparse.Namespace, run_name: str,
         disrupt: Callable[[], dict[str, float]] | None = None,
         rate: float = 0.0) -> dict[str, Any]:
    """``args.clients`` clients for ``args.seconds``, as fast as answered or (``rate``)
    at that many requests per second in all; ``disrupt`` runs halfway."""
    queries = Queries(seed=len(run_name))
    clients = [Client(url, token, n, args.scopes, queries, args.outage)
               for n in range(args.clients)]
    start = time.monotonic()
    until = start + args.seconds
    interval = args.clients / rate if rate else 0.0
    threads = [threading.Thread(target=c.run, args=(until, run_name, interval))
               for c in clients]
    for t in threads:
        t.start()
    event: dict[str, float] = {}
    if disrupt is not None:
        time.sleep(args.seconds / 2)
        event = disrupt()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return summarize([c.tally for c in clients], elapsed) | event


def summarize(tallies: list[Tally], elapsed: float) -> dict[str, Any]:
    searches = [x for t in tallies for x in t.latencies["search"]]
    adds = [x for t in tallies for x in t.latencies["add"]]
    outages = [x for t in tallies for x in t.outages]
    errors = sum((t.errors for t in tallies), Counter[str]())
    return {
        "seconds": round(elapsed, 1),
        "requests": len(searches) + len(adds),
        "requests_per_s": round((len(searches) + len(adds)) / elapsed, 1),
        "searches_per_s": round(len(searches) / elapsed, 1),
        "adds_per_s": round(len(adds) / elapsed, 1),
        "search_ms": percentiles(searches),
        "add_ms": percentiles(adds),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "empty_searches": sum(t.empty_searches for t in tallies),
        "connection_retries": sum(t.retries for t in tallies),
        "client_downtime_s": {"max": round(max(outages), 2) if outages else 0.0,
                              "median": round(float(np.median(outages)), 2)
                              if outages else 0.0},
        "adds_sent": sum(t.adds_sent for t in tallies),
        "adds_acknowledged": sum(t.adds_acknowledged for t in tallies),
        "_acknowledged": [a for t in tallies for a in t.acknowledged],
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}


# --- after a run -------------------------------------------------------------------------


def verify(url: str, token: str, run: dict[str, Any], args: argparse.Namespace,
           run_name: str) -> dict[str, Any]:
    """Fetch every acknowledged add by id; count the turns stored in the run's sessions
    (more than were sent would be a resent add stored twice)."""
    acknowledged: list[tuple[str, str]] = run.pop("_acknowledged")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        found = sum(1 for memory_id, user in acknowledged
                    if http.get(f"/v1/memories/{memory_id}",
                                params={"user_id": user}).status_code == 200)
        stored = sum(stored_turns(http, user_id(s), f"{run_name}-{c}")
                     for s in range(args.scopes) for c in range(args.clients))
    return run | {"memories_acknowledged": len(acknowledged), "memories_found": found,
                  "adds_stored": stored}


def stored_turns(http: httpx.Client, user: str, session: str) -> int:
    count, offset = 0, 0
    while True:
        page = http.get("/v1/memories", params={
            "user_id": user, "session_id": session, "kinds": ["turn"], "limit": 1000,
            "offset": offset}).json()["memories"]
        count += len(page)
        if len(page) < 1000:
            return count
        offset += len(page)


# --- driver ------------------------------------------------------------------------------


@contextmanager
def _location(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "postgres":
        from memlane.dev.postgres import fresh_database, server

        with server() as admin:
            yield fresh_database(admin)
        return
    yield str(tmp / "serve.db")


def bench_store(kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with _location(kind, tmp) as location:
        started = time.monotonic()
        token = preload(location, args.memories, args.scopes, args.embedder)
        preload_s = time.monotonic() - started
        server = Server(location, args.embedder, args.server_threads, tmp / f"{kind}.log")
        try:
            start_s = server.start()
            warm_up(server.url, token, args.scopes)
            steady = load(server.url, token, args, "steady")
            steady = verify(server.url, token, steady, args, "steady")
            killed = load(server.url, token, args, "kill", server.restart)
            killed = verify(server.url, token, killed, args, "kill")
            paced = []
            for rate in rates(args):
                name = f"paced-{rate:g}"
                run = load(server.url, token, args, name, rate=rate)
                paced.append(verify(server.url, token, run, args, name) | {"rate": rate})
        finally:
            server.stop()
    return {"preload_s": round(preload_s, 1), "server_start_s": round(start_s, 2),
            "steady": steady, "kill": killed, "paced": paced}


def rates(args: argparse.Namespace) -> list[float]:
    return [float(r) for r in args.rates.split(",") if r.strip()]


def warm_up(url: str, token: str, scopes: int) -> None:
    """One search per scope, unmeasured: the first builds the scope's in-process indexes."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for index in range(scopes):
            http.post("/v1/search", json={"query": "warm up", "user_id": user_id(index)})


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"date": date.today().isoformat(), "machine": machine(),
                           "clients": args.clients, "seconds": args.seconds,
                           "memories_per_scope": args.memories, "scopes": args.scopes,
                           "server_threads": args.server_threads,
                           "embedder": args.embedder, "stores": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        for kind in args.stores.split(","):
            print(f"{kind}: preloading and serving", file=sys.stderr, flush=True)
            out["stores"][kind] = bench_store(kind, args, Path(tmp_name))
    return out


# --- report ------------------------------------------------------------------------------


def _ms(d: dict[str, float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:g}" for v in d.values())


def _row(store: str, name: str, r: dict[str, Any]) -> str:
    down = r["client_downtime_s"]["max"] if name == "kill" else "-"
    return (f"| {store} | {name} | {r['requests_per_s']:g} | {r['searches_per_s']:g} | "
            f"{r['adds_per_s']:g} | {_ms(r['search_ms'])} | {_ms(r['add_ms'])} | "
            f"{r['errors']} | {r['adds_sent']} | {r['adds_acknowledged']} | "
            f"{r['adds_stored']} | {r['memories_found']} of {r['memories_acknowledged']} | "
            f"{down} |")


def targets(store: str, result: dict[str, Any]) -> str:
    steady = result["steady"]
    p95 = steady["search_ms"]["p95"]
    rate = steady["searches_per_s"]
    p95_met = p95 is not None and p95 <= SEARCH_P95_MS
    paced = "; ".join(f"paced at {p['rate']:g} requests/s ({p['searches_per_s']:g} searches/s):"
                      f" p95 {p['search_ms']['p95']} ms" for p in result.get("paced", []))
    return (f"- {store}: {rate:g} searches/s at most (target >= {SEARCHES_PER_S:g}: "
            f"{'met' if rate >= SEARCHES_PER_S else 'not met'}); search p95 {p95} ms with "
            f"{{clients}} clients sending without pause (target <= {SEARCH_P95_MS:g} ms: "
            f"{'met' if p95_met else 'not met'})" + (f"; {paced}." if paced else "."))


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [f"Command: `{command}` (run by `make bench`)  ", f"Date: {result['date']}  ",
             f"Machine: {result['machine']}", "",
             f"`memlane serve` on loopback (keys on, rate limit off, "
             f"`--threads {result['server_threads']}`, {result['embedder']} embedder) over "
             f"{result['scopes']} scopes of {result['memories_per_scope']:,} memories each; "
             f"{result['clients']} client threads, each with its own HTTP connection, send "
             f"80% searches (hybrid, limit 10, every query a distinct text) and 20% adds "
             f"for {result['seconds']:g} s. The clients run on the same machine as the "
             "server (and PostgreSQL). Kill: the server process is killed with SIGKILL "
             "halfway and started again; clients retry on connection errors and resend a "
             "lost add with its idempotency key. Latency in ms (p50 / p95 / p99), from "
             "the first send to the answer, retries included. Steady and kill: each client "
             "sends as soon as it has its answer (the most the server does). Paced: the "
             "clients together send the given requests per second on a fixed schedule, "
             "latency counted from each request's scheduled time.", "",
             "| store | run | requests/s | searches/s | adds/s | search ms | add ms | errors | "
             "adds sent | acknowledged | stored | acknowledged found by id | "
             "client downtime s |",
             "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for store, r in result["stores"].items():
        lines += [_row(store, "steady", r["steady"]), _row(store, "kill", r["kill"])]
        lines += [_row(store, f"paced {p['rate']:g}/s", p) for p in r.get("paced", [])]
    lines += ["", "Stored: turns in the run's sessions afterwards (an add resent after a "
              "lost answer and stored twice would make it more than sent; an add sent "
              "but not acknowledged, cut by the kill, may be stored or not). "
              "Client downtime: the longest time a client went without an answer around "
              "the kill (the first searches after the restart also load the model and "
              "rebuild the in-process indexes); restart (process start to `/readyz` "
              "answering): "
              + ", ".join(f"{s} {r['kill']['restart_s']} s"
                          for s, r in result["stores"].items()) + ".", "",
              f"Targets (steady run, {result['clients']} clients):"]
    lines += [targets(store, r).replace("{clients}", str(result["clients"]))
              for store, r in result["stores"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=60.0, help="length of each run")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--memories", type=int, default=10_000, help="memories per scope")
    p.add_argument("--scopes", type=int, default=3)
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--server-threads", type=int, default=32,
                   help="the server's --threads (requests served at once)")
    p.add_argument("--outage", type=float, default=120.0,
                   help="seconds a client waits for the server to come back")
    p.add_argument("--rates", default="20,40",
                   help="requests per second (all clients together) of the paced runs, "
                        "comma-separated (empty: none)")
    p.add_argument("--embedder", choices=("minilm", "fake"), default="minilm")
    p.add_argument("--no-report", action="store_true", help="print, do not write the docs")
    args = p.parse_args(argv)
    report("serve", "Server under load", run(args), markdown, argv, args.no_report)


if __name__ == "__main__":
    main()
