"""Failed keys counted per client address: an address that presents ``limit`` refused keys
(401) within ``window`` seconds is refused (429, with Retry-After) on the paths that take
keys for the next ``window`` seconds, whatever key it sends, so keys cannot be guessed at
the server's full speed.

Only a request that sent credentials counts: a request without any guesses nothing and
costs no lookup. A valid key's request costs one dictionary lookup and is never counted.
An IPv6 address counts as its /64 network (what one host is usually given). In process,
like the rate limit: each server process counts on its own."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import RateLimitedError
from . import errors
from .limits import retry_after

KEYED = ("/v1", "/mcp")
"""The paths that take keys (the others, such as ``/healthz``, answer anyone)."""


def client_of(scope: Scope) -> str:
    """The address a request counts against: its client's, an IPv6 one by its /64."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def keyed(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in KEYED)


class Failures:
    """Refused keys per address. Used from the event loop only (no lock)."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._counts: dict[str, tuple[int, float]] = {}  # address -> (failures, since)
        self._locked: dict[str, float] = {}  # address -> until
        self._pruned = clock()

    def wait(self, address: str) -> float:
        """Seconds ``address`` is still locked out for (0: it is not)."""
        until = self._locked.get(address)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left > 0:
            return left
        del self._locked[address]
        return 0.0

    def failed(self, address: str) -> None:
        """One more refused key from ``address``; the ``limit``-th in a window locks it."""
        now = self._clock()
        self._prune(now)
        count, since = self._counts.get(address, (0, now))
        if now - since >= self.window:
            count, since = 0, now
        if count + 1 >= self.limit:
            self._counts.pop(address, None)
            self._locked[address] = now + self.window
        else:
            self._counts[address] = (count + 1, since)

    def _prune(self, now: float) -> None:
        """Forget windows that ended, once a window (the maps hold recent addresses only)."""
        if now - self._pruned < self.window:
            return
        self._pruned = now
        self._counts = {a: c for a, c in self._counts.items() if now - c[1] < self.window}
        self._locked = {a: until for a, until in self._locked.items() if until > now}


class Lockout:
    """ASGI: refuse a locked-out address on the keyed paths (429), and count each refused
    key (a 401 answer to a request with an ``Authorization`` header) against its address."""

    def __init__(self, app: ASGIApp, limit: int, window: float) -> None:
        self.app, self.failures = app, Failures(limit, window)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not keyed(scope["path"]):
            await self.app(scope, receive, send)
            return
        address = client_of(scope)
        wait = self.failures.wait(address)
        if wait > 0:
            refusal = RateLimitedError(f"too many refused keys from this address; retry in "
                                       f"{retry_after(wait)} s", retry_after=wait)
            await errors.memlane_error(Request(scope), refusal)(scope, receive, send)
            return
        if not any(name == b"authorization" for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.failures.failed(address)
            await send(message)

        await self.app(scope, receive, counted)
