"""``create_app(settings)``: the REST server (FastAPI) over one ``Memory``."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import MemlaneError
from . import answers, errors
from .guard import Guard
from .jobs import JobRunner
from .limits import BodyLimit
from .lockout import Lockout
from .mcp_mount import mount
from .routes import router
from .settings import Settings
from .state import ServerState

DESCRIPTION = """Long-term memory for agents over HTTP: every operation of the `memlane`
library under `/v1`, for the tenant of the request's key (`Authorization: Bearer <key>`;
make keys with `memlane keys create`). Errors are
`{"error": {"type": <memlane error class>, "message": ...}}`. The same keys open the MCP
tools at `/mcp` (streamable HTTP; docs/mcp.md)."""


def create_app(settings: Settings) -> FastAPI:
    """The server's ASGI app; the memory is opened when it starts and closed when it stops
    (after the requests in flight are answered)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        memory = await run_in_threadpool(settings.open_memory)
        runner = JobRunner(memory, settings.job_interval) if memory.llm is not None else None
        app.state.memlane = ServerState(settings, memory)
        if runner is not None:
            runner.start()
        try:
            async with mcp_sessions():
                yield
        finally:
            if runner is not None:
                await run_in_threadpool(runner.stop)
            await run_in_threadpool(memory.close)

    app = FastAPI(title="memlane", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.auth and settings.auth_failures > 0:
        app.add_middleware(Lockout, limit=settings.auth_failures, window=settings.auth_window)
    app.add_middleware(Guard, hosts=settings.allowed_hosts)  # the outermost: first
    app.add_exception_handler(MemlaneError, errors.memlane_error)
    app.add_exception_handler(RequestValidationError, errors.invalid_request)
    app.add_exception_handler(HTTPException, errors.http_error)
    app.add_exception_handler(Exception, errors.unexpected)
    app.include_router(router)
    mcp_sessions = mount(app, settings)
    _health(app)
    _docs(app)
    return app


def _health(app: FastAPI) -> None:
    @app.get("/healthz", summary="the process is up", response_model=answers.Health)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="the store answers", response_model=answers.Ready,
             responses={503: {"model": answers.Failure,
                              "description": answers.STATUS_TEXT[503]}})
    def readyz(request: Request) -> JSONResponse:
        state: ServerState = request.app.state.memlane
        try:
            state.memory.store.get_meta("embedder")
        except MemlaneError as exc:
            message, error_id = errors.hidden(request, exc)
            return JSONResponse(errors.body("StoreError", f"the store does not answer: "
                                            f"{message}", id=error_id), 503)
        return JSONResponse({"status": "ready", "store": state.memory.store.capabilities.name})


def _docs(app: FastAPI) -> None:
    """A docs page built from the OpenAPI schema on the server itself (no scripts or
    styles fetched from elsewhere)."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()))


def render_docs(schema: dict[str, Any]) -> str:
    rows = []
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>"
                        f"{html.escape(path)}</code></td><td>"
                        f"{html.escape(op.get('summary', ''))}</td></tr>")
    info = schema.get("info", {})
    return ("<!doctype html><html><head><meta charset='utf-8'><title>memlane API</title>"
            "</head><body><h1>memlane API " + html.escape(str(info.get("version", "")))
            + "</h1><p>" + html.escape(str(info.get("description", ""))) + "</p>"
            "<p>The full schema: <a href='/openapi.json'>/openapi.json</a>.</p>"
            "<table><tr><th>method</th><th>path</th><th>what</th></tr>" + "".join(rows)
            + "</table></body></html>")
