"""The default store: one SQLite file, safe for several processes at once.

WAL journal, a busy timeout, ``BEGIN IMMEDIATE`` for every write, ``secure_delete`` (what a
write frees is overwritten; erasure is checked in ``sqlite_erase``). Vectors are float32 blobs
in the same transaction as their rows. Searches run on in-process indexes derived from the
rows and checked against their versions (``vector_cache``, ``keyword_index``), reused until
any connection commits a change. Driver errors are translated here into memlane's errors.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ConflictError,
    ErasurePendingError,
    InvalidInputError,
    ReadOnlyError,
    StoreError,
)
from ..timeutil import to_text
from ..types import (
    HistoryEvent,
    Job,
    MemoryRecord,
    Message,
    Scope,
    index_text,
)
from . import rows as codec
from .base import (
    EraseCounts,
    RecordQuery,
    StoreCapabilities,
    Vector,
    WriteBatch,
    WriteOutcome,
    check_add_key_reuse,
    check_basis,
)
from .derived import DerivedSearch
from .sql_common import SQLCounts
from .sqlite_erase import (
    ERASE_WAIT,
    FREE_SPACE,
    PENDING_ERASURE,
    checkpoint,
    clear_pending,
    erase_all,
    erase_rows,
    mark_pending,
    pending_message,
    secure_delete_on,
)
from .sqlite_open import connect, is_read_only_error
from .sqlite_sql import where_clause

_M_COLS = ", ".join(f"m.{c.strip()}" for c in codec.COLS.split(","))


class SQLiteStore(SQLCounts, DerivedSearch):
    """A memlane store in one SQLite file (or ``:memory:`` for a private database)."""

    _mark = "?"
    _usage_number = "json_extract(usage, '$.{key}')"
    # the deleted turns' sources, collected once into one indexed list of single keys (a
    # list of row values is searched linearly: 25 times slower at 10,000 messages); scope
    # values hold no control character, so char(0) separates the parts unambiguously
    _hidden_messages = (
        "((messages.user_id || char(0) || messages.agent_id || char(0) || messages.session_id "
        "|| char(0) || messages.id) IN (SELECT m.user_id || char(0) || m.agent_id || char(0) "
        "|| m.session_id || char(0) || j.value FROM memories m, json_each(m.source_ids) j "
        "WHERE {scope} AND m.kind = ? AND m.status = ?))")
    capabilities = StoreCapabilities(name="sqlite", persistent=True, multi_process=True,
                                     verified_erasure=True)

    def __init__(self, path: str | Path, *, timeout: float = 30.0,
                 query_cache_rows: int = 500_000, erase_wait: float = ERASE_WAIT,
                 read_only: bool = False, create: bool = True) -> None:
        """``read_only`` opens an existing file without writing to it; a file that cannot be
        written is opened so too. Without ``create`` the file must exist; with it, its
        directory must."""
        self.path = str(path)
        self.erase_wait = erase_wait
        self._busy_ms = int(timeout * 1000)
        self._on_disk = self.path != ":memory:"
        self._lock = threading.RLock()
        self._init_derived(query_cache_rows)
        self._writes = 0
        self._db, self.read_only = connect(self.path, timeout=timeout, read_only=read_only,
                                           create=create)
        if not self.read_only:
            self._complete_pending()

    # --- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self.read_only:
                raise self._read_only()
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                if is_read_only_error(exc):
                    raise self._read_only() from exc
                raise StoreError(f"could not start a write on {self.path}: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._writes += 1

    def _read_only(self) -> ReadOnlyError:
        return ReadOnlyError(f"{self.path} is read-only (opened so, or the file or its "
                             "directory cannot be written): nothing was written")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"read failed on {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- writes --------------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteOutcome:
        try:
            with self._tx() as db:
                if batch.add_key is not None:
                    done = self._applied_add(db, batch)
                    if done is not None:
                        return WriteOutcome(False, done)
                check_basis(batch, lambda n: self.recent_messages(batch.scope, n))
                self._insert_messages(db, batch.messages)
                self._insert_records(db, batch.inserts)
                self._apply_updates(db, batch)
                db.executemany(f"INSERT INTO history ({codec.HIST_COLS}) VALUES ({_q(10)})",
                               [codec.event_row(e) for e in batch.events])
                db.executemany(f"INSERT OR REPLACE INTO jobs ({codec.JOB_COLS}) VALUES ({_q(14)})",
                               [codec.job_row(j) for j in batch.jobs])
                ids = tuple(r.id for r, _ in batch.inserts)
                if batch.add_key is not None:
                    db.execute(
                        "INSERT INTO adds (tenant, key, memory_ids, user_id, agent_id, session_id,"
                        " fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, datetime('now'))",
                        (batch.scope.tenant, batch.add_key, json.dumps(ids),
                         *codec.scope_values(batch.scope), batch.add_fingerprint),
                    )
                return WriteOutcome(True, ids)
        except sqlite3.IntegrityError as exc:
            raise InvalidInputError(f"write rejected, nothing stored: {exc}") from exc
        except sqlite3.Error as exc:
            if is_read_only_error(exc):
                raise self._read_only() from exc
            raise StoreError(f"write failed on {self.path}, nothing stored: {exc}") from exc

    @staticmethod
    def _applied_add(db: sqlite3.Connection, batch: WriteBatch) -> tuple[str, ...] | None:
        """The ids stored by the add of ``batch.add_key``, if it was applied (and is this
        same add: else ``ConflictError``)."""
        row = db.execute("SELECT memory_ids, user_id, agent_id, session_id, fingerprint FROM "
                         "adds WHERE tenant = ? AND key = ?",
                         (batch.scope.tenant, batch.add_key)).fetchone()
        if row is None:
            return None
        check_add_key_reuse(batch, codec.scope_of(batch.scope.tenant, row[1:4]), row[4])
        return tuple(json.loads(row[0]))

    @staticmethod
    def _insert_messages(db: sqlite3.Connection, messages: list[Message]) -> None:
        for message in messages:
            try:
                db.execute(f"INSERT INTO messages ({codec.MSG_COLS}) VALUES ({_q(11)})",
                           codec.message_row(message))
            except sqlite3.IntegrityError as exc:
                raise InvalidInputError(
                    f"message id {message.id!r} already exists in its scope; nothing stored"
                ) from exc

    @staticmethod
    def _insert_records(db: sqlite3.Connection,
                        inserts: list[tuple[MemoryRecord, Vector]]) -> None:
        for record, vector in inserts:
            cursor = db.execute(f"INSERT INTO memories ({codec.COLS}) VALUES ({_q(26)})",
                                codec.record_row(record))
            rowid = cursor.lastrowid
            db.execute("INSERT INTO memory_vectors (memory_rowid, vec) VALUES (?, ?)",
                       (rowid, codec.blob(vector)))

    @staticmethod
    def _apply_updates(db: sqlite3.Connection, batch: WriteBatch) -> None:
        sets = ", ".join(f"{c.strip()} = ?" for c in codec.COLS.split(","))
        for update in batch.updates:
            record = update.record
            cursor = db.execute(
                f"UPDATE memories SET {sets} WHERE id = ? AND tenant = ? AND version = ? "
                "RETURNING rowid",
                (*codec.record_row(record), record.id, record.tenant, update.expected_version),
            )
            row = cursor.fetchone()
            if row is None:
                raise ConflictError(f"memory {record.id} changed; re-read and retry")
            if update.vector is not None:
                db.execute("UPDATE memory_vectors SET vec = ? WHERE memory_rowid = ?",
                           (codec.blob(update.vector), row[0]))

    # --- reads ---------------------------------------------------------------------------

    def get(self, tenant: str, ids: Sequence[str]) -> list[MemoryRecord]:
        found: dict[str, MemoryRecord] = {}
        for chunk in codec.chunks(list(ids)):
            rows = self._rows(f"SELECT {codec.COLS} FROM memories WHERE tenant = ? AND id IN "
                              f"({_q(len(chunk))})", (tenant, *chunk))
            found.update((r[0], codec.record(r)) for r in rows)
        return [found[i] for i in ids if i in found]

    def find(self, query: RecordQuery, *, limit: int | None = None, offset: int = 0,
             newest_first: bool = False) -> list[MemoryRecord]:
        where, params = where_clause(query)
        order = "DESC" if newest_first else "ASC"
        rows = self._rows(
            f"SELECT {_M_COLS} FROM memories m WHERE {where} "
            f"ORDER BY m.event_time {order}, m.id {order} LIMIT ? OFFSET ?",
            (*params, -1 if limit is None else limit, offset),
        )
        return [codec.record(r) for r in rows]

    def _generation(self, query: RecordQuery) -> tuple[int, int]:
        """Changes whenever any connection (this one included) commits a write."""
        return (int(self._rows("PRAGMA data_version")[0][0]), self._writes)

    def _where(self, query: RecordQuery) -> tuple[str, list[Any]]:
        return where_clause(query)

    def _admitted_key(self, query: RecordQuery) -> tuple[Any, ...]:
        where, params = where_clause(query)
        return (where, *params)

    def _admitted_rows(self, query: RecordQuery) -> list[Any]:
        where, params = where_clause(query)
        return self._rows(f"SELECT m.rowid, m.version FROM memories m WHERE {where}", params)

    def _load_texts(self, rowids: list[int]) -> Iterable[tuple[int, str]]:
        for chunk in codec.chunks(rowids):
            rows = self._rows(f"SELECT rowid, text, speaker FROM memories WHERE rowid IN "
                              f"({_q(len(chunk))})", chunk)
            yield from ((r[0], index_text(r[1], r[2])) for r in rows)

    def _load_vectors(self, rowids: list[int]) -> Iterable[tuple[int, bytes]]:
        for chunk in codec.chunks(rowids):
            yield from self._rows(
                f"SELECT memory_rowid, vec FROM memory_vectors WHERE memory_rowid IN "
                f"({_q(len(chunk))})", chunk)

    def _records_by_rowid(self, rowids: list[int]) -> dict[int, MemoryRecord]:
        rows = self._rows(f"SELECT rowid, {codec.COLS} FROM memories WHERE rowid IN "
                          f"({_q(len(rowids))})", rowids)
        return {r[0]: codec.record(r[1:]) for r in rows}

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, Vector]:
        out: dict[str, Vector] = {}
        for chunk in codec.chunks(list(ids)):
            rows = self._rows(
                "SELECT m.id, v.vec FROM memories m JOIN memory_vectors v "
                f"ON v.memory_rowid = m.rowid WHERE m.tenant = ? AND m.id IN ({_q(len(chunk))})",
                (tenant, *chunk))
            out.update((r[0], np.frombuffer(r[1], dtype=np.float32)) for r in rows)
        return out

    def history(self, tenant: str, memory_id: str) -> list[HistoryEvent]:
        rows = self._rows(f"SELECT {codec.HIST_COLS} FROM history WHERE tenant = ? "
                          "AND memory_id = ? ORDER BY rowid", (tenant, memory_id))
        return [codec.event(r) for r in rows]

    def iter_history(self, tenant: str) -> Iterator[HistoryEvent]:
        rows = self._rows(f"SELECT {codec.HIST_COLS} FROM history WHERE tenant = ? ORDER BY rowid",
                          (tenant,))
        return (codec.event(r) for r in rows)

    def messages(self, scope: Scope, *, limit: int | None = None, offset: int = 0,
                 include_deleted: bool = False) -> list[Message]:
        where, params = self._messages_where(scope, include_deleted)
        rows = self._rows(f"SELECT {codec.MSG_COLS} FROM messages WHERE {where} "
                          "ORDER BY event_time, rowid LIMIT ? OFFSET ?",
                          (*params, -1 if limit is None else limit, offset))
        return [codec.message(r) for r in rows]

    def claim_job(self, tenant: str, job_id: str, now: datetime,
                  stale_before: datetime) -> Job | None:
        with self._tx() as db:
            row = db.execute(
                f"UPDATE jobs SET status = 'running', updated_at = ? WHERE tenant = ? AND id = ? "
                "AND (status = 'pending' OR (status = 'running' AND updated_at < ?)) "
                f"RETURNING {codec.JOB_COLS}",
                (to_text(now), tenant, job_id, to_text(stale_before))).fetchone()
        return codec.job(row) if row else None

    def find_jobs(self, tenant: str, *, statuses: Sequence[str] | None = None,
                  limit: int = 100) -> list[Job]:
        where, params = "tenant = ?", [tenant]
        if statuses is not None:
            where += f" AND status IN ({_q(len(statuses))})"
            params += list(statuses)
        rows = self._rows(f"SELECT {codec.JOB_COLS} FROM jobs WHERE {where} "
                          "ORDER BY created_at, id LIMIT ?", (*params, limit))
        return [codec.job(r) for r in rows]

    def recent_messages(self, scope: Scope, limit: int) -> list[Message]:
        where, params = self._conversation_where(scope)
        rows = self._rows(
            f"SELECT {codec.MSG_COLS} FROM messages WHERE {where} "
            "ORDER BY event_time DESC, rowid DESC LIMIT ?", (*params, limit))
        return [codec.message(r) for r in rows]

    def tenants(self) -> list[str]:
        rows = self._rows("SELECT tenant FROM memories UNION SELECT tenant FROM messages")
        return sorted(r[0] for r in rows)

    # --- forgetting ----------------------------------------------------------------------

    def erase(self, scope: Scope, *, wait: float | None = None) -> EraseCounts:
        """Delete a scope for good (rows, vectors, history, keys, jobs, this process's
        indexes), then make its bytes leave the files (``sqlite_erase``)."""
        where, params = self._scope_where(scope)
        with self._lock:
            try:
                with self._tx() as db:
                    counts = erase_rows(db, where, params)
                    self._mark_pending(db)
            except sqlite3.Error as exc:
                raise StoreError(f"erase failed on {self.path}, nothing erased: {exc}") from exc
            finally:
                self._drop_indexes()
            return self._verified(counts, wait)

    def reset(self) -> None:
        with self._lock:
            try:
                with self._tx() as db:
                    counts = erase_all(db)
                    self._mark_pending(db)
            finally:
                self._drop_indexes()
            self._verified(counts, None)

    def _mark_pending(self, db: sqlite3.Connection) -> None:
        if self._on_disk:  # with the deletion itself: a crash before the check keeps it
            mark_pending(db)

    def _verified(self, counts: EraseCounts, wait: float | None) -> EraseCounts:
        """``counts`` with what the completion of the erasure verified; raises
        ``ErasurePendingError`` if another connection keeps the erased bytes in the files."""
        if not self._on_disk:
            return counts
        wait = self.erase_wait if wait is None else wait
        try:
            truncated, clean = self._complete_erasure(wait)
        except sqlite3.Error as exc:
            raise StoreError(f"the rows are erased from {self.path}, but checking that their "
                             f"bytes left the file failed: {exc}") from exc
        result = replace(counts, wal_truncated=truncated, verified_clean=clean)
        if not clean:
            raise ErasurePendingError(pending_message(self.path, result, wait), result)
        return result

    def _complete_erasure(self, wait: float) -> tuple[bool, bool]:
        """Overwrite free space that writers without ``secure_delete`` left, checkpoint and
        truncate the log, and clear the pending mark if that verified everything. Whether
        the log was truncated, and whether the file is verified clean."""
        with self._lock:
            zeroed = self._zero_free_space()
            truncated = checkpoint(self._db, self.path, wait, self._busy_ms)
            if zeroed and truncated:
                with self._tx() as db:
                    clear_pending(db, self.path)
                checkpoint(self._db, self.path, 0.0, self._busy_ms)  # the mark's own page
        return truncated, zeroed and truncated

    def _zero_free_space(self) -> bool:
        """Overwrite the free space a writer without ``secure_delete`` may have left: once
        per file (``VACUUM`` rewrites it), or again if this connection's was turned off.
        False if another connection's lock kept ``VACUUM`` from running."""
        if secure_delete_on(self._db) and self.get_meta(FREE_SPACE) == "zeroed":
            return True
        self._db.execute("PRAGMA secure_delete = ON")
        try:
            self._db.execute("VACUUM")
        except sqlite3.OperationalError:  # locked: the next completion tries again
            return False
        self.set_meta(FREE_SPACE, "zeroed")
        return True

    def _complete_pending(self) -> None:
        """At open: finish an erasure a reader kept pending, if it has ended (no waiting)."""
        if self._on_disk and self.get_meta(PENDING_ERASURE) is not None:
            with contextlib.suppress(StoreError, sqlite3.Error):
                self._complete_erasure(0.0)


# --- row conversion ----------------------------------------------------------------------


def _q(n: int) -> str:
    return ", ".join("?" * n)



