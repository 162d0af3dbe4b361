"""What a request must look like before anything reads it: a ``Host`` the server answers
to, no ``Origin`` of another site, and a JSON body (JSON lines for an import).

Together they keep web pages out: a page in a browser can send a form or ``text/plain``
to a server on loopback (no preflight), or rebind a DNS name of its own to 127.0.0.1; none
of those gets through."""

from __future__ import annotations

from urllib.parse import urlsplit

from .limits import ASGIApp, Receive, Scope, Send, refuse

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")
WRITES = (b"POST", b"PUT", b"PATCH", b"DELETE")
JSON = "application/json"
BODY_TYPES = {"/v1/import": ("application/x-ndjson", JSON)}
"""The media types of a path's body other than JSON."""


def allowed_hosts(listen: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The Host names the server accepts: loopback names, the address it listens on
    (unless a wildcard) and ``extra`` (``*``: any)."""
    own = () if listen in WILDCARDS else (f"[{listen}]" if ":" in listen else listen,)
    return tuple(dict.fromkeys(name.lower() for name in (*LOOPBACK, *own, *extra)))


def host_name(value: str) -> str:
    """``name`` of ``name:port`` (``[v6]`` kept in brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[:value.find("]") + 1]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


class Guard:
    """Refuse a request with another Host (421), a foreign Origin (403) or a body that is
    not of its path's media type (415), as JSON errors, before the app sees it."""

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...]) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self.problem(scope)
        if problem is not None:
            await refuse(send, *problem)
            return
        await self.app(scope, receive, send)

    def allowed(self, name: str) -> bool:
        return "*" in self.hosts or name in self.hosts

    def problem(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.allowed(host_name(headers.get("host", ""))):
            return 421, "InvalidInputError", ("this server does not answer to that Host name "
                                              "(memlane serve --allowed-host adds names)")
        origin = headers.get("origin")
        if origin is not None and not self.allowed(host_name(urlsplit(origin).netloc)):
            return 403, "PermissionDeniedError", f"requests from {origin} are refused"
        if scope["method"].encode() in WRITES and _has_body(headers):
            return _media_problem(scope["path"], headers.get("content-type"))
        return None


def _has_body(headers: dict[str, str]) -> bool:
    return (headers.get("content-length", "0").strip() not in ("0", "")
            or "transfer-encoding" in headers or "content-type" in headers)


def _media_problem(path: str, content_type: str | None) -> tuple[int, str, str] | None:
    accepted = BODY_TYPES.get(path.rstrip("/"), (JSON,))
    media = (content_type or "").partition(";")[0].strip().lower()
    if media in accepted:
        return None
    return 415, "InvalidInputError", (f"the body of this request must be {accepted[0]} "
                                      f"(Content-Type), not {media or 'untyped'}")
