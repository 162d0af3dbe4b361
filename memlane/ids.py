"""Sortable unique ids (ULID: 48-bit milliseconds, 80 random bits, Crockford base32).

Ids made in one process are strictly increasing, so records added in one batch sort in the
order they were given.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last = (0, 0)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id() -> str:
    """A new ULID, greater than every id this process made before."""
    global _last
    with _lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_rand = _last
        if ms <= last_ms:
            ms, rand = last_ms, last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last = (ms, rand)
    return _encode(ms, 10) + _encode(rand, 16)


def derived_id(source: str, *parts: str) -> str:
    """A ULID made from ``source`` and ``parts``, the same for the same ones: the time of
    ``source`` when it is a ULID, then 80 bits of their digest."""
    digest = hashlib.sha256("\x1f".join((source, *parts)).encode("utf-8")).digest()
    is_ulid = len(source) == 26 and all(c in _ALPHABET for c in source.upper())
    return (source[:10].upper() if is_ulid else _encode(0, 10)) + _encode(
        int.from_bytes(digest[:10], "big"), 16)
