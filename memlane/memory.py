"""``Memory``: the library's front door. Every interface (CLI, servers) goes through it.

It checks arguments, binds them to its tenant's scope and calls the stages that do the work.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Literal, Self, cast

from . import opening, validate
from .embed.base import Embedder
from .errors import ConfigurationError
from .exchange import jsonl
from .kinds import DERIVED_KINDS, TURN
from .llm.base import LLM, NO_LLM
from .opening import default_location as default_location  # the CLI names it from here
from .read import context as packing
from .read import lookup
from .read import search as pipeline
from .read import stats as counts
from .store import RecordQuery, Store, open_store
from .store.base import EraseCounts, ScopeCounts, ScopeField, totals
from .timeutil import TimeLike, parse_time
from .types import HistoryEvent, Job, MemoryRecord, Message, Scope, SearchHit, Status
from .write import adding, ingest, upkeep
from .write.ingest import MessagesInput
from .write.jobs import Jobs


class Memory:
    """Long-term memory for agents: add what was said, search it, pack it, forget it.

    ``Memory()`` opens the embedded default (SQLite in the user data directory, the local
    MiniLM embedder). ``Memory(":memory:")`` keeps everything in the process,
    ``Memory("path/to/file.db")`` picks a file, and ``Memory(store=..., embedder=...)``
    takes constructed parts. ``read_only=True`` opens an existing SQLite file for reading:
    every write raises ``ReadOnlyError`` (as it does on a file that cannot be written).
    """

    ENGINES: ClassVar[dict[str, str]] = {"http": "memlane.remote", "https": "memlane.remote"}
    """Modules (imported by name when needed) whose ``ENGINE`` serves a location scheme."""

    def __new__(cls, location: str | Path | None = None, *args: Any, **kwargs: Any) -> Self:
        """A server's URL (http:// or https://) opens a client of it (``RemoteMemory``)."""
        scheme = str(location).partition("://")[0].lower()
        if cls is Memory and scheme in cls.ENGINES:
            engine: type[Memory] = importlib.import_module(cls.ENGINES[scheme]).ENGINE
            return cast(Self, super().__new__(engine))
        return super().__new__(cls)

    def __init__(self, location: str | Path | None = None, *, store: Store | None = None,
                 embedder: Embedder | None = None, tenant: str = "default",
                 search: str | pipeline.SearchConfig = "hybrid", llm: LLM | None = None,
                 read_only: bool = False, api_key: str | None = None) -> None:
        if store is not None and (location is not None or read_only):
            raise ConfigurationError("pass either a location (and read_only) or a store")
        if api_key is not None:
            raise ConfigurationError("api_key is for a server's URL (http:// or https://)")
        self.tenant = Scope(tenant).tenant  # a bad tenant is refused before anything opens
        self.store: Store = store or open_store(
            default_location() if location is None else location, read_only=read_only)
        self.embedder = embedder if embedder is not None else opening.default_embedder()
        self.search_config = pipeline.resolve(search, pipeline.RECIPES["hybrid"])
        self.llm = llm
        self._pool = pipeline.Pool()  # shared with every tenant view, like the jobs
        self._jobs = Jobs(self.store, self.embedder, llm, self._pool)
        self._owner = True
        opening.check_embedder(self.store, self.embedder)

    def for_tenant(self, tenant: str) -> Memory:
        """The same memory (store, embedder, LLM, search recipe) seen by another tenant.

        A view is cheap and holds nothing of its own: closing it does nothing; closing the
        ``Memory`` it came from closes the store and stops every view's background jobs.
        """
        view = copy.copy(self)
        view.tenant = Scope(tenant).tenant
        view._owner = False
        return view

    def close(self) -> None:
        if not self._owner:
            return
        self._jobs.close()
        self._pool.close()
        self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _scope(self, user_id: str | None, agent_id: str | None,
               session_id: str | None) -> Scope:
        return Scope(self.tenant, user_id, agent_id, session_id)

    def _owned(self, memory_id: str, scope: Scope) -> MemoryRecord:
        return lookup.owned(self.store, scope, validate.memory_id(memory_id))

    def add(self, messages: MessagesInput, *, user_id: str | None = None,
            agent_id: str | None = None, session_id: str | None = None,
            timestamp: TimeLike | None = None, metadata: Mapping[str, Any] | None = None,
            idempotency_key: str | None = None,
            infer: bool | Literal["background"] = False) -> list[MemoryRecord]:
        """Keep the messages verbatim and one ``turn`` memory per message (each with a window:
        it and the two messages before it in the conversation); return the turns.

        A retry with the same ``idempotency_key`` (without one: the same scope, messages and
        timestamp) stores nothing and returns what the first call stored; the key reused for
        another add is a ``ConflictError``. ``infer=True`` has the LLM extract facts and
        reconcile them with the scope's current facts before returning (the new and changed
        facts follow the turns); ``infer="background"`` leaves that to a durable job
        (``jobs``). Concurrent adds to one conversation are rebuilt until their windows are
        right (a ``ConflictError`` if it kept changing for ``adding.ADD_PATIENCE`` seconds).
        """
        if infer and self.llm is None:
            raise ConfigurationError(f"infer needs an LLM: {NO_LLM}")
        scope = self._scope(user_id, agent_id, session_id).require_bounded("add")
        incoming = ingest.normalize(messages)
        meta = ingest.check_metadata(metadata)
        when = None if timestamp is None else parse_time(timestamp)
        validate.optional_text(idempotency_key, "idempotency_key")
        added = adding.add(self.store, self.embedder, scope, incoming, when, meta,
                           idempotency_key, bool(infer))
        return added.turns + self._jobs.after_add(self.tenant, added.job,
                                                  background=infer == "background")

    def jobs(self, *, statuses: list[str] | None = None, limit: int = 100) -> list[Job]:
        """LLM jobs of this tenant, oldest first: status, attempts, error, actions, cost."""
        statuses = validate.job_statuses(statuses)
        return self.store.find_jobs(self.tenant, statuses=statuses, limit=validate.limit(limit))

    def run_jobs(self, limit: int = 100) -> list[Job]:
        """Run pending jobs (and jobs whose worker stopped) now; return them as finished."""
        if self.llm is None:
            raise ConfigurationError(f"running jobs needs an LLM: {NO_LLM}")
        return self._jobs.run(self.tenant, validate.limit(limit))

    def wait_for_jobs(self, timeout: float = 60.0) -> bool:
        """Block until no job is pending or running; False if ``timeout`` passed first."""
        return self._jobs.wait(self.tenant, timeout)

    def update(self, memory_id: str, text: str, *, user_id: str | None = None,
               agent_id: str | None = None, session_id: str | None = None,
               metadata: Mapping[str, Any] | None = None, reason: str | None = None,
               actor: str = "user") -> MemoryRecord:
        """Replace a memory's text (and merge metadata): a new version, with a history event."""
        scope = self._scope(user_id, agent_id, session_id)
        current = validate.editable(self._owned(memory_id, scope))
        text = ingest.check_text(text, limit=ingest.MAX_MESSAGE_CHARS if current.kind == TURN
                                 else ingest.MAX_TEXT_CHARS)
        meta = ingest.check_metadata(metadata)
        return upkeep.update(self.store, self.embedder, current, text, meta, actor, reason)

    def delete(self, memory_id: str, *, user_id: str | None = None,
               agent_id: str | None = None, session_id: str | None = None,
               reason: str | None = None, actor: str = "user") -> MemoryRecord:
        """Soft-delete: the memory leaves every search and listing, its history remains.
        Deleting a turn also hides its raw message from ``messages``, ``stats`` and the
        windows of later adds.

        Use ``forget`` to erase a scope for good.
        """
        current = self._owned(memory_id, self._scope(user_id, agent_id, session_id))
        if current.status == "deleted":
            return current
        return upkeep.delete(self.store, self.embedder, current, actor, reason)

    def delete_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                   session_id: str | None = None, reason: str | None = None,
                   actor: str = "user") -> int:
        """Soft-delete every memory of one scope (and only that scope), hiding its raw
        messages as ``delete`` does; return how many."""
        scope = self._scope(user_id, agent_id, session_id).require_bounded("delete_all")
        return upkeep.delete_all(self.store, scope, actor, reason)

    def forget(self, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, wait: float | None = None) -> EraseCounts:
        """Erase a scope completely: raw messages, memories, vectors, index entries,
        history, idempotency keys and jobs; return how many rows went from each table and,
        for a SQLite file, whether it was verified free of the erased bytes. If another
        connection's read snapshot outlasts ``wait`` seconds (None: the store's default),
        ``ErasurePendingError`` says the bytes remain until the next open or ``forget``.
        """
        scope = self._scope(user_id, agent_id, session_id).require_bounded("forget")
        return self.store.erase(scope, wait=validate.wait(wait))

    def reset(self) -> None:
        """Erase everything in the store, every tenant included (verified as ``forget``
        is; ``ErasurePendingError`` likewise)."""
        self.store.reset()
        opening.check_embedder(self.store, self.embedder)

    def search(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, limit: int = 10,
               filters: Mapping[str, Any] | None = None, kinds: str | list[str] | None = None,
               as_of: TimeLike | None = None, explain: bool = False,
               recipe: str | pipeline.SearchConfig | None = None) -> list[SearchHit]:
        """Hybrid retrieval within the caller's scope, best first, scores in [0, 1]."""
        text = ingest.check_text(query, "query")
        scope = self._scope(user_id, agent_id, session_id).require_bounded("search")
        rq = validate.record_query(scope, filters, kinds, as_of)
        config = pipeline.resolve(recipe, self.search_config)
        return pipeline.run(self.store, self.embedder, config, rq, text, validate.limit(limit),
                            explain=explain, pool=self._pool)

    def get(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
            session_id: str | None = None) -> MemoryRecord:
        return self._owned(memory_id, self._scope(user_id, agent_id, session_id))

    def get_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                session_id: str | None = None, filters: Mapping[str, Any] | None = None,
                kinds: str | list[str] | None = None, as_of: TimeLike | None = None,
                statuses: list[Status] | None = None, limit: int = 100,
                offset: int = 0) -> list[MemoryRecord]:
        """Memories of a scope, oldest first, ``limit`` at a time from ``offset``."""
        scope = self._scope(user_id, agent_id, session_id).require_bounded("get_all")
        rq = validate.record_query(scope, filters, kinds, as_of, tuple(statuses or ("active",)))
        rq = replace(rq, exclude_kinds=DERIVED_KINDS) if kinds is None else rq
        offset = validate.non_negative(offset, "offset")
        return self.store.find(rq, limit=validate.limit(limit), offset=offset)

    def history(self, memory_id: str, *, user_id: str | None = None,
                agent_id: str | None = None, session_id: str | None = None,
                ) -> list[HistoryEvent]:
        """Every change to a memory, oldest first."""
        record = self._owned(memory_id, self._scope(user_id, agent_id, session_id))
        return self.store.history(self.tenant, record.id)

    def stats(self, *, user_id: str | None = None, agent_id: str | None = None,
              session_id: str | None = None) -> dict[str, Any]:
        """Counts of a scope (or, with no scope, the whole tenant): memories by kind and
        status, raw messages, LLM jobs by status, and the calls and tokens the jobs used."""
        return counts.stats(self.store, self.embedder.model_id,
                            self._scope(user_id, agent_id, session_id))

    def messages(self, *, user_id: str | None = None, agent_id: str | None = None,
                 session_id: str | None = None, limit: int | None = None,
                 offset: int = 0) -> list[Message]:
        """The raw messages of a scope, verbatim, in the order they happened.

        A message whose turn was deleted (``delete``, ``delete_all``) is left out, here and
        in ``stats``; it is kept, with the turn's history, for export until ``forget``
        erases the scope.
        """
        scope = self._scope(user_id, agent_id, session_id).require_bounded("messages")
        limit = None if limit is None else validate.non_negative(limit, "limit")
        return self.store.messages(scope, limit=limit,
                                   offset=validate.non_negative(offset, "offset"))

    def scopes(self, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, by: ScopeField | None = None,
               ) -> list[ScopeCounts]:
        """The scopes of the tenant (or within the given scope) that hold memories or raw
        messages: each user, agent and session as stored together, with how many memories
        (as ``get_all`` lists them: active, windows left out) and raw messages it holds.
        ``by="user_id"`` (or ``"agent_id"``, ``"session_id"``) sums them per that field."""
        validate.scope_field(by)
        scope = self._scope(user_id, agent_id, session_id)
        found = self.store.scopes(RecordQuery(scope, exclude_kinds=DERIVED_KINDS))
        return found if by is None else totals(found, by)

    def context(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
                session_id: str | None = None, budget_tokens: int = 1500,
                filters: Mapping[str, Any] | None = None) -> packing.Context:
        """The memories that matter for ``query``, packed into a delimited block.

        If the scope's whole history fits in the budget, all of it is returned in order.
        """
        text = ingest.check_text(query, "query")
        validate.budget(budget_tokens, packing.frame_tokens())
        scope = self._scope(user_id, agent_id, session_id).require_bounded("context")
        rq = validate.record_query(scope, filters, None, None)
        return packing.build(self.store, self.embedder, self.search_config, rq, text,
                             budget_tokens, self._pool)

    def export(self, out: IO[str], *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None) -> int:
        """Write a scope (with no scope, the whole tenant) to ``out`` as JSON lines: raw
        messages, memories of every status and their history; return the lines written."""
        return jsonl.write_export(self.store, self._scope(user_id, agent_id, session_id), out)

    def import_(self, lines: Iterable[str], *, progress: bool = False) -> jsonl.ImportReport:
        """Load an export into this tenant, a backup into a live store included.

        What is missing is written (its memories re-embedded), what is stored identically is
        skipped, and an id stored with other content (changed or deleted since the export) is
        a conflict: the stored version is kept, and the report counts and names it.
        """
        return jsonl.import_export(self.store, self.embedder, self.tenant, lines,
                                   progress=progress)
