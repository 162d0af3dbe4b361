"""Reliability: what survives kills, concurrent writers, cross-scope probes and erasure.

    python -m benchmarks.reliability [--kills 30] [--procs 4] [--threads 3] [--adds 20]
                                     [--stores sqlite,postgres]

Four measurements, each bounded in time and count:
- kills: a writer process adding and updating memories is killed with SIGKILL at a random
  moment, again and again; every operation it acknowledged (printed after ``add`` or
  ``update`` returned) must be found afterwards;
- concurrent writers: processes x threads add to one shared conversation and to their own
  scopes at once; afterwards, rows lost, doubled, misattributed (in another scope), and
  windows citing other turns than the ones before them;
- cross-scope probes: two tenants with two users each hold distinct secrets; every read and
  by-id write path is called by each caller, on its own scope and on the others' ids, and
  every answer is scanned for the others' secrets;
- erasure: after ``forget``, the bytes of every file in the store's directory are scanned
  for the erased text, alone, beside an idle connection, beside an open reader and after a
  reader was killed mid-read (SQLite); on PostgreSQL, rows left in every table.

Writes JSON to benchmarks/results/ and a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path
from typing import Any

from memlane import FakeEmbedder, MemlaneError, Memory, MemoryRecord, NotFoundError
from memlane.cli.output import to_jsonable
from memlane.eval.machine import describe as machine

from .report import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONVERSATION: dict[str, Any] = {"user_id": "shared", "session_id": "s1"}


def _open(location: str, tenant: str = "default") -> Memory:
    return Memory(location, embedder=FakeEmbedder(), tenant=tenant)


# --- kills -----------------------------------------------------------------------------------


def kill_worker(path: str, run: int) -> None:
    """Add and update until killed; print each operation once it is acknowledged."""
    with _open(path) as mem:
        for n in range(100_000):
            text = f"run {run} add {n}"
            record = mem.add(text, user_id=f"k{n % 3}", idempotency_key=f"{run}-{n}")[0]
            print(f"add\t{record.id}\t{text}", flush=True)
            if n % 4 == 3:
                new = f"{text} updated"
                mem.update(record.id, new, user_id=f"k{n % 3}")
                print(f"update\t{record.id}\t{new}", flush=True)


def _one_kill(path: Path, run: int, rng: random.Random) -> list[tuple[str, str, str]]:
    code = f"from benchmarks.reliability import kill_worker; kill_worker({str(path)!r}, {run})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    time.sleep(rng.uniform(1.0, 3.0))  # start-up takes most of a second
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(5)
    return [tuple(line.rstrip("\n").split("\t")) for line in lines  # type: ignore[misc]
            if line.endswith("\n") and line.count("\t") == 2]


def bench_kills(tmp: Path, kills: int, seed: int = 7) -> dict[str, Any]:
    path = tmp / "kills.db"
    _open(str(path)).close()
    rng = random.Random(seed)
    acknowledged: list[tuple[str, str, str]] = []
    for run in range(kills):
        acknowledged += _one_kill(path, run, rng)
    expected = {memory_id: text for _, memory_id, text in acknowledged}  # updates win
    with _open(str(path)) as mem:
        found = _all_records(mem, [f"k{u}" for u in range(3)])
    # an update may have committed without being acknowledged (killed before it printed)
    lost = sum(1 for i, text in expected.items()
               if found.get(i) not in (text, text + " updated"))
    with sqlite3.connect(path) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    return {"kills": kills, "acknowledged": len(acknowledged), "lost": lost,
            "integrity": integrity}


def _all_records(mem: Memory, users: list[str]) -> dict[str, str]:
    return {r.id: r.text for user in users for r in _pages(mem, user_id=user)}


def _pages(mem: Memory, **query: Any) -> Iterator[MemoryRecord]:
    offset = 0
    while page := mem.get_all(**query, limit=1000, offset=offset):
        yield from page
        offset += len(page)


# --- concurrent writers ----------------------------------------------------------------------


def writer_process(location: str, proc: int, threads: int, adds: int) -> None:
    with _open(location) as mem:
        def work(thread: int) -> None:
            for n in range(adds):
                mem.add(f"p{proc} t{thread} n{n} shared", **CONVERSATION)
                mem.add(f"p{proc} t{thread} n{n} own", user_id=f"u{proc}-{thread}")

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()


def bench_writers(location: str, procs: int, threads: int, adds: int) -> dict[str, Any]:
    _open(location).close()
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=writer_process, args=(location, p, threads, adds))
               for p in range(procs)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(600)
    seconds = time.perf_counter() - start
    with _open(location) as mem:
        shared = mem.messages(**CONVERSATION)
        own = {(p, t): [m.content for m in mem.messages(user_id=f"u{p}-{t}")]
               for p in range(procs) for t in range(threads)}
        windows = [w.source_ids for w in _pages(mem, **CONVERSATION, kinds=["window"])]
    expected = {f"p{p} t{t} n{n}" for p in range(procs) for t in range(threads)
                for n in range(adds)}
    seen = Counter(m.content.rsplit(" ", 1)[0] for m in shared)
    seen.update(c.rsplit(" ", 1)[0] for texts in own.values() for c in texts)
    misattributed = sum(1 for (p, t), texts in own.items() for c in texts
                        if not c.startswith(f"p{p} t{t} "))
    return {"processes": procs, "threads": threads, "adds": 2 * len(expected),
            "exit_codes_ok": all(w.exitcode == 0 for w in workers),
            "seconds": round(seconds, 1),
            "lost": sum(1 for e in expected if seen[e] < 2),
            "doubled": sum(max(0, seen[e] - 2) for e in expected),
            "misattributed": misattributed,
            "windows": len(windows),
            "windows_wrong": _wrong_windows([m.id for m in shared], windows)}


def _wrong_windows(order: list[str], windows: list[tuple[str, ...]]) -> int:
    """Windows whose sources are not their last turn and the (up to) two turns before it."""
    position = {message_id: i for i, message_id in enumerate(order)}
    wrong = 0
    for sources in windows:
        last = position.get(sources[-1])
        if last is None or list(sources) != order[max(0, last - len(sources) + 1):last + 1]:
            wrong += 1
        elif len(sources) < 3 and last >= len(sources):
            wrong += 1  # too short: turns before it existed
    return wrong


# --- cross-scope probes ----------------------------------------------------------------------

CALLERS = [(t, u) for t in ("t1", "t2") for u in ("alice", "bob")]


def _secret(tenant: str, user: str) -> str:
    return f"secret-{tenant}-{user}-marker"


def bench_probes(location: str) -> dict[str, Any]:
    ids: dict[tuple[str, str], list[str]] = {}
    for tenant, user in CALLERS:
        with _open(location, tenant) as mem:
            added = mem.add(f"{user} keeps {_secret(tenant, user)} in the drawer",
                            user_id=user, session_id="s1", idempotency_key=f"key-{user}")
            mem.add(f"{user} likes tea", user_id=user, session_id="s2")
            ids[(tenant, user)] = [r.id for r in added]
    probes = leaks = 0
    for tenant, user in CALLERS:
        with _open(location, tenant) as mem:
            others = [k for k in CALLERS if k != (tenant, user)]
            markers = [_secret(*k) for k in others]
            for answer in _answers(mem, user, [i for k in others for i in ids[k]], others):
                probes += 1
                text = json.dumps(to_jsonable(answer), default=str)
                leaks += any(m in text for m in markers)
    return {"callers": len(CALLERS), "probes": probes, "leaks": leaks}


def _answers(mem: Memory, user: str, foreign_ids: list[str],
             others: list[tuple[str, str]]) -> Iterator[Any]:
    """What every read path, and every by-id path on others' ids, answers to ``user``."""
    query = "what is in the drawer? secret marker"
    for recipe in ("hybrid", "bm25", "dense"):
        yield mem.search(query, user_id=user, recipe=recipe, limit=50)
    yield mem.search(query, user_id=user, kinds=["turn"], limit=50)
    for other in {u for _, u in others}:
        yield mem.search(query, user_id=user, filters={"user_id": other})
    yield mem.get_all(user_id=user, statuses=["active", "superseded", "archived", "deleted"])
    yield mem.context(query, user_id=user, budget_tokens=400)
    yield mem.messages(user_id=user)
    yield mem.stats(user_id=user)
    yield mem.stats()
    yield [mem.history(r.id, user_id=user) for r in mem.get_all(user_id=user)]
    for other in {u for _, u in others if u != user}:  # another user's key, same tenant
        yield _attempt(functools.partial(mem.add, "retry", user_id=user, session_id="s1",
                                         idempotency_key=f"key-{other}"))
    for memory_id in foreign_ids:
        for call in _by_id(mem, memory_id, user):
            yield _attempt(call)


def _by_id(mem: Memory, memory_id: str, user: str) -> list[Callable[[], Any]]:
    """By-id calls naming the caller's scope (without one, a by-id call sees the whole
    tenant: the library's tenant-wide view, which the servers never offer)."""
    return [lambda: mem.get(memory_id, user_id=user),
            lambda: mem.history(memory_id, user_id=user),
            lambda: mem.update(memory_id, "x", user_id=user),
            lambda: mem.delete(memory_id, user_id=user)]


def _attempt(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except NotFoundError:
        return None
    except MemlaneError as exc:
        return str(exc)


# --- erasure ---------------------------------------------------------------------------------

READER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("BEGIN")
db.execute("SELECT count(*), group_concat(text) FROM memories").fetchall()
print("reading", flush=True)
time.sleep(float(sys.argv[2]))
"""


@contextmanager
def _situation(path: Path, name: str) -> Iterator[None]:
    """The erasure runs inside; a reader still open afterwards is stopped on the way out."""
    if name == "alone":
        yield None
    elif name == "idle connection":
        db = sqlite3.connect(path)
        try:
            yield None
        finally:
            db.close()
    else:
        proc = subprocess.Popen([sys.executable, "-c", READER, str(path), "600"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # its snapshot is open
        if name == "reader killed":
            proc.send_signal(signal.SIGKILL)
        try:
            yield None
        finally:
            with suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def _scan(directory: Path, marker: bytes) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file()
                  and marker in p.read_bytes())


def erase_once(tmp: Path, name: str) -> dict[str, Any]:
    folder = tmp / name.replace(" ", "-")
    folder.mkdir()
    path = folder / "erase.db"
    marker = f"ERASEMARK-{name.replace(' ', '')}"
    with _open(str(path)) as mem:
        record = mem.add(f"{marker} first", user_id="eve")[0]
        mem.update(record.id, f"{marker} second", user_id="eve")
        for n in range(30):
            mem.add(f"note {n} of someone else", user_id="frank")
    outcome = "ok"
    with _situation(path, name), _open(str(path)) as mem:
        try:
            mem.forget(user_id="eve")
        except MemlaneError as exc:
            outcome = type(exc).__name__
        after_forget = _scan(folder, marker.encode())
    with _open(str(path)) as mem:  # a later open, and forget again, finish pending work
        mem.forget(user_id="eve")
        kept = len(mem.get_all(user_id="frank", limit=100))
    return {"situation": name, "forget": outcome, "files_with_text": after_forget,
            "files_with_text_later": _scan(folder, marker.encode()), "others_kept": kept}


def bench_erasure_postgres(location: str) -> dict[str, Any]:
    import psycopg

    marker = "PGERASEMARK"
    with _open(location) as mem:
        record = mem.add(f"{marker} first", user_id="eve")[0]
        mem.update(record.id, f"{marker} second", user_id="eve")
        mem.forget(user_id="eve")
    with psycopg.connect(location) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        rows = sum(_count(conn, f'SELECT count(*) FROM "{t}" WHERE "{t}"::text LIKE %s',
                          f"%{marker}%") for t in tables)
    return {"tables_scanned": len(tables), "rows_with_text": rows}


def _count(conn: Any, sql: str, *params: Any) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


# --- driver ----------------------------------------------------------------------------------


@contextmanager
def _postgres() -> Iterator[Callable[[], str]]:
    from memlane.dev.postgres import fresh_database, server

    with server() as admin:
        yield lambda: fresh_database(admin)


def run(args: argparse.Namespace) -> dict[str, Any]:
    stores = args.stores.split(",")
    out: dict[str, Any] = {"date": date.today().isoformat(), "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out["kills"] = bench_kills(tmp, args.kills)
        out["writers"] = {"sqlite": bench_writers(str(tmp / "writers.db"), args.procs,
                                                  args.threads, args.adds)}
        out["probes"] = {"sqlite": bench_probes(str(tmp / "probes.db"))}
        out["erasure"] = [erase_once(tmp, name) for name in
                          ("alone", "idle connection", "open reader", "reader killed")]
        if "postgres" in stores:
            with _postgres() as fresh:
                out["writers"]["postgres"] = bench_writers(fresh(), args.procs, args.threads,
                                                           args.adds)
                out["probes"]["postgres"] = bench_probes(fresh())
                out["erasure_postgres"] = bench_erasure_postgres(fresh())
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    k = result["kills"]
    lines = [f"Command: `{command}` (run by `make bench`). Date {result['date']}; machine: "
             f"{result['machine']}. Fake embedder (the model plays no part in these).", "",
             f"- Kills: {k['kills']} writers killed with SIGKILL mid-run; {k['acknowledged']} "
             f"acknowledged adds and updates, {k['lost']} lost; integrity check: "
             f"{k['integrity']}.", "",
             "| store | processes x threads | adds | lost | doubled | misattributed | "
             "windows | windows citing other turns | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for store, w in result["writers"].items():
        lines.append(f"| {store} | {w['processes']} x {w['threads']} | {w['adds']} | "
                     f"{w['lost']} | {w['doubled']} | {w['misattributed']} | {w['windows']} | "
                     f"{w['windows_wrong']} | {w['seconds']} |")
    lines += ["", "| store | callers | probes | leaks |", "|---|---|---|---|"]
    for store, p in result["probes"].items():
        lines.append(f"| {store} | {p['callers']} | {p['probes']} | {p['leaks']} |")
    lines += ["", "| erasure (SQLite) | forget | files holding the text after forget | "
              "after a later open | other scope kept |", "|---|---|---|---|---|"]
    for e in result["erasure"]:
        lines.append(f"| {e['situation']} | {e['forget']} | "
                     f"{', '.join(e['files_with_text']) or 'none'} | "
                     f"{', '.join(e['files_with_text_later']) or 'none'} | "
                     f"{e['others_kept']} |")
    lines += ["", "The open reader holds its snapshot longer than `forget` waits (10 s by "
              "default): `forget` deletes the rows, then reports the erasure pending "
              "(`ErasurePendingError`, CLI exit 1) while the reader keeps the old pages; the "
              "next open of the store after the reader ends completes and verifies it."]
    if "erasure_postgres" in result:
        pg = result["erasure_postgres"]
        lines += ["", f"PostgreSQL erasure: {pg['rows_with_text']} rows holding the erased "
                  f"text in {pg['tables_scanned']} tables after `forget` (what the server's "
                  "own files keep for a while: docs/postgres.md)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--kills", type=int, default=30)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--adds", type=int, default=20, help="adds per thread and scope")
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--no-report", action="store_true", help="print, do not write the docs")
    args = p.parse_args(argv)
    report("reliability", "Reliability", run(args), markdown, argv, args.no_report)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
