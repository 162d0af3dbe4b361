"""Opening a SQLite store file: refuse what is not one, never create a mistyped path's
directories, and open read-only what cannot be written.

A file is opened read-only when asked to, or when it cannot be opened for writing (file
modes, an immutable file, a read-only mount) or its directory cannot hold the WAL files.
``os.access`` is not asked: it answers yes to root whatever the file system will do.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import InvalidInputError, ReadOnlyError
from .sqlite_schema import check_current, migrate

HEADER = b"SQLite format 3\x00"


def connect(path: str, *, timeout: float, read_only: bool,
            create: bool) -> tuple[sqlite3.Connection, bool]:
    """An open connection with the schema up to date, and whether it is read-only."""
    if path != ":memory:":
        check_file(Path(path), create=create and not read_only)
    try:
        if not read_only and (path == ":memory:" or _writable(path)):
            try:
                return _open_writable(path, timeout), False
            except sqlite3.OperationalError as exc:  # its directory cannot hold the WAL files
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_CANTOPEN:
                    raise
        return _open_read_only(path, timeout), True
    except sqlite3.DatabaseError as exc:
        raise InvalidInputError(f"{path} is not a memlane SQLite database: {exc}") from exc


def check_file(path: Path, *, create: bool) -> None:
    """Refuse a directory, a device, a file of other data, and a path that would need a
    file (or, worse, directories) created where none is wanted."""
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory; give a file path, such as "
                                f"{path / 'memlane.db'}")
    if path.exists():
        if not path.is_file():
            raise InvalidInputError(f"{path} is not a regular file; give a file path")
        try:
            with path.open("rb") as file:
                head = file.read(len(HEADER))
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from exc
        if head and head != HEADER:
            raise InvalidInputError(f"{path} is not a SQLite database (it holds other data); "
                                    "it was left untouched")
        return
    if not create:
        raise InvalidInputError(f"{path} does not exist: there is no store to open")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise InvalidInputError(f"cannot create {path}: the directory {folder} does not "
                                "exist (create it first if the path is right)")


def _writable(path: str) -> bool:
    """Whether the file can be opened for writing (true of a file still to be created)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    os.close(fd)
    return True


def _open_writable(path: str, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA secure_delete = ON")  # what a write frees is zeroed
        migrate(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _open_read_only(path: str, timeout: float) -> sqlite3.Connection:
    """``mode=ro``; if the WAL index cannot be created either (a directory that cannot be
    written, so that no writer can be at work), ``immutable=1``."""
    if not Path(path).exists():
        raise ReadOnlyError(f"cannot create {path}: its directory cannot be written")
    uri = Path(path).absolute().as_uri()
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        db = sqlite3.connect(uri + query, uri=True, isolation_level=None,
                             check_same_thread=False, timeout=timeout)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            check_current(db, path)
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_CANTOPEN or "immutable" in query:
                raise
        except BaseException:
            db.close()
            raise
    raise AssertionError("unreachable")


def is_read_only_error(exc: sqlite3.Error) -> bool:
    """A write refused because the database (or its directory) cannot be written."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY
