"""``memlane keys``: make, list and revoke the server's keys (no server extra needed).

A key is printed once, when it is made; the store keeps only its hash. Keys live in the
store the server serves (``--db``), beside the memories, and outlive ``reset`` and
``forget``: they are credentials, not memories.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..auth import new_key
from ..errors import NotFoundError
from ..memory import Memory
from ..serialize import key_to_dict
from ..store import Store, open_store
from ..timeutil import utcnow
from .opening import own_store, store_location
from .output import render_json, render_table


def _store(args: argparse.Namespace, *, write: bool) -> Store:
    location = own_store(store_location(args), "keys", "--db" if args.db else "MEMLANE_DB")
    return open_store(location, read_only=not write and args.read_only, create=write)


def _tenant(args: argparse.Namespace) -> str | None:
    return args.tenant if args.tenant is not None else os.environ.get("MEMLANE_TENANT")


def _show(value: Any, args: argparse.Namespace) -> None:
    print(render_table(value) if args.table else render_json(value), flush=True)


def cmd_create(mem: Memory | None, a: argparse.Namespace) -> Any:
    token, key = new_key(_tenant(a) or "default", users=a.users or (), read_only=a.read_only,
                         admin=a.admin, label=a.label)
    store = _store(a, write=True)
    try:
        store.put_key(key)
    finally:
        store.close()
    _show({"key": token, **key_to_dict(key)}, a)
    return None


def cmd_list(mem: Memory | None, a: argparse.Namespace) -> Any:
    store = _store(a, write=False)
    try:
        _show([key_to_dict(k) for k in store.list_keys(_tenant(a))], a)
    finally:
        store.close()
    return None


def cmd_revoke(mem: Memory | None, a: argparse.Namespace) -> Any:
    store = _store(a, write=True)
    try:
        key = store.revoke_key(a.id, utcnow())
    finally:
        store.close()
    if key is None:
        raise NotFoundError(f"no key with id {a.id!r}")
    _show(key_to_dict(key), a)
    return None


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="the server's keys: create, list, revoke",
                          description="Keys for memlane serve, each bound to one tenant.")
    which = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION",
                                help="what to do with keys")
    sp = which.add_parser(
        "create", help="make a key for --tenant and print it (once)",
        description="Make a key for the tenant given by --tenant (default: $MEMLANE_TENANT "
                    "or 'default') and print it: it is shown only now. With --read-only "
                    "the key may only read.")
    sp.add_argument("--user", dest="users", action="append",
                    help="limit the key to this user (repeatable); it must name one of them "
                         "in every call")
    sp.add_argument("--admin", action="store_true",
                    help="the key may act on the whole tenant (reset)")
    sp.add_argument("--label", help="a note to recognize the key by in listings")
    sp.set_defaults(handler=cmd_create, no_store=True)
    sp = which.add_parser("list", help="list the keys (of --tenant, if given), never the "
                          "secrets", description="List keys: id, tenant, prefix, limits.")
    sp.set_defaults(handler=cmd_list, no_store=True)
    sp = which.add_parser("revoke", help="revoke a key by its id",
                          description="Revoke a key: the server refuses it from now on.")
    sp.add_argument("id", help="the key id (see memlane keys list)")
    sp.set_defaults(handler=cmd_revoke, no_store=True)
