"""Server keys: making them, recognizing them, and what each one may do.

A key is a random token shown once (``mlk_`` and 43 URL-safe characters: 256 bits from
``secrets``). The store keeps only its SHA-256 (a fast hash is enough for a secret of that
entropy; nothing can be guessed from it), and the key's id and first characters name it in
listings. A request's tenant comes only from its key (``Principal.tenant``), never from the
request. The rules a ``Principal`` enforces:

- a key limited to users must name one of them (``user_id``) in every call, and so cannot
  make tenant-wide calls (listing every job, a tenant's stats or scopes, import, export of
  the whole tenant);
- a read-only key cannot write (add, update, delete, forget, import, run jobs, reset);
- only an admin key may reset its tenant (erase all of it); an admin key cannot be limited
  to users.

This module needs nothing beyond the library: ``memlane keys`` works without the server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .errors import AuthenticationError, InvalidInputError, PermissionDeniedError
from .ids import new_id
from .store.base import ApiKey, KeyStore
from .timeutil import utcnow
from .types import Scope, check_unicode

TOKEN_PREFIX = "mlk_"
SHOWN_CHARS = 8
"""How much of a key (after its prefix) listings show, to tell keys apart."""


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_key(tenant: str, *, users: Sequence[str] = (), read_only: bool = False,
            admin: bool = False, label: str | None = None,
            now: datetime | None = None) -> tuple[str, ApiKey]:
    """A new key for ``tenant``: the secret token (to show once) and what the store keeps."""
    tenant = Scope(tenant).tenant
    for user in users:
        Scope(tenant, user)  # a user id the library would refuse is refused here too
    if admin and users:
        raise InvalidInputError("an admin key acts on the whole tenant: it cannot also be "
                                "limited to users")
    if label is not None:
        check_unicode(label, "label")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id=new_id(), tenant=tenant, hash=hash_key(token),
                    prefix=token[:len(TOKEN_PREFIX) + SHOWN_CHARS], created_at=now or utcnow(),
                    users=tuple(dict.fromkeys(users)), read_only=read_only, admin=admin,
                    label=label)
    return token, record


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a tenant, and what its key allows there."""

    tenant: str
    users: tuple[str, ...] = ()
    """The only users it may name; empty: any user of the tenant."""
    read_only: bool = False
    admin: bool = False
    key_id: str | None = None
    """None when the server runs without keys."""

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(key.tenant, key.users, key.read_only, key.admin, key.id)

    def scoped(self, user_id: str | None) -> None:
        """A call in a scope: a key limited to users must name one of them."""
        if not self.users:
            return
        if user_id is None:
            raise PermissionDeniedError("this key is limited to users: name one of them "
                                        "(user_id) in every call")
        if user_id not in self.users:
            raise PermissionDeniedError(f"this key may not act for user {user_id!r}")

    def tenant_wide(self, what: str) -> None:
        """A call over the whole tenant (every user's data)."""
        if self.users:
            raise PermissionDeniedError(f"{what} covers every user of the tenant: a key "
                                        "limited to users may not do it")

    def writes(self, what: str) -> None:
        if self.read_only:
            raise PermissionDeniedError(f"this key is read-only: it may not {what}")

    def administers(self, what: str) -> None:
        if not self.admin:
            raise PermissionDeniedError(f"{what} needs an admin key")


def authenticate(store: KeyStore, token: str | None) -> Principal:
    """The principal of a presented key; ``AuthenticationError`` for none, an unknown key or
    a revoked one (all three say the same, so a guess learns nothing)."""
    if not token:
        raise AuthenticationError("this server needs a key: send 'Authorization: Bearer "
                                  "<key>' (make one with: memlane keys create)")
    digest = hash_key(token)
    key = store.find_key(digest)
    if key is None or not hmac.compare_digest(key.hash, digest) or key.revoked_at is not None:
        raise AuthenticationError("unknown or revoked key")
    return Principal.of(key)
