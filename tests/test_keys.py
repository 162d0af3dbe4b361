"""Server keys: made and revoked with ``memlane keys``, kept as a hash, and what each allows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from memlane.auth import Principal, authenticate, hash_key, new_key
from memlane.errors import AuthenticationError, InvalidInputError, PermissionDeniedError
from memlane.store import SQLiteStore, Store
from memlane.timeutil import utcnow

from .test_cli import plain


def test_a_key_authenticates_as_its_tenant_until_revoked(store: Store) -> None:
    token, key = new_key("acme", users=["alice"], read_only=True, label="bot")
    store.put_key(key)
    assert token.startswith("mlk_") and len(token) > 40 and key.hash == hash_key(token)
    assert token not in repr(key) and key.prefix == token[:12]
    assert authenticate(store, token) == Principal("acme", ("alice",), True, False, key.id)
    for wrong in (None, "", token + "x", "mlk_" + "a" * 43):
        with pytest.raises(AuthenticationError):
            authenticate(store, wrong)
    store.revoke_key(key.id, utcnow())
    with pytest.raises(AuthenticationError):
        authenticate(store, token)


def test_new_keys_differ_and_refuse_bad_input() -> None:
    assert new_key("t")[0] != new_key("t")[0]
    with pytest.raises(InvalidInputError):
        new_key("t", users=["alice"], admin=True)
    with pytest.raises(InvalidInputError):
        new_key("")


def test_principal_rules() -> None:
    limited = Principal("acme", users=("alice",))
    limited.scoped("alice")
    for user in (None, "bob"):
        with pytest.raises(PermissionDeniedError):
            limited.scoped(user)
    with pytest.raises(PermissionDeniedError):
        limited.tenant_wide("listing jobs")
    whole = Principal("acme")
    whole.scoped(None)
    whole.tenant_wide("listing jobs")
    whole.writes("add")
    with pytest.raises(PermissionDeniedError):
        whole.administers("reset")
    with pytest.raises(PermissionDeniedError):
        Principal("acme", read_only=True).writes("add")
    Principal("acme", admin=True).administers("reset")


def test_keys_cli_prints_a_key_once_and_keeps_only_its_hash(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.db")
    made = json.loads(plain("keys", "create", "--db", db, "--tenant", "acme", "--user",
                            "alice", "--read-only", "--label", "bot").stdout)
    token = made["key"]
    assert made["tenant"] == "acme" and made["users"] == ["alice"] and made["read_only"]
    admin = json.loads(plain("keys", "create", "--db", db, "--tenant", "acme",
                             "--admin").stdout)
    listed = json.loads(plain("keys", "list", "--db", db).stdout)
    assert [k["id"] for k in listed] == [made["id"], admin["id"]]
    assert all("key" not in k and "hash" not in k for k in listed)
    assert token not in Path(db).read_bytes().decode("latin-1")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT hash FROM api_keys WHERE id = ?",
                            (made["id"],)).fetchone() == (hash_key(token),)
    revoked = json.loads(plain("keys", "revoke", made["id"], "--db", db).stdout)
    assert revoked["revoked_at"] is not None
    assert json.loads(plain("keys", "list", "--db", db, "--tenant", "other").stdout) == []
    assert "no key" in plain("keys", "revoke", "nope", "--db", db, code=3).stderr
    assert "admin" in plain("keys", "create", "--db", db, "--admin", "--user", "x",
                            code=2).stderr
    store = SQLiteStore(db)
    try:
        with pytest.raises(AuthenticationError):
            authenticate(store, token)
    finally:
        store.close()
