"""Erasure on SQLite, verified rather than assumed.

Deleted rows leave their bytes in three places. Free space in the database file: every
memlane connection runs with ``secure_delete``, which overwrites what a write frees, and a
file that was written without it (by an older memlane, or by a build whose default is off)
is rewritten once by ``VACUUM``. The write-ahead log, which keeps the old pages until a
checkpoint has copied the new ones into the file and the log is truncated. A checkpoint
cannot pass a reader that still holds a snapshot taken before the erasure (a backup, a
browser, a long query): until that reader ends, the erasure is recorded as pending in
``meta`` and completed by the next open of the store or the next erasure.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..timeutil import to_text, utcnow
from .base import EraseCounts

PENDING_ERASURE = "sqlite.erasure_pending"
"""Meta key: when the oldest erasure still waiting for a reader was made (absent: none)."""
FREE_SPACE = "sqlite.free_space"
"""Meta key: 'zeroed' once every byte freed in the file has been overwritten, because
``secure_delete`` was on since the file was created or a ``VACUUM`` rewrote it since."""
INTERNAL_META = "sqlite.%"
"""Meta keys of the store itself, kept by ``reset``."""
REMOVALS = "sqlite.removals"
"""Meta key: how many times rows were removed from ``memories`` (a process's in-process
indexes read all again when it moved; other changes they read as they come, by ``seq``)."""
ERASE_WAIT = 10.0
"""Seconds an erasure waits by default for readers of older snapshots to end."""


def erase_rows(db: sqlite3.Connection, where: str, params: list[Any]) -> EraseCounts:
    """Delete the rows of a scope from every table; how many from each."""
    db.execute("CREATE TEMP TABLE IF NOT EXISTS gone (rowid INTEGER PRIMARY KEY, id TEXT)")
    db.execute("DELETE FROM gone")
    db.execute(f"INSERT INTO gone SELECT rowid, id FROM memories WHERE {where}", params)

    def delete(sql: str, values: list[Any] | tuple[()] = ()) -> int:
        return int(db.execute(sql, values).rowcount)

    counts = EraseCounts(
        vectors=delete("DELETE FROM memory_vectors WHERE memory_rowid IN "
                       "(SELECT rowid FROM gone)"),
        history=delete("DELETE FROM history WHERE memory_id IN (SELECT id FROM gone)"),
        memories=delete("DELETE FROM memories WHERE rowid IN (SELECT rowid FROM gone)"),
        messages=delete(f"DELETE FROM messages WHERE {where}", params),
        adds=delete(f"DELETE FROM adds WHERE {where}", params),
        jobs=delete(f"DELETE FROM jobs WHERE {where}", params),
    )
    db.execute("DELETE FROM gone")
    if counts.memories:
        count_removal(db)
    return counts


def count_removal(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE SET "
               "value = CAST(value AS INTEGER) + 1", (REMOVALS,))


def erase_all(db: sqlite3.Connection) -> EraseCounts:
    """Delete every row of every table (the store's own meta keys kept)."""
    counts = {table: int(db.execute(f"DELETE FROM {table}").rowcount) for table in (
        "memory_vectors", "history", "memories", "jobs", "messages", "adds")}
    db.execute("DELETE FROM meta WHERE key NOT LIKE ?", (INTERNAL_META,))
    count_removal(db)
    return EraseCounts(messages=counts["messages"], memories=counts["memories"],
                       history=counts["history"], vectors=counts["memory_vectors"],
                       adds=counts["adds"], jobs=counts["jobs"])


def mark_pending(db: sqlite3.Connection) -> None:
    """Record, in the erasing transaction itself, that an erasure awaits its checkpoint."""
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
               (PENDING_ERASURE, to_text(utcnow())))


def clear_pending(db: sqlite3.Connection, path: str) -> bool:
    """Clear the pending mark, inside a write transaction that follows a complete
    checkpoint, if nothing was committed since (the log is still empty): then no erasure
    can have been made after the checkpoint. Whether it was cleared."""
    if wal_bytes(path):
        return False
    db.execute("DELETE FROM meta WHERE key = ?", (PENDING_ERASURE,))
    return True


def wal_bytes(path: str) -> int:
    log = Path(path + "-wal")
    return log.stat().st_size if log.exists() else 0


def checkpoint(db: sqlite3.Connection, path: str, wait: float, busy_ms: int) -> bool:
    """Copy every page of the write-ahead log into the database file and truncate the log,
    letting readers of older snapshots finish for up to ``wait`` seconds (SQLite's busy
    handler retries meanwhile). Whether it was done, as SQLite reports it (not busy, every
    frame copied) and as the file system shows it (an empty log)."""
    db.execute(f"PRAGMA busy_timeout = {int(min(max(wait, 0.0), 3600.0) * 1000)}")
    try:
        busy, frames, copied = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError:  # locked by another checkpoint: not done
        return False
    finally:
        db.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return busy == 0 and frames == copied and wal_bytes(path) == 0


def secure_delete_on(db: sqlite3.Connection) -> bool:
    return bool(db.execute("PRAGMA secure_delete").fetchone()[0])


def pending_message(path: str, counts: EraseCounts, wait: float) -> str:
    return (
        f"erased {counts.memories} memories, {counts.messages} messages and "
        f"{counts.history} history events: the rows are deleted and no reader will see them "
        f"again, but their bytes remain in {path} and its write-ahead log because another "
        f"connection still holds a read snapshot (or a lock) from before the erasure "
        f"(waited {wait:g} s). The erasure is recorded as pending: once that connection "
        "ends its read, the next open of this store or the next forget completes and "
        "verifies it."
    )
