"""The ``/v1`` endpoints: one per library operation, each a thin call on the tenant's view
of the memory, after the key's rules (``Principal``) are checked. Responses carry whole
objects (``memlane.serialize``), so a client can rebuild the library's return values;
``answers`` describes them, and the errors each endpoint can answer, in the OpenAPI
schema."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, WithJsonSchema

from ..errors import InvalidInputError
from ..exchange.jsonl import import_report_to_dict
from ..serialize import (
    context_to_dict,
    erase_counts_to_dict,
    event_to_dict,
    hit_to_dict,
    job_to_dict,
    message_to_dict,
    record_to_dict,
    scope_counts_to_dict,
)
from ..types import JOB_STATUSES, STATUSES, Scope
from . import answers
from .answers import failing
from .schemas import (
    AddIn,
    ContextIn,
    DeleteIn,
    ForgetIn,
    Limit,
    Offset,
    RunJobsIn,
    ScopeIn,
    SearchIn,
    UpdateIn,
)
from .state import Caller, ServerState

bearer = HTTPBearer(auto_error=False, description="a key made with: memlane keys create")
CALLER = "memlane_caller"
"""Where ``Keyed`` leaves a request's caller (``request.state``)."""


class Keyed(APIRoute):
    """A route that checks the request's key before anything reads its body. (FastAPI
    reads and parses a body before it runs a route's dependencies: a request without a
    valid key would be read up to the size limit, and shown the schema's errors, 422.)"""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            state: ServerState = request.app.state.memlane
            credentials = await bearer(request)
            token = credentials.credentials if credentials else None
            setattr(request.state, CALLER, await run_in_threadpool(state.caller, token))
            return await handler(request)

        return keyed


async def caller(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    """The caller ``Keyed`` found (``credentials`` puts the key in the OpenAPI schema)."""
    found: Caller = getattr(request.state, CALLER)
    return found


Who = Annotated[Caller, Depends(caller)]
router = APIRouter(prefix="/v1", route_class=Keyed)
BODY = (413, 415, 422)
"""What a JSON body can be refused for: too large, of another media type, not JSON or not
fitting the schema."""
NDJSON = "application/x-ndjson"


class JSONLines(PlainTextResponse):
    media_type = NDJSON


def ok(content: Any) -> JSONResponse:
    return JSONResponse(content)


def scope_of(body: ScopeIn) -> dict[str, str | None]:
    return {"user_id": body.user_id, "agent_id": body.agent_id, "session_id": body.session_id}


def scoped(who: Caller, body: ScopeIn, write: str | None = None) -> dict[str, str | None]:
    """The scope of a call, once the key may act in it (and write, if ``write`` names
    what is written)."""
    if write is not None:
        who.principal.writes(write)
    who.principal.scoped(body.user_id)
    return scope_of(body)


# --- query models ------------------------------------------------------------------------


class ListQuery(ScopeIn):
    model_config = ConfigDict(extra="forbid")

    filters: str | None = None
    """A filter as JSON text (docs/filters.md)."""
    kinds: list[str] | None = None
    statuses: Annotated[list[str] | None, WithJsonSchema(
        {"type": "array", "items": {"enum": list(STATUSES)}})] = None
    as_of: str | None = None
    limit: Limit = 100
    offset: Offset = 0


class MessagesQuery(ScopeIn):
    limit: int | None = None
    offset: Offset = 0


class ScopesQuery(ScopeIn):
    by: Annotated[str | None, WithJsonSchema(
        {"enum": ["user_id", "agent_id", "session_id"]})] = None


class DeleteAllQuery(ScopeIn):
    reason: str | None = None
    actor: str = "user"


class JobsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statuses: Annotated[list[str] | None, WithJsonSchema(
        {"type": "array", "items": {"enum": list(JOB_STATUSES)}})] = None
    limit: Limit = 100


def _filters(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInputError(f"filters is not valid JSON: {exc}") from None


# --- writes ------------------------------------------------------------------------------


@router.post("/memories", summary="add: store messages and their turn memories",
             response_model=answers.Memories, responses=failing(400, 409, 502, *BODY))
def add(body: AddIn, who: Who) -> JSONResponse:
    added = who.memory.add(body.messages, **scoped(who, body, "add"), timestamp=body.timestamp,
                           metadata=body.metadata, idempotency_key=body.idempotency_key,
                           infer=body.infer)
    return ok({"memories": [record_to_dict(r) for r in added]})


@router.patch("/memories/{memory_id}", summary="update: a new version of a memory's text",
              response_model=answers.MemoryRecord,
              responses=failing(400, 404, 409, 502, *BODY))
def update(memory_id: str, body: UpdateIn, who: Who) -> JSONResponse:
    new = who.memory.update(memory_id, body.text, **scoped(who, body, "update"),
                            metadata=body.metadata, reason=body.reason, actor=body.actor)
    return ok(record_to_dict(new))


@router.delete("/memories/{memory_id}", summary="delete: soft-delete one memory",
               response_model=answers.MemoryRecord, responses=failing(400, 404, 409, 422))
def delete(memory_id: str, query: Annotated[DeleteIn, Query()], who: Who) -> JSONResponse:
    gone = who.memory.delete(memory_id, **scoped(who, query, "delete"), reason=query.reason,
                             actor=query.actor)
    return ok(record_to_dict(gone))


@router.delete("/memories", summary="delete_all: soft-delete every memory of a scope",
               response_model=answers.Deleted, responses=failing(400, 409, 422))
def delete_all(query: Annotated[DeleteAllQuery, Query()], who: Who) -> JSONResponse:
    n = who.memory.delete_all(**scoped(who, query, "delete"), reason=query.reason,
                              actor=query.actor)
    return ok({"deleted": n})


@router.post("/forget", summary="forget: erase a scope for good",
             response_model=answers.Erased, responses=failing(400, *BODY))
def forget(body: ForgetIn, who: Who) -> JSONResponse:
    counts = who.memory.forget(**scoped(who, body, "forget"), wait=body.wait)
    return ok({"erased": erase_counts_to_dict(counts)})


@router.post("/reset", summary="reset: erase the key's whole tenant (admin keys only)",
             response_model=answers.Erased, responses=failing())
def reset(who: Who) -> JSONResponse:
    who.principal.writes("reset")
    who.principal.administers("reset")
    counts = who.memory.store.erase(Scope(who.principal.tenant))
    return ok({"erased": erase_counts_to_dict(counts)})


@router.post("/import", summary="import_: load an export (JSON lines) into the tenant",
             response_model=answers.ImportReport, responses=failing(400, 413, 415),
             openapi_extra={"requestBody": {"required": True, "content": {
                 NDJSON: {"schema": {"type": "string", "description": "an export"}}}}})
async def import_(request: Request, who: Who) -> JSONResponse:
    who.principal.writes("import")
    who.principal.tenant_wide("import")
    raw = await request.body()
    try:
        lines = raw.decode("utf-8").split("\n")  # not splitlines: U+2028 is inside JSON
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"the body is not UTF-8: {exc}") from None
    report = await run_in_threadpool(who.memory.import_, lines)
    return ok(import_report_to_dict(report))


@router.post("/jobs/run", summary="run_jobs: run the tenant's waiting LLM jobs now",
             response_model=answers.Jobs, responses=failing(400, 502, *BODY))
def run_jobs(body: RunJobsIn, who: Who) -> JSONResponse:
    who.principal.writes("run jobs")
    who.principal.tenant_wide("running jobs")
    return ok({"jobs": [job_to_dict(j) for j in who.memory.run_jobs(limit=body.limit)]})


# --- reads -------------------------------------------------------------------------------


@router.get("/key", summary="the request's key: its tenant and what it may do",
            response_model=answers.Key, responses=failing())
def key(who: Who) -> JSONResponse:
    p = who.principal
    return ok({"id": p.key_id, "tenant": p.tenant, "users": list(p.users),
               "read_only": p.read_only, "admin": p.admin})


@router.post("/search", summary="search: hybrid retrieval in a scope, best first",
             response_model=answers.Hits, responses=failing(400, 502, *BODY))
def search(body: SearchIn, who: Who) -> JSONResponse:
    hits = who.memory.search(body.query, **scoped(who, body), limit=body.limit,
                             filters=body.filters, kinds=body.kinds, as_of=body.as_of,
                             explain=body.explain, recipe=body.recipe)
    return ok({"hits": [hit_to_dict(h) for h in hits]})


@router.post("/context", summary="context: memories packed into a token budget",
             response_model=answers.Context, responses=failing(400, 502, *BODY))
def context(body: ContextIn, who: Who) -> JSONResponse:
    packed = who.memory.context(body.query, **scoped(who, body),
                                budget_tokens=body.budget_tokens, filters=body.filters)
    return ok(context_to_dict(packed))


@router.get("/memories/{memory_id}", summary="get: one memory (404 outside the scope)",
            response_model=answers.MemoryRecord, responses=failing(400, 404, 422))
def get(memory_id: str, query: Annotated[ScopeIn, Query()], who: Who) -> JSONResponse:
    return ok(record_to_dict(who.memory.get(memory_id, **scoped(who, query))))


@router.get("/memories", summary="get_all: memories of a scope, oldest first, a page at a time",
            response_model=answers.Memories, responses=failing(400, 422))
def get_all(query: Annotated[ListQuery, Query()], who: Who) -> JSONResponse:
    found = who.memory.get_all(**scoped(who, query), filters=_filters(query.filters),
                               kinds=query.kinds, as_of=query.as_of,
                               statuses=query.statuses,  # type: ignore[arg-type]
                               limit=query.limit, offset=query.offset)
    return ok({"memories": [record_to_dict(r) for r in found]})


@router.get("/memories/{memory_id}/history", summary="history: every change, oldest first",
            response_model=answers.Events, responses=failing(400, 404, 422))
def history(memory_id: str, query: Annotated[ScopeIn, Query()], who: Who) -> JSONResponse:
    events = who.memory.history(memory_id, **scoped(who, query))
    return ok({"events": [event_to_dict(e) for e in events]})


@router.get("/messages", summary="messages: the raw messages of a scope, in order",
            response_model=answers.Messages, responses=failing(400, 422))
def messages(query: Annotated[MessagesQuery, Query()], who: Who) -> JSONResponse:
    found = who.memory.messages(**scoped(who, query), limit=query.limit, offset=query.offset)
    return ok({"messages": [message_to_dict(m) for m in found]})


@router.get("/stats", summary="stats: counts of a scope (or of the tenant)",
            response_model=answers.Stats, responses=failing(400, 422))
def stats(query: Annotated[ScopeIn, Query()], who: Who) -> JSONResponse:
    return ok(who.memory.stats(**scoped(who, query)))


@router.get("/scopes", summary="scopes: users, agents and sessions with their counts",
            response_model=answers.Scopes, responses=failing(400, 422))
def scopes(query: Annotated[ScopesQuery, Query()], who: Who) -> JSONResponse:
    found = who.memory.scopes(**scoped(who, query), by=query.by)  # type: ignore[arg-type]
    return ok({"scopes": [scope_counts_to_dict(s) for s in found]})


@router.get("/jobs", summary="jobs: the tenant's LLM jobs, oldest first",
            response_model=answers.Jobs, responses=failing(400, 422))
def jobs(query: Annotated[JobsQuery, Query()], who: Who) -> JSONResponse:
    who.principal.tenant_wide("listing jobs")
    found = who.memory.jobs(statuses=query.statuses, limit=query.limit)
    return ok({"jobs": [job_to_dict(j) for j in found]})


@router.get("/export", summary="export: a scope (or the tenant) as JSON lines",
            response_class=JSONLines, responses=answers.failing_in_json(400, 422))
def export(query: Annotated[ScopeIn, Query()], who: Who) -> JSONLines:
    out = io.StringIO()
    who.memory.export(out, **scoped(who, query))
    return JSONLines(out.getvalue())
