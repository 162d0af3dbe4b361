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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import (
    ConflictError,
    ErasurePendingError,
    InvalidInputError,
    ReadOnlyError,
    StoreError,
)
from ..timeutil import to_text
from ..types import Job, MemoryRecord, Message, Scope
from . import rows as codec
from .base import (
    ApiKey,
    EraseCounts,
    RecordQuery,
    StoreCapabilities,
    Vector,
    WriteBatch,
    WriteOutcome,
    check_add_key_reuse,
    check_basis,
    released,
)
from .derived import DerivedIndex
from .sql_keys import insert_sql, key_by_id, key_row, revoke_sql
from .sql_reads import SQLReads, scope_where
from .sql_store import SQLStore
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
from .sqlite_sql import DIALECT

NEXT_SEQ = "(SELECT coalesce(max(seq), 0) + 1 FROM memories)"
"""The ``seq`` of a row a write inserts or changes (writes are serialized: it is unique)."""


class SQLiteStore(SQLStore):
    """A memlane store in one SQLite file (or ``:memory:`` for a private database)."""

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
        self._lock = threading.RLock()  # the connection's, and so the index's (``_rows``)
        self._writes = 0
        reads = SQLReads(DIALECT, self._rows, self._generation)
        super().__init__(reads, DerivedIndex(reads, query_cache_rows=query_cache_rows,
                                             lock=self._lock))
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
                self._finish_job(db, batch)
                self._insert_messages(db, batch.messages)
                self._insert_records(db, batch.inserts)
                self._apply_updates(db, batch)
                db.executemany(f"INSERT INTO history ({codec.HIST_COLS}) VALUES ({_q(10)})",
                               [codec.event_row(e) for e in batch.events])
                db.executemany(f"INSERT INTO jobs ({codec.JOB_COLS}) VALUES ({_q(14)})",
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
        """The ids stored by the add of ``batch.add_key`` in the batch's scope, if it was
        applied (and is this same add: else ``ConflictError``)."""
        row = db.execute("SELECT memory_ids, fingerprint FROM adds WHERE tenant = ? AND "
                         "user_id = ? AND agent_id = ? AND session_id = ? AND key = ?",
                         (batch.scope.tenant, *codec.scope_values(batch.scope),
                          batch.add_key)).fetchone()
        if row is None:
            return None
        check_add_key_reuse(batch, row[1])
        return tuple(json.loads(row[0]))

    def _finish_job(self, db: sqlite3.Connection, batch: WriteBatch) -> None:
        """Write the outcome of the job ``batch`` finishes, or refuse the whole batch if the
        job is no longer running under its claim (``JobReleased``)."""
        if batch.finish is not None:
            sql, params = self._reads.finish_job_sql(batch.finish, "?")
            if db.execute(sql, params).fetchone() is None:
                raise released(batch.finish.claimed)

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
            cursor = db.execute(f"INSERT INTO memories ({codec.COLS}, seq) VALUES ({_q(26)}, "
                                f"{NEXT_SEQ})", codec.record_row(record))
            rowid = cursor.lastrowid
            db.execute("INSERT INTO memory_vectors (memory_rowid, vec) VALUES (?, ?)",
                       (rowid, codec.blob(vector)))

    @staticmethod
    def _apply_updates(db: sqlite3.Connection, batch: WriteBatch) -> None:
        sets = ", ".join(f"{c.strip()} = ?" for c in codec.COLS.split(","))
        for update in batch.updates:
            record = update.record
            cursor = db.execute(
                f"UPDATE memories SET {sets}, seq = {NEXT_SEQ} WHERE id = ? AND tenant = ? AND "
                "version = ? "
                "RETURNING rowid",
                (*codec.record_row(record), record.id, record.tenant, update.expected_version),
            )
            row = cursor.fetchone()
            if row is None:
                raise ConflictError(f"memory {record.id} changed; re-read and retry")
            if update.vector is not None:
                db.execute("UPDATE memory_vectors SET vec = ? WHERE memory_rowid = ?",
                           (codec.blob(update.vector), row[0]))

    # --- reads (the shared ones are in ``SQLStore``) --------------------------------------

    def _generation(self, query: RecordQuery) -> tuple[int, int]:
        """Changes whenever any connection (this one included) commits a write."""
        return (int(self._rows("PRAGMA data_version")[0][0]), self._writes)

    def claim_job(self, tenant: str, job_id: str, now: datetime,
                  stale_before: datetime) -> Job | None:
        sql, params = self._reads.claim_job_sql(tenant, job_id, now, stale_before)
        with self._tx() as db:
            row = db.execute(sql, params).fetchone()
        return codec.job(row) if row else None

    # --- keys (``erase`` and ``reset`` keep them) -----------------------------------------

    def put_key(self, key: ApiKey) -> None:
        try:
            with self._tx() as db:
                db.execute(insert_sql("?"), key_row(key))
        except sqlite3.IntegrityError as exc:
            raise InvalidInputError(f"key {key.id!r} (or its hash) is already kept") from exc

    def revoke_key(self, key_id: str, when: datetime) -> ApiKey | None:
        with self._tx() as db:
            db.execute(revoke_sql("?"), (to_text(when), key_id))
        return key_by_id(self._rows, "?", key_id)

    # --- forgetting ----------------------------------------------------------------------

    def erase(self, scope: Scope, *, wait: float | None = None) -> EraseCounts:
        """Delete a scope for good (rows, vectors, history, keys, jobs, this process's
        indexes), then make its bytes leave the files (``sqlite_erase``)."""
        where, params = scope_where(scope, "?")
        with self._lock:
            try:
                with self._tx() as db:
                    counts = erase_rows(db, where, params)
                    self._mark_pending(db)
            except sqlite3.Error as exc:
                raise StoreError(f"erase failed on {self.path}, nothing erased: {exc}") from exc
            finally:
                self._index.clear()
            return self._verified(counts, wait)

    def reset(self) -> None:
        with self._lock:
            try:
                with self._tx() as db:
                    counts = erase_all(db)
                    self._mark_pending(db)
            finally:
                self._index.clear()
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



