"""Server keys in the SQL stores: the ``api_keys`` table's rows and queries, shared by
SQLite and PostgreSQL (each runs them in its own transactions)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ..timeutil import from_text, opt_from_text, opt_to_text, to_text
from .base import ApiKey

KEY_COLS = "id, tenant, hash, prefix, users, read_only, admin, label, created_at, revoked_at"
Reader = Callable[[str, Sequence[Any]], list[Any]]


def key_row(key: ApiKey) -> tuple[Any, ...]:
    return (key.id, key.tenant, key.hash, key.prefix, json.dumps(list(key.users)),
            int(key.read_only), int(key.admin), key.label, to_text(key.created_at),
            opt_to_text(key.revoked_at))


def key_of(row: Sequence[Any]) -> ApiKey:
    return ApiKey(id=row[0], tenant=row[1], hash=row[2], prefix=row[3],
                  users=tuple(json.loads(row[4])), read_only=bool(row[5]), admin=bool(row[6]),
                  label=row[7], created_at=from_text(row[8]),
                  revoked_at=opt_from_text(row[9]))


def insert_sql(mark: str) -> str:
    return f"INSERT INTO api_keys ({KEY_COLS}) VALUES ({', '.join([mark] * 10)})"


def revoke_sql(mark: str) -> str:
    """Sets ``revoked_at`` unless already set; parameters: the time, the key id."""
    return (f"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, {mark}) "
            f"WHERE id = {mark}")


def find_key(read: Reader, mark: str, key_hash: str) -> ApiKey | None:
    rows = read(f"SELECT {KEY_COLS} FROM api_keys WHERE hash = {mark}", (key_hash,))
    return key_of(rows[0]) if rows else None


def key_by_id(read: Reader, mark: str, key_id: str) -> ApiKey | None:
    rows = read(f"SELECT {KEY_COLS} FROM api_keys WHERE id = {mark}", (key_id,))
    return key_of(rows[0]) if rows else None


def list_keys(read: Reader, mark: str, tenant: str | None) -> list[ApiKey]:
    where, params = ("", ()) if tenant is None else (f" WHERE tenant = {mark}", (tenant,))
    rows = read(f"SELECT {KEY_COLS} FROM api_keys{where} ORDER BY created_at, id", params)
    return [key_of(r) for r in rows]
