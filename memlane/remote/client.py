"""``RemoteMemory``: ``Memory`` over HTTP, for a location that is a server's URL.

``Memory("http://host:8420", api_key=...)`` returns one (``Memory.__new__`` chooses it by
the location, as a file path chooses SQLite). It is a ``Memory``: the same methods, with the
same signatures, return types and errors, each one request to ``memlane serve`` (docs/
server.md), whose answers carry whole objects that are rebuilt here. What differs:

- the tenant is the key's (``tenant`` is read from the server when the memory opens);
  ``for_tenant`` of another tenant is a ``ConfigurationError``, since a key is bound to one;
- the server has the store, the embedder and the LLM: there is no ``store``, ``embedder``
  or ``llm`` attribute, and ``store=``, ``embedder=``, ``llm=``, ``read_only=`` (use a
  read-only key) and a ``search`` recipe other than the server's are refused;
- ``reset`` erases the key's tenant, not the whole store, and needs an admin key;
- ``import_`` sends the export in one request, so an export larger than the server's
  body limit (``--max-body``, 2 MiB by default) is a ``RequestTooLargeError``;
  ``progress`` shows nothing (the server does the work);
- a server that cannot be reached is a ``StoreError`` that says why.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from ..embed.base import Embedder
from ..errors import ConfigurationError, NotFoundError
from ..exchange import jsonl
from ..exchange.jsonl import import_report_from_dict
from ..llm.base import LLM
from ..memory import Memory
from ..read import context as packing
from ..read import search as pipeline
from ..serialize import (
    context_from_dict,
    erase_counts_from_dict,
    event_from_dict,
    hit_from_dict,
    job_from_dict,
    message_from_dict,
    record_from_dict,
    scope_counts_from_dict,
)
from ..store.base import EraseCounts, ScopeCounts, ScopeField, Store
from ..timeutil import TimeLike
from ..types import HistoryEvent, Job, MemoryRecord, Message, Scope, SearchHit, Status
from ..write.ingest import MessagesInput
from . import wire
from .http import Connection, Transport, base_url

API_KEY_VARIABLE = "MEMLANE_API_KEY"
TIMEOUT = 60.0
RETRIES = 2
SERVER_SIDE = frozenset({"store", "embedder", "llm", "search_config"})
JOB_POLL = 0.1


class RemoteMemory(Memory):
    """A ``Memory`` whose store is a memlane server (see the module's docstring).

    ``RemoteMemory(url, api_key=..., timeout=60.0, retries=2)`` sets what ``Memory(url)``
    leaves at its defaults: ``timeout`` is the seconds any one request may take (10 at most
    to connect), ``retries`` how many times a request is sent again after a connection
    failure that allows it (``memlane.remote.http``). Without ``api_key`` the key is read
    from ``MEMLANE_API_KEY``; a server run with ``--no-auth`` needs none.
    """

    def __init__(self, location: str | Path | None = None, *, store: Store | None = None,
                 embedder: Embedder | None = None, tenant: str = "default",
                 search: str | pipeline.SearchConfig = "hybrid", llm: LLM | None = None,
                 read_only: bool = False, api_key: str | None = None,
                 timeout: float = TIMEOUT, retries: int = RETRIES,
                 transport: Transport | None = None) -> None:
        _refuse_local_parts(store, embedder, llm, read_only, search)
        wanted = Scope(tenant).tenant
        self.url = base_url(str(location))
        if api_key is None:
            api_key = os.environ.get(API_KEY_VARIABLE) or None
        self._http = Connection(self.url, api_key, timeout=timeout, retries=retries,
                                transport=transport)
        self._owner = True
        try:
            self.key: dict[str, Any] = self._http.call("GET", "/v1/key", safe=True)
        except NotFoundError:
            self._http.close()
            raise ConfigurationError(f"{self.url} does not look like a memlane server: "
                                     "it has no /v1/key") from None
        except BaseException:
            self._http.close()
            raise
        self.tenant = self.key["tenant"]
        if wanted not in ("default", self.tenant):
            self._http.close()
            raise ConfigurationError(f"this key belongs to tenant {self.tenant!r}, not "
                                     f"{wanted!r}: the server takes the tenant from the key")

    def __getattr__(self, name: str) -> Any:
        if name in SERVER_SIDE:
            raise AttributeError(f"a remote Memory has no {name}: it is in the server at "
                                 f"{vars(self).get('url')}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def for_tenant(self, tenant: str) -> Memory:
        """This memory, if ``tenant`` is the key's; a key is bound to one tenant, so another
        tenant needs a ``Memory`` opened with one of its keys."""
        tenant = Scope(tenant).tenant
        if tenant != self.tenant:
            raise ConfigurationError(
                f"this key is bound to tenant {self.tenant!r}: for tenant {tenant!r}, open "
                f"Memory({self.url!r}, api_key=<a key of {tenant!r}>)")
        view = copy.copy(self)
        view._owner = False
        return view

    def close(self) -> None:
        if self._owner:
            self._http.close()

    # --- writes --------------------------------------------------------------------------

    def add(self, messages: MessagesInput, *, user_id: str | None = None,
            agent_id: str | None = None, session_id: str | None = None,
            timestamp: TimeLike | None = None, metadata: Mapping[str, Any] | None = None,
            idempotency_key: str | None = None,
            infer: bool | Literal["background"] = False) -> list[MemoryRecord]:
        # an add is idempotent (by its key: the caller's, this call's own, or the one the
        # server derives from a timed add's content): sending it again after a lost answer
        # is safe
        answer = self._http.call("POST", "/v1/memories", safe=True, body=wire.body(
            messages=wire.messages(messages), user_id=user_id, agent_id=agent_id,
            session_id=session_id, timestamp=wire.time(timestamp), metadata=metadata,
            idempotency_key=wire.add_key(idempotency_key, messages, timestamp), infer=infer))
        return [record_from_dict(r) for r in answer["memories"]]

    def update(self, memory_id: str, text: str, *, user_id: str | None = None,
               agent_id: str | None = None, session_id: str | None = None,
               metadata: Mapping[str, Any] | None = None, reason: str | None = None,
               actor: str = "user") -> MemoryRecord:
        answer = self._http.call("PATCH", wire.memory_path(memory_id), body=wire.body(
            text=text, user_id=user_id, agent_id=agent_id, session_id=session_id,
            metadata=metadata, reason=reason, actor=actor))
        return record_from_dict(answer)

    def delete(self, memory_id: str, *, user_id: str | None = None,
               agent_id: str | None = None, session_id: str | None = None,
               reason: str | None = None, actor: str = "user") -> MemoryRecord:
        # deleting a deleted memory answers it as it is: safe to send again
        answer = self._http.call("DELETE", wire.memory_path(memory_id), safe=True,
                                 params=wire.query(user_id=user_id, agent_id=agent_id,
                                                   session_id=session_id, reason=reason,
                                                   actor=actor))
        return record_from_dict(answer)

    def delete_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                   session_id: str | None = None, reason: str | None = None,
                   actor: str = "user") -> int:
        answer = self._http.call("DELETE", "/v1/memories", params=wire.query(
            user_id=user_id, agent_id=agent_id, session_id=session_id, reason=reason,
            actor=actor))
        return int(answer["deleted"])

    def forget(self, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, wait: float | None = None) -> EraseCounts:
        answer = self._http.call("POST", "/v1/forget", body=wire.body(
            user_id=user_id, agent_id=agent_id, session_id=session_id, wait=wait))
        return erase_counts_from_dict(answer["erased"])

    def reset(self) -> None:
        """Erase the key's tenant (an admin key's only: the server never erases another)."""
        self._http.call("POST", "/v1/reset")

    # --- jobs ----------------------------------------------------------------------------

    def jobs(self, *, statuses: list[str] | None = None, limit: int = 100) -> list[Job]:
        answer = self._http.call("GET", "/v1/jobs", safe=True,
                                 params=wire.query(statuses=statuses, limit=limit))
        return [job_from_dict(j) for j in answer["jobs"]]

    def run_jobs(self, limit: int = 100) -> list[Job]:
        answer = self._http.call("POST", "/v1/jobs/run", body=wire.body(limit=limit))
        return [job_from_dict(j) for j in answer["jobs"]]

    def wait_for_jobs(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.jobs(statuses=["pending", "running"], limit=1):
            if time.monotonic() > deadline:
                return False
            time.sleep(JOB_POLL)
        return True

    # --- reads ---------------------------------------------------------------------------

    def search(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, limit: int = 10,
               filters: Mapping[str, Any] | None = None, kinds: str | list[str] | None = None,
               as_of: TimeLike | None = None, explain: bool = False,
               recipe: str | pipeline.SearchConfig | None = None) -> list[SearchHit]:
        answer = self._http.call("POST", "/v1/search", safe=True, body=wire.body(
            query=query, user_id=user_id, agent_id=agent_id, session_id=session_id,
            limit=limit, filters=wire.filters(filters), kinds=kinds, as_of=wire.time(as_of),
            explain=explain, recipe=wire.recipe(recipe)))
        return [hit_from_dict(h) for h in answer["hits"]]

    def get(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
            session_id: str | None = None) -> MemoryRecord:
        answer = self._http.call("GET", wire.memory_path(memory_id), safe=True,
                                 params=wire.query(user_id=user_id, agent_id=agent_id,
                                                   session_id=session_id))
        return record_from_dict(answer)

    def get_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                session_id: str | None = None, filters: Mapping[str, Any] | None = None,
                kinds: str | list[str] | None = None, as_of: TimeLike | None = None,
                statuses: list[Status] | None = None, limit: int = 100,
                offset: int = 0) -> list[MemoryRecord]:
        answer = self._http.call("GET", "/v1/memories", safe=True, params=wire.query(
            user_id=user_id, agent_id=agent_id, session_id=session_id,
            filters=wire.filters_text(filters), kinds=wire.names(kinds, "kinds"),
            statuses=wire.names(statuses, "statuses"), as_of=as_of, limit=limit,
            offset=offset))
        return [record_from_dict(r) for r in answer["memories"]]

    def history(self, memory_id: str, *, user_id: str | None = None,
                agent_id: str | None = None, session_id: str | None = None,
                ) -> list[HistoryEvent]:
        answer = self._http.call("GET", wire.memory_path(memory_id, "/history"), safe=True,
                                 params=wire.query(user_id=user_id, agent_id=agent_id,
                                                   session_id=session_id))
        return [event_from_dict(e) for e in answer["events"]]

    def stats(self, *, user_id: str | None = None, agent_id: str | None = None,
              session_id: str | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = self._http.call("GET", "/v1/stats", safe=True,
                                                 params=wire.query(user_id=user_id,
                                                                   agent_id=agent_id,
                                                                   session_id=session_id))
        return answer

    def messages(self, *, user_id: str | None = None, agent_id: str | None = None,
                 session_id: str | None = None, limit: int | None = None,
                 offset: int = 0) -> list[Message]:
        answer = self._http.call("GET", "/v1/messages", safe=True, params=wire.query(
            user_id=user_id, agent_id=agent_id, session_id=session_id, limit=limit,
            offset=offset))
        return [message_from_dict(m) for m in answer["messages"]]

    def scopes(self, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, by: ScopeField | None = None,
               ) -> list[ScopeCounts]:
        answer = self._http.call("GET", "/v1/scopes", safe=True, params=wire.query(
            user_id=user_id, agent_id=agent_id, session_id=session_id, by=by))
        return [scope_counts_from_dict(s) for s in answer["scopes"]]

    def context(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
                session_id: str | None = None, budget_tokens: int = 1500,
                filters: Mapping[str, Any] | None = None) -> packing.Context:
        answer = self._http.call("POST", "/v1/context", safe=True, body=wire.body(
            query=query, user_id=user_id, agent_id=agent_id, session_id=session_id,
            budget_tokens=budget_tokens, filters=wire.filters(filters)))
        return context_from_dict(answer)

    # --- export and import ---------------------------------------------------------------

    def export(self, out: IO[str], *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None) -> int:
        """Stream the export into ``out`` line by line; return the lines written."""
        count = 0
        params = wire.query(user_id=user_id, agent_id=agent_id, session_id=session_id)
        with self._http.open("GET", "/v1/export", params=params, safe=True) as response:
            for line in wire.json_lines(response.iter_text()):
                out.write(line)
                count += 1
        return count

    def import_(self, lines: Iterable[str], *, progress: bool = False) -> jsonl.ImportReport:
        answer = self._http.call("POST", "/v1/import", body=wire.lines_body(lines))
        return import_report_from_dict(answer)


def _refuse_local_parts(store: Store | None, embedder: Embedder | None, llm: LLM | None,
                        read_only: bool, search: str | pipeline.SearchConfig) -> None:
    if store is not None or embedder is not None or llm is not None:
        raise ConfigurationError("a server URL takes no store, embedder or llm: the server "
                                 "has its own (see memlane serve)")
    if read_only:
        raise ConfigurationError("read_only opens a local file for reading; on a server, "
                                 "use a read-only key (memlane keys create --read-only)")
    if wire.recipe(search) != "hybrid":
        raise ConfigurationError("a remote Memory searches with the server's recipe; pass "
                                 "recipe= to each search instead")
