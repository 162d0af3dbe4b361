"""Request limits: body size (an ASGI middleware) and a per-key rate (token buckets)."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import RateLimitedError

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


class RateLimiter:
    """One token bucket per key: ``burst`` requests at once, refilled at ``rate`` a second.
    In process: each server process limits on its own."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, max(1, burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket, or raise ``RateLimitedError``."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                raise RateLimitedError(f"too many requests with this key; retry in "
                                       f"{wait:.2f} s", retry_after=wait)
            self._buckets[key] = (tokens - 1.0, now)


def retry_after(seconds: float) -> str:
    """The Retry-After header: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def error_bytes(kind: str, message: str) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message}}).encode()


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes with 413: at once when Content-Length
    says so, else as soon as the bytes read pass it. Then the app behind it is told the
    client left (``http.disconnect``), whatever it answers or raises is dropped, and this
    middleware sends the 413 itself."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await refuse(send, 413, "RequestTooLargeError",
                         f"the request body is larger than {self.limit} bytes")
            return
        body = _Counted(receive, send, self.limit)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.over:
                raise
        if body.over and not body.started:
            await refuse(send, 413, "RequestTooLargeError",
                         f"the request body is larger than {self.limit} bytes")


class _Counted:
    """One request's ``receive`` and ``send``, counting the body's bytes: past the limit,
    ``over`` is set, the app reads a disconnect, and its answer is not sent."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.seen, self.over, self.started = 0, False, False

    async def receive(self) -> Any:
        if self.over:
            return {"type": "http.disconnect"}
        message = await self._receive()
        self.seen += len(message.get("body", b""))
        if self.seen > self.limit:
            self.over = True
            return {"type": "http.disconnect"}
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if self.over and not self.started:
            return  # the middleware answers 413 instead
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


async def refuse(send: Send, status: int, kind: str, message: str,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer a JSON error straight from a middleware (and close the connection: the
    request's body may not have been read)."""
    body = error_bytes(kind, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})
