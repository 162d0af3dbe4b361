"""The HTTP connection of the remote client: one pooled ``httpx.Client`` per ``Memory``,
timeouts, retries that cannot repeat a write, and server errors raised as the library's.

Retries: a request that never reached the server (it could not connect) is sent again
whatever it is; one whose answer was lost (the connection broke after it was sent) is sent
again only when sending it twice does what sending it once does (``safe``: reads, and adds,
which carry an idempotency key). Anything else raises ``StoreError`` and says that the
request may have been applied.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import __version__
from ..errors import ConfigurationError, StoreError, missing_extra
from .errors import error_from

try:
    import httpx
except ImportError:  # pragma: no cover - the test environment has it
    raise missing_extra("httpx", "client") from None

Transport = httpx.BaseTransport
"""What carries the requests (``httpx.HTTPTransport`` by default; tests and proxies may
pass their own)."""
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors before any byte of the request reached the server."""
BACKOFF = 0.2
"""Seconds before the first retry; doubled for each next one."""


def base_url(location: str) -> str:
    """The server's URL without a trailing slash (a path prefix is kept, for a server
    behind a proxy); ``ConfigurationError`` for one that is not a plain http(s) URL."""
    try:
        url = httpx.URL(location)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"not a server URL: {location!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise ConfigurationError(f"not a server URL: {location!r}; expected "
                                 "http(s)://host:port (with an optional path)")
    return str(url).rstrip("/")


class Connection:
    """Requests to one memlane server with one key."""

    def __init__(self, url: str, api_key: str | None, *, timeout: float, retries: int,
                 transport: Transport | None = None) -> None:
        headers = {"User-Agent": f"memlane/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = url
        self.retries = retries
        self.client = httpx.Client(base_url=url, headers=headers, transport=transport,
                                   timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: bytes | Iterable[bytes] | None = None, safe: bool = False) -> Any:
        """Send one request; its JSON answer, or the server's error as the library's."""
        with self.open(method, path, params=params, body=body, safe=safe) as response:
            response.read()
            return response.json()

    @contextmanager
    def open(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: bytes | Iterable[bytes] | None = None,
             safe: bool = False) -> Iterator[httpx.Response]:
        """A successful response whose body is read by the caller (streamed)."""
        headers = {} if body is None else {
            "Content-Type": "application/json" if isinstance(body, bytes)
            else "application/x-ndjson"}  # a streamed body is an import's JSON lines
        request = self.client.build_request(method, path, params=params, content=body,
                                            headers=headers)
        response = self._send(request, safe)
        try:
            if not response.is_success:
                response.read()
                raise error_from(response)
            yield response
        except httpx.TransportError as exc:
            raise StoreError(f"the connection to the memlane server at {self.url} broke "
                             f"while reading its answer: {_reason(exc)}") from exc
        finally:
            response.close()

    def _send(self, request: httpx.Request, safe: bool) -> httpx.Response:
        if self.client.is_closed:
            raise StoreError(f"this memory of {self.url} is closed")
        attempt = 0
        while True:
            try:
                return self.client.send(request, stream=True)
            except httpx.TransportError as exc:
                sent = not isinstance(exc, NOT_SENT)
                if attempt >= self.retries or (sent and not safe) or _consumed(request):
                    raise _failure(self.url, exc, sent, safe) from exc
            time.sleep(BACKOFF * 2**attempt)
            attempt += 1


def _consumed(request: httpx.Request) -> bool:
    """A streamed body (an import) cannot be sent twice."""
    return not isinstance(request.stream, httpx.ByteStream)


def _failure(url: str, exc: httpx.TransportError, sent: bool, safe: bool) -> StoreError:
    if not sent:
        return StoreError(f"cannot reach the memlane server at {url}: {_reason(exc)}")
    outcome = "" if safe else ": it may have been applied"
    return StoreError(f"the connection to the memlane server at {url} failed after the "
                      f"request was sent ({_reason(exc)}){outcome}")


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
