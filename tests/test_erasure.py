"""Forgetting is complete: the erased text is gone from every file memlane wrote (database,
write-ahead log, shared-memory index), or memlane says it is not and finishes later.

Each situation scans every file of the store's directory for the erased text while the
store is still open (closing the last connection would clean up and hide a defect), and
again after close.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from memlane import FakeEmbedder, Memory
from memlane.errors import ErasurePendingError
from memlane.store import RecordUpdate, WriteBatch
from memlane.store.sqlite import PENDING_ERASURE, SQLiteStore

from .conftest import env_with
from .test_cli import SCRIPT
from .test_store_conformance import ALICE, BOB, record, vec

FIRST = "zebracorn-passphrase-7731"
SECOND = "okapiquill-passphrase-4410"
SECRETS = (FIRST, SECOND)

READER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN")
db.execute("SELECT count(*), max(text) FROM memories").fetchall()
print("reading", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def traces(directory: Path) -> dict[str, list[str]]:
    """Which files of ``directory`` hold which secret."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        held = [s for s in SECRETS if s.encode() in data]
        if held:
            found[path.name] = held
    return found


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A store holding alice's secret (in two versions: the first one freed by an update)
    beside bob's notes, in a directory of its own."""
    directory = tmp_path / "store"
    directory.mkdir()
    path = directory / "memlane.db"
    with Memory(path, embedder=FakeEmbedder()) as mem:
        r = mem.add(f"my passphrase is {FIRST}", user_id="alice", session_id="s1")[0]
        for i in range(40):
            mem.add(f"bob's unrelated note {i}", user_id="bob")
        mem.update(r.id, f"my passphrase is now {SECOND}", user_id="alice")
        mem.add("alice again, no secret", user_id="alice", session_id="s2")
    return path


@pytest.fixture
def mem(path: Path) -> Iterator[Memory]:
    memory = Memory(path, embedder=FakeEmbedder())
    assert traces(path.parent)  # the secret is on disk before forget
    yield memory
    memory.close()


def _reader(path: Path, hold: float) -> subprocess.Popen[str]:
    """Another process holding a read snapshot of the store for ``hold`` seconds."""
    proc = subprocess.Popen([sys.executable, "-c", READER, str(path), str(hold)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "reading"
    proc.stdout.close()  # it says nothing more
    return proc


def _assert_gone(mem: Memory, path: Path) -> None:
    assert mem.get_all(user_id="alice") == [] and mem.messages(user_id="alice") == []
    assert len(mem.get_all(user_id="bob")) == 40
    assert traces(path.parent) == {}


def test_forget_alone_leaves_no_trace_and_says_what_it_removed(mem: Memory,
                                                                path: Path) -> None:
    counts = mem.forget(user_id="alice")
    assert (counts.messages, counts.memories, counts.vectors, counts.history) == (2, 4, 4, 6)
    assert (counts.adds, counts.jobs) == (2, 0)
    assert counts.wal_truncated is True and counts.verified_clean is True
    _assert_gone(mem, path)
    mem.close()
    assert traces(path.parent) == {}


def test_forget_with_an_idle_connection_open(mem: Memory, path: Path) -> None:
    idle = sqlite3.connect(path)
    idle.execute("SELECT count(*) FROM memories").fetchall()  # read, then no transaction
    other = Memory(path, embedder=FakeEmbedder())  # an idle memlane in the same process
    try:
        assert mem.forget(user_id="alice").verified_clean
        _assert_gone(mem, path)
    finally:
        other.close()
        idle.close()


def test_forget_waits_for_a_reader_that_releases_its_snapshot(mem: Memory,
                                                               path: Path) -> None:
    reader = _reader(path, hold=0.5)
    counts = mem.forget(user_id="alice", wait=10)
    assert counts.verified_clean and reader.wait(10) == 0
    _assert_gone(mem, path)


def test_a_reader_holding_its_snapshot_makes_the_erasure_pending_until_an_open(
        mem: Memory, path: Path) -> None:
    reader = _reader(path, hold=30)
    try:
        with pytest.raises(ErasurePendingError, match="read snapshot") as caught:
            mem.forget(user_id="alice", wait=0.5)
        pending = caught.value.counts
        assert pending.memories == 4 and pending.verified_clean is False
        assert pending.wal_truncated is False
        # the rows are gone for every reader from now on; their bytes are not, and that
        # is what the error says
        assert mem.get_all(user_id="alice") == [] and mem.messages(user_id="alice") == []
        assert traces(path.parent)
        assert mem.store.get_meta(PENDING_ERASURE) is not None
        # opening the store while the reader still reads cannot finish it
        SQLiteStore(path).close()
        assert mem.store.get_meta(PENDING_ERASURE) is not None
    finally:
        reader.kill()
        reader.wait()
    SQLiteStore(path).close()  # a later open completes and verifies the erasure
    assert mem.store.get_meta(PENDING_ERASURE) is None
    _assert_gone(mem, path)


def test_a_later_forget_completes_a_pending_erasure(mem: Memory, path: Path) -> None:
    reader = _reader(path, hold=1.5)
    with pytest.raises(ErasurePendingError):
        mem.forget(user_id="alice", wait=0.1)
    assert reader.wait(10) == 0
    again = mem.forget(user_id="carol")  # nothing of carol's: it finishes alice's erasure
    assert again.memories == 0 and again.verified_clean
    assert mem.store.get_meta(PENDING_ERASURE) is None
    _assert_gone(mem, path)


def test_forget_after_a_reader_was_killed_mid_read(mem: Memory, path: Path) -> None:
    reader = _reader(path, hold=60)
    os.kill(reader.pid, signal.SIGKILL)
    reader.wait()
    assert mem.forget(user_id="alice", wait=2).verified_clean
    _assert_gone(mem, path)


def test_text_freed_before_forget_does_not_survive_it(tmp_path: Path) -> None:
    """Text freed without secure_delete (by an older memlane, or a build whose default is
    off) lingers in free space that forgetting the rows now there does not touch; the first
    forget on such a file rewrites it."""
    path = tmp_path / "old.db"
    with Memory(path, embedder=FakeEmbedder()) as mem:
        mem.add(f"alice says {FIRST}", user_id="alice")
        for i in range(30):
            mem.add(f"bob's note number {i}", user_id="bob")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA secure_delete = OFF")
    longer = "alice says something else, and at some length " * 3
    db.execute("UPDATE memories SET text = ? WHERE user_id = 'alice'", (longer,))
    db.execute("UPDATE messages SET content = ? WHERE user_id = 'alice'", (longer,))
    db.execute("UPDATE history SET new_text = ? WHERE new_text LIKE '%zebracorn%'", (longer,))
    db.execute("DELETE FROM meta WHERE key LIKE 'sqlite.%'")  # as written before this version
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert FIRST.encode() in path.read_bytes()  # no row holds it; free space does
    with Memory(path, embedder=FakeEmbedder()) as mem:
        assert mem.forget(user_id="alice").verified_clean
        assert len(mem.get_all(user_id="bob")) == 30
        assert traces(tmp_path) == {}


def test_text_freed_by_an_update_is_overwritten_even_after_a_forget(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    try:
        store.erase(BOB)
        r = record(f"alice says {FIRST}", ALICE)
        store.write(WriteBatch(scope=ALICE, inserts=[(r, vec(1))]))
        store.write(WriteBatch(scope=ALICE, updates=[RecordUpdate(
            replace(r, text="alice says something else entirely", version=2), 1)]))
        with contextlib.closing(sqlite3.connect(store.path)) as db:  # the journal's pages
            assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # moved
        assert traces(tmp_path) == {}
    finally:
        store.close()


def test_cli_forget_reports_a_pending_erasure(mem: Memory, path: Path) -> None:
    reader = _reader(path, hold=30)
    try:
        done = subprocess.run([SCRIPT, "--db", str(path), "forget", "--user", "alice", "--yes",
                               "--wait", "0.5"], capture_output=True, text=True,
                              env=env_with(MEMLANE_EMBEDDER="fake"), timeout=60)
    finally:
        reader.kill()
        reader.wait()
    assert done.returncode == 1
    assert "read snapshot" in done.stderr and "pending" in done.stderr
    report = json.loads(done.stdout)
    assert report["pending"] is True and report["erased"]["memories"] == 4
    assert report["erased"]["verified_clean"] is False
    again = subprocess.run([SCRIPT, "--db", str(path), "forget", "--user", "alice", "--yes"],
                           capture_output=True, text=True,
                           env=env_with(MEMLANE_EMBEDDER="fake"), timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["erased"]["verified_clean"] is True
    _assert_gone(mem, path)


def test_postgres_forget_leaves_no_row_in_any_table(postgres_server: str) -> None:
    """Every table is queried for the erased text and scope. (PostgreSQL keeps the bytes of
    deleted rows in free space and in its WAL for a while: docs/postgres.md.)"""
    import psycopg

    from memlane.dev.postgres import fresh_database
    from memlane.store.postgres import TABLES, PostgresStore

    url = fresh_database(postgres_server)
    with Memory(store=PostgresStore(url), embedder=FakeEmbedder()) as mem:
        r = mem.add(f"my passphrase is {FIRST}", user_id="alice", idempotency_key="k1")[0]
        mem.update(r.id, f"my passphrase is now {SECOND}", user_id="alice")
        mem.add("bob's note", user_id="bob")
        counts = mem.forget(user_id="alice")
        assert (counts.messages, counts.memories, counts.vectors, counts.history) == (1, 2, 2, 4)
        assert counts.adds == 1 and counts.wal_truncated is None and counts.verified_clean is None
        with psycopg.connect(url) as conn:
            for table in TABLES:
                rows = [row[0] for row in conn.execute(f"SELECT t::text FROM {table} t")]
                assert not [row for row in rows if FIRST in row or SECOND in row], table
                assert not [row for row in rows if "alice" in row], table
            assert conn.execute("SELECT count(*) FROM messages").fetchone() == (1,)
        assert [m.content for m in mem.messages(user_id="bob")] == ["bob's note"]


def test_a_checkpoint_with_a_huge_wait_is_clamped(path: Path) -> None:
    from memlane.store.sqlite_erase import checkpoint

    db = sqlite3.connect(path, isolation_level=None)
    try:
        assert checkpoint(db, str(path), 1e308, 5000) in (True, False)
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        db.close()
