"""``Memory``: the library's front door. Every interface (CLI, servers) goes through it."""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self, cast

from .embed.base import Embedder
from .errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
)
from .exchange import jsonl
from .filters import parse
from .ids import new_id
from .llm.base import LLM
from .read import context as packing
from .read import search as pipeline
from .store import RecordQuery, RecordUpdate, Store, WriteBatch, open_store
from .store.base import (
    USAGE_KEYS,
    AddKeyReused,
    EraseCounts,
    ScopeCounts,
    ScopeField,
    StaleConversation,
    WriteOutcome,
    totals,
)
from .timeutil import TimeLike, parse_time, utcnow
from .types import (
    JOB_STATUSES,
    SCOPE_FIELDS,
    STATUSES,
    HistoryEvent,
    Job,
    MemoryRecord,
    Message,
    Scope,
    SearchHit,
    Status,
    check_unicode,
    content_hash,
    index_text,
)
from .write import infer as infer_stage
from .write import ingest, placing, windows
from .write.ingest import MessagesInput

WHOLE_HISTORY_LIMIT = 5_000
CONTEXT_CANDIDATES = 100
MIN_LINE_TOKENS = 4
JOB_LEASE = timedelta(minutes=10)
"""A running job untouched this long is taken to have lost its worker and runs again."""
"""No context line costs fewer tokens (``[1] x``), so a scope with more memories than
``budget / MIN_LINE_TOKENS`` cannot fit whole and is not tokenized whole."""
MAX_LIMIT = 1_000
ADD_PATIENCE = 30.0
"""Seconds an add is built again and again while other writers keep changing its
conversation first (as long as SQLite waits for a busy database); then ConflictError."""
MAX_OFFSET = 2**63 - 1
"""The largest offset every store can bind (a 64-bit integer)."""


def default_location() -> Path:
    """The embedded default: one SQLite file in the user data directory, which is created
    here. (The directory of any other location must exist: a mistyped path is an error.)"""
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("memlane", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "memlane.db"


class Memory:
    """Long-term memory for agents: add what was said, search it, pack it, forget it.

    ``Memory()`` opens the embedded default (SQLite in the user data directory, the local
    MiniLM embedder). ``Memory(":memory:")`` keeps everything in the process,
    ``Memory("path/to/file.db")`` picks a file, and ``Memory(store=..., embedder=...)``
    takes constructed parts. ``read_only=True`` opens an existing SQLite file for reading:
    every write raises ``ReadOnlyError`` (as it does on a file that cannot be written).
    """

    def __new__(cls, location: str | Path | None = None, *args: Any, **kwargs: Any) -> Self:
        """A server's URL (http:// or https://) opens a client of it (``RemoteMemory``)."""
        if cls is Memory and str(location).lower().startswith(("http://", "https://")):
            from .remote import RemoteMemory

            return cast(Self, super().__new__(RemoteMemory))
        return super().__new__(cls)

    def __init__(self, location: str | Path | None = None, *, store: Store | None = None,
                 embedder: Embedder | None = None, tenant: str = "default",
                 search: str | pipeline.SearchConfig = "hybrid", llm: LLM | None = None,
                 read_only: bool = False, api_key: str | None = None) -> None:
        if store is not None and (location is not None or read_only):
            raise ConfigurationError("pass either a location (and read_only) or a store")
        if api_key is not None:
            raise ConfigurationError("api_key is for a server's URL (http:// or https://)")
        tenant = Scope(tenant).tenant  # a bad tenant is refused before anything is opened
        self.store: Store = store or open_store(
            default_location() if location is None else location, read_only=read_only)
        if embedder is None:
            from .embed.onnx_minilm import MiniLMEmbedder

            embedder = MiniLMEmbedder()
        self.embedder = embedder
        self.tenant = tenant
        self.search_config = pipeline.resolve(search, pipeline.RECIPES["hybrid"])
        self.llm = llm
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()  # shared with every tenant view
        self._workers: list[threading.Thread] = []  # every view's worker, joined at close
        self._owner = True
        self._check_embedder()

    def for_tenant(self, tenant: str) -> Memory:
        """The same memory (store, embedder, LLM, search recipe) seen by another tenant.

        A view is cheap and holds nothing of its own: closing it does nothing; closing the
        ``Memory`` it came from closes the store and stops every view's background jobs.
        """
        view = copy.copy(self)
        view.tenant = Scope(tenant).tenant
        view._worker = None
        view._owner = False
        return view

    def _check_embedder(self) -> None:
        """Refuse to mix vectors of two models in one store."""
        signature = f"{self.embedder.model_id}/{self.embedder.dim}"
        stored = self.store.get_meta("embedder")
        if stored is None:
            # read-only and empty: no vectors of any model to mix up
            with contextlib.suppress(ReadOnlyError):
                self.store.set_meta("embedder", signature)
        elif stored != signature:
            raise ConfigurationError(
                f"this store holds vectors from {stored}, not {signature}: open it with the "
                "same embedder, or export and import into a new store"
            )

    # --- context manager -----------------------------------------------------------------

    def close(self) -> None:
        if not self._owner:
            return
        self._stopping.set()
        for worker in self._workers:
            worker.join()
        self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- helpers -------------------------------------------------------------------------

    def _scope(self, user_id: str | None, agent_id: str | None,
               session_id: str | None) -> Scope:
        return Scope(self.tenant, user_id, agent_id, session_id)

    def _query(self, scope: Scope, filters: Mapping[str, Any] | None,
               kinds: str | Sequence[str] | None, as_of: TimeLike | None,
               statuses: tuple[Status, ...] = ("active",)) -> RecordQuery:
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise InvalidInputError(f"unknown status(es) {bad}; use {STATUSES}")
        return RecordQuery(
            scope=scope, filters=parse(filters), kinds=_names(kinds, "kinds"),
            statuses=statuses,
            as_of=None if as_of is None else parse_time(as_of, field="as_of"),
        )

    def _owned(self, memory_id: str, scope: Scope) -> MemoryRecord:
        """The record with that id, if it lies in the caller's scope; else NotFoundError."""
        if not isinstance(memory_id, str) or not memory_id:
            raise InvalidInputError("memory id must be a non-empty string")
        check_unicode(memory_id, "memory id")
        found = self.store.get(self.tenant, [memory_id])
        if not found or not scope.contains(found[0].tenant, found[0].user_id,
                                           found[0].agent_id, found[0].session_id):
            raise NotFoundError(f"no memory {memory_id!r} in this scope")
        return found[0]

    @staticmethod
    def _limit(limit: int) -> int:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInputError(f"limit must be an integer from 1 to {MAX_LIMIT}")
        return limit

    @staticmethod
    def _non_negative(value: int, what: str) -> int:
        """An offset (or a limit without a cap): an integer every store can bind."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_OFFSET:
            raise InvalidInputError(f"{what} must be an integer from 0 to 2**63-1")
        return value

    # --- writes --------------------------------------------------------------------------

    def add(self, messages: MessagesInput, *, user_id: str | None = None,
            agent_id: str | None = None, session_id: str | None = None,
            timestamp: TimeLike | None = None, metadata: Mapping[str, Any] | None = None,
            idempotency_key: str | None = None,
            infer: bool | Literal["background"] = False) -> list[MemoryRecord]:
        """Keep the messages verbatim and one ``turn`` memory per message; return them.

        Retrying with the same ``idempotency_key`` (or, without one, the same scope,
        messages and timestamp) stores nothing new and returns what the first call stored.
        A key names one add: using it again with other messages, another timestamp or in
        another scope raises ``ConflictError`` and stores nothing.
        With ``infer=True`` the configured LLM then extracts facts and reconciles them with
        the scope's current facts before ``add`` returns (the new and changed facts are
        returned after the turns); ``infer="background"`` returns once the turns are durable
        and leaves the work to a durable job (see ``jobs``).

        Each message also gets a window (it and the two messages before it in the
        conversation's order); concurrent adds to one conversation are rebuilt until their
        windows are right, and raise ``ConflictError`` if the conversation kept changing for
        ``ADD_PATIENCE`` seconds.
        """
        if infer and self.llm is None:
            raise ConfigurationError("infer needs an LLM: Memory(llm=OpenAICompatibleLLM(...))")
        scope = self._scope(user_id, agent_id, session_id).require_bounded("add")
        incoming = ingest.normalize(messages)
        meta = ingest.check_metadata(metadata)
        when = None if timestamp is None else parse_time(timestamp)
        if idempotency_key is not None:
            check_unicode(idempotency_key, "idempotency_key")
        fingerprint = ingest.add_key(scope, incoming, when)
        key = idempotency_key or fingerprint
        vectors = self.embedder.embed([index_text(m.content, m.name) for m in incoming],
                                      "document")
        outcome, turns, job = self._commit_add(scope, incoming, when, meta, (key, fingerprint),
                                               list(vectors), bool(infer))
        if not outcome.applied:
            stored = self.store.get(self.tenant, outcome.memory_ids)
            return [r for r in stored if r.kind not in windows.DERIVED_KINDS]
        if job is None:
            return turns
        if infer == "background":
            self._start_worker()
            return turns
        done = self._run_job(job.id)
        changed = [a["memory_id"] for a in (done.actions if done else ()) if a["action"] != "NOOP"]
        return turns + self.store.get(self.tenant, changed)

    # --- jobs ----------------------------------------------------------------------------

    def jobs(self, *, statuses: list[str] | None = None, limit: int = 100) -> list[Job]:
        """LLM jobs of this tenant, oldest first: status, attempts, error, actions, cost."""
        bad = [s for s in statuses or [] if s not in JOB_STATUSES]
        if bad:
            raise InvalidInputError(f"unknown job status(es) {bad}; use {JOB_STATUSES}")
        return self.store.find_jobs(self.tenant, statuses=statuses, limit=self._limit(limit))

    def run_jobs(self, limit: int = 100) -> list[Job]:
        """Run pending jobs (and jobs whose worker stopped) now; return them as finished."""
        if self.llm is None:
            raise ConfigurationError("running jobs needs an LLM: Memory(llm=...)")
        stale = utcnow() - JOB_LEASE
        waiting = self.store.find_jobs(self.tenant, statuses=["pending", "running"],
                                       limit=self._limit(limit))
        ran = [self._run_job(j.id) for j in waiting
               if j.status == "pending" or j.updated_at < stale]
        return [j for j in ran if j is not None]

    def wait_for_jobs(self, timeout: float = 60.0) -> bool:
        """Block until no job is pending or running; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.store.find_jobs(self.tenant, statuses=["pending", "running"], limit=1):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _run_job(self, job_id: str) -> Job | None:
        assert self.llm is not None
        now = utcnow()
        job = self.store.claim_job(self.tenant, job_id, now, now - JOB_LEASE)
        if job is None:
            return None
        return infer_stage.Inference(self.store, self.embedder, self.llm).run(job)

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="memlane-jobs", daemon=True)
            self._workers.append(self._worker)
            self._worker.start()

    def _work(self) -> None:
        while not self._stopping.is_set():
            if not self.run_jobs(limit=10):
                self._stopping.wait(0.1)

    def _commit_add(self, scope: Scope, incoming: list[ingest.Incoming], when: datetime | None,
                    meta: dict[str, Any], keys: tuple[str, str], vectors: list[windows.Vector],
                    infer: bool) -> tuple[WriteOutcome, list[MemoryRecord], Job | None]:
        """Write an add: its messages, turns, windows (and job). When another writer changed
        the conversation between the read the windows were built on and the write, the
        store refuses the batch, and the add is built again on the conversation as it is now
        (at the time it is now, if it has no timestamp of its own)."""
        key, fingerprint = keys  # the idempotency key, and the digest of what is added
        deadline = time.monotonic() + ADD_PATIENCE
        known: list[Message] = []  # the conversation's newest messages, when a write told
        while True:
            now = utcnow()
            msgs, turns = ingest.build(scope, incoming, timestamp=when, metadata=meta, now=now)
            job = infer_stage.new_job(turns, key, now) if infer else None
            placed = placing.place(self.store, self.embedder, msgs, turns, vectors, now, known)
            inserts = [*zip(turns, vectors, strict=True), *placed.inserts]
            batch = WriteBatch(
                scope=scope, add_key=key, add_fingerprint=fingerprint, messages=msgs,
                inserts=inserts,
                updates=[RecordUpdate(new, old.version, v) for old, new, v in placed.rebuilt],
                events=[*(_event(r, "add", None, r.text, "system", None) for r, _ in inserts),
                        *(_event(new, "update", old.text, new.text, "system",
                                 "a turn was added just before it")
                          for old, new, _ in placed.rebuilt)],
                jobs=[job] if job else [], after=placed.basis)
            try:
                return self.store.write(batch), turns, job
            except AddKeyReused:
                raise
            except ConflictError as exc:
                if time.monotonic() > deadline:
                    raise ConflictError(
                        f"the conversation kept changing for {ADD_PATIENCE:g} s while this "
                        "add was written; retry the add") from exc
                known = exc.newest if isinstance(exc, StaleConversation) else []

    def _refresh_windows(self, turn: MemoryRecord) -> tuple[list[RecordUpdate],
                                                            list[HistoryEvent]]:
        """New versions of the windows that show ``turn``, built from their turns as they
        are now; a deleted turn drops out, a window left with no turn is deleted."""
        source = turn.source_ids[0]
        affected = self.store.find(RecordQuery(
            turn.scope, filters=parse({"source_ids": {"contains": source}}),
            kinds=(windows.WINDOW_KIND,)))
        updates, events = [], []
        for window in affected:
            lines = self._window_lines(window, turn)
            now = utcnow()
            if lines:
                new, vector = windows.rebuilt(window, lines, now)
                updates.append(RecordUpdate(new, window.version, vector))
                events.append(_event(new, "update", window.text, new.text, "system",
                                     "a turn of this window changed"))
            else:
                new = self._deleted(window)
                updates.append(RecordUpdate(new, window.version))
                events.append(_event(new, "delete", window.text, None, "system",
                                     "every turn of this window was deleted"))
        return updates, events

    def _window_lines(self, window: MemoryRecord, changed: MemoryRecord) -> list[windows.Line]:
        lines = []
        for source in window.source_ids:
            turns = [changed] if source == changed.source_ids[0] else self.store.find(
                RecordQuery(window.scope, filters=parse({"source_ids": {"contains": source}}),
                            kinds=("turn",), statuses=("active", "superseded", "deleted")))
            live = [t for t in turns if t.status != "deleted"]
            if live:
                text = live[0].index_text
                lines.append(windows.Line(source, text, self.embedder.embed_one(text,
                                                                                "document")))
        return lines

    def update(self, memory_id: str, text: str, *, user_id: str | None = None,
               agent_id: str | None = None, session_id: str | None = None,
               metadata: Mapping[str, Any] | None = None, reason: str | None = None,
               actor: str = "user") -> MemoryRecord:
        """Replace a memory's text (and merge metadata): a new version, with a history event."""
        current = self._owned(memory_id, self._scope(user_id, agent_id, session_id))
        if current.status == "deleted":
            raise NotFoundError(f"memory {memory_id!r} is deleted")
        if current.kind in windows.DERIVED_KINDS:
            raise InvalidInputError(f"a {current.kind} is derived from other memories and "
                                    "rebuilt from them: update the turn or fact it shows")
        text = ingest.check_text(text)
        new = replace(current, text=text, hash=content_hash(text),
                      metadata={**current.metadata, **ingest.check_metadata(metadata)},
                      version=current.version + 1, updated_at=utcnow())
        vector = self.embedder.embed([new.index_text], "document")[0]
        updates, events = self._refresh_windows(new) if new.kind == "turn" else ([], [])
        self.store.write(WriteBatch(
            scope=current.scope, updates=[RecordUpdate(new, current.version, vector), *updates],
            events=[_event(new, "update", current.text, text, actor, reason), *events],
        ))
        return new

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
        new = self._deleted(current)
        updates, events = self._refresh_windows(new) if new.kind == "turn" else ([], [])
        self.store.write(WriteBatch(
            scope=current.scope, updates=[RecordUpdate(new, current.version), *updates],
            events=[_event(new, "delete", current.text, None, actor, reason), *events],
        ))
        return new

    @staticmethod
    def _deleted(record: MemoryRecord) -> MemoryRecord:
        return replace(record, status="deleted", version=record.version + 1,
                       updated_at=utcnow())

    def delete_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                   session_id: str | None = None, reason: str | None = None,
                   actor: str = "user") -> int:
        """Soft-delete every memory of one scope (and only that scope), hiding its raw
        messages as ``delete`` does; return how many."""
        scope = self._scope(user_id, agent_id, session_id).require_bounded("delete_all")
        live = self.store.find(RecordQuery(scope, statuses=("active", "superseded", "archived")))
        if not live:
            return 0
        updates, events = [], []
        for record in live:
            new = self._deleted(record)
            updates.append(RecordUpdate(new, record.version))
            events.append(_event(new, "delete", record.text, None, actor, reason))
        self.store.write(WriteBatch(scope=scope, updates=updates, events=events))
        return sum(1 for r in live if r.kind not in windows.DERIVED_KINDS)

    def forget(self, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, wait: float | None = None) -> EraseCounts:
        """Erase a scope completely: raw messages, memories, vectors, index entries,
        history, idempotency keys and jobs.

        Returns how many rows went from each table and, for a SQLite file, whether the
        write-ahead log was truncated and the file verified free of the erased bytes. If
        another connection holds a read snapshot from before the erasure for longer than
        ``wait`` seconds (None: the store's default, 10 s on SQLite), the rows stay deleted
        but their bytes are still in the file: ``ErasurePendingError`` says so (its
        ``counts`` say what was deleted), and the next open of the store or the next
        ``forget`` completes and verifies the erasure.
        """
        scope = self._scope(user_id, agent_id, session_id).require_bounded("forget")
        if wait is not None and (isinstance(wait, bool) or not isinstance(wait, int | float)
                                 or not 0 <= wait < float("inf")):
            raise InvalidInputError("wait must be a number of seconds, 0 or more")
        return self.store.erase(scope, wait=wait)

    def reset(self) -> None:
        """Erase everything in the store, every tenant included (verified as ``forget``
        is; ``ErasurePendingError`` likewise)."""
        self.store.reset()
        self._check_embedder()

    # --- reads ---------------------------------------------------------------------------

    def search(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, limit: int = 10,
               filters: Mapping[str, Any] | None = None, kinds: str | list[str] | None = None,
               as_of: TimeLike | None = None, explain: bool = False,
               recipe: str | pipeline.SearchConfig | None = None) -> list[SearchHit]:
        """Hybrid retrieval within the caller's scope, best first, scores in [0, 1]."""
        text = ingest.check_text(query, "query")
        scope = self._scope(user_id, agent_id, session_id).require_bounded("search")
        rq = self._query(scope, filters, kinds, as_of)
        config = pipeline.resolve(recipe, self.search_config)
        return pipeline.run(self.store, self.embedder, config, rq, text, self._limit(limit),
                            explain=explain)

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
        rq = self._query(scope, filters, kinds, as_of, tuple(statuses or ("active",)))
        if kinds is None:
            rq = replace(rq, exclude_kinds=windows.DERIVED_KINDS)
        offset = self._non_negative(offset, "offset")
        return self.store.find(rq, limit=self._limit(limit), offset=offset)

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
        scope = self._scope(user_id, agent_id, session_id)
        tally = self.store.tally(RecordQuery(scope, statuses=STATUSES))
        memories: dict[str, dict[str, int]] = {}
        for (kind, status), n in sorted(tally.items()):
            memories.setdefault(kind, {})[status] = n
        job_tally = self.store.tally_jobs(scope)
        jobs = {status: count for status, (count, _) in sorted(job_tally.items())}
        usage = {k: sum(u[k] for _, u in job_tally.values()) for k in USAGE_KEYS}
        return {"scope": scope.as_dict(), "store": self.store.capabilities.name,
                "embedder": self.embedder.model_id, "memories": memories,
                "messages": self.store.count_messages(scope), "jobs": jobs, "llm_usage": usage}

    def messages(self, *, user_id: str | None = None, agent_id: str | None = None,
                 session_id: str | None = None, limit: int | None = None,
                 offset: int = 0) -> list[Message]:
        """The raw messages of a scope, verbatim, in the order they happened.

        A message whose turn was deleted (``delete``, ``delete_all``) is left out, here and
        in ``stats``; it is kept, with the turn's history, for export until ``forget``
        erases the scope.
        """
        scope = self._scope(user_id, agent_id, session_id).require_bounded("messages")
        if limit is not None:
            limit = self._non_negative(limit, "limit")
        return self.store.messages(scope, limit=limit, offset=self._non_negative(offset, "offset"))

    def scopes(self, *, user_id: str | None = None, agent_id: str | None = None,
               session_id: str | None = None, by: ScopeField | None = None,
               ) -> list[ScopeCounts]:
        """The scopes of the tenant (or within the given scope) that hold memories or raw
        messages: each user, agent and session as stored together, with how many memories
        (as ``get_all`` lists them: active, windows left out) and raw messages it holds.
        ``by="user_id"`` (or ``"agent_id"``, ``"session_id"``) sums them per that field."""
        if by is not None and by not in SCOPE_FIELDS:
            raise InvalidInputError(f"by must be one of {', '.join(SCOPE_FIELDS)}, not {by!r}")
        scope = self._scope(user_id, agent_id, session_id)
        found = self.store.scopes(RecordQuery(scope, exclude_kinds=windows.DERIVED_KINDS))
        return found if by is None else totals(found, by)

    def context(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
                session_id: str | None = None, budget_tokens: int = 1500,
                filters: Mapping[str, Any] | None = None) -> packing.Context:
        """The memories that matter for ``query``, packed into a delimited block.

        If the scope's whole history fits in the budget, all of it is returned in order.
        """
        text = ingest.check_text(query, "query")
        if not isinstance(budget_tokens, int) or budget_tokens < packing.frame_tokens() + 1:
            raise InvalidInputError(
                f"budget_tokens must be an integer above {packing.frame_tokens()}"
            )
        scope = self._scope(user_id, agent_id, session_id).require_bounded("context")
        rq = self._query(scope, filters, None, None)
        history = replace(rq, exclude_kinds=windows.DERIVED_KINDS)
        total = self.store.count(history)
        if total <= WHOLE_HISTORY_LIMIT and total * MIN_LINE_TOKENS <= budget_tokens:
            whole = packing.pack_whole(self.store.find(history), budget_tokens)
            if whole is not None:
                return whole
        hits = pipeline.rank(self.store, self.embedder, self.search_config, rq, text,
                             CONTEXT_CANDIDATES)
        return packing.pack([h.memory for h in hits], budget_tokens,
                            lambda part: pipeline.shown(self.store, rq, part))

    # --- export and import ---------------------------------------------------------------

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
        return jsonl.import_export(self, lines, progress=progress)


def _event(record: MemoryRecord, op: str, old: str | None, new: str | None, actor: str,
           reason: str | None) -> HistoryEvent:
    if reason is not None:
        check_unicode(reason, "reason")
    check_unicode(actor, "actor")
    return HistoryEvent(id=new_id(), memory_id=record.id, tenant=record.tenant, op=op,
                        version=record.version, old_text=old, new_text=new, actor=actor,
                        reason=reason, at=record.updated_at)


def _names(value: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    """A string or a list of strings (one string is one name), as a tuple."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, Sequence):
        raise InvalidInputError(f"{what} must be a string or a list of strings, "
                                f"got {type(value).__name__}")
    for name in names:
        if not isinstance(name, str):
            raise InvalidInputError(f"{what} must be strings, got {name!r}")
        check_unicode(name, what)
    return tuple(names)
