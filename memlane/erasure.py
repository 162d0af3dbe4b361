"""What an erasure removed and verified: returned by every store's ``erase`` (and so by
``Memory.forget``), and carried by ``ErasurePendingError``. It imports nothing of the
library, so the error tree can name it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EraseCounts:
    """What ``erase`` removed, table by table, and what it verified of the bytes left.

    ``wal_truncated``: every page of the write-ahead log was copied into the database file
    and the log emptied (the log held the erased text too). ``verified_clean``: the store
    checked that the erased bytes are in none of its files (freed space overwritten, log
    truncated). Both are None where the store has no such files to check: in memory, and on
    PostgreSQL, whose own WAL and data files memlane cannot inspect (see docs/postgres.md).
    """

    messages: int
    memories: int
    history: int
    vectors: int
    adds: int
    jobs: int
    wal_truncated: bool | None = None
    verified_clean: bool | None = None
