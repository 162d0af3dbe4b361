"""memlane's portable export: JSON lines holding messages, memories and their history.

Line 1 is a header (with the exported ``scope`` when the export is of one scope, not of a
whole tenant); then one ``message`` line per raw message (those of deleted turns included:
the turn's ``deleted`` status, exported with it, hides them again once imported) and one
``memory`` line per memory (every status) with its history. Vectors are not exported: an
import re-embeds with the importing store's model, so an export moves between embedders and
stores. An import into a store that already holds part of the export (a backup restored
into the live store) writes only what is missing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import IO, Any, TypeVar

from ..embed.base import Embedder
from ..errors import InvalidInputError
from ..ids import derived_id
from ..serialize import (
    event_from_dict,
    event_to_dict,
    message_from_dict,
    message_to_dict,
    record_from_dict,
    record_to_dict,
)
from ..store.base import RecordQuery, Store, WriteBatch
from ..types import (
    STATUSES,
    HistoryEvent,
    MemoryRecord,
    Message,
    Scope,
    check_unicode,
    content_hash,
)

FORMAT = "memlane-export"
VERSION = 1
PAGE = 1_000


def export_lines(store: Store, scope: Scope) -> Iterator[dict[str, Any]]:
    """The lines of an export of ``scope`` (a whole tenant when no field of it is set)."""
    header: dict[str, Any] = {"type": "header", "format": FORMAT, "version": VERSION,
                              "tenant": scope.tenant}
    if scope.is_bounded:
        header["scope"] = scope.as_dict()
    yield header
    offset = 0
    while page := store.messages(scope, limit=PAGE, offset=offset, include_deleted=True):
        yield from ({"type": "message", **message_to_dict(m)} for m in page)
        offset += len(page)
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in store.iter_history(scope.tenant):
        history[event.memory_id].append(event_to_dict(event))
    query = RecordQuery(scope, statuses=STATUSES)
    offset = 0
    while records := store.find(query, limit=PAGE, offset=offset):
        for record in records:
            yield {"type": "memory", **record_to_dict(record), "history": history[record.id]}
        offset += len(records)


def write_export(store: Store, scope: Scope, out: IO[str]) -> int:
    """Write the export of one scope; return the number of lines written."""
    count = 0
    for line in export_lines(store, scope):
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count


ScopeKey = tuple[str, str | None, str | None, str | None]
Group = tuple[list[Message], list[MemoryRecord], list[HistoryEvent]]


def read_export(lines: Iterable[str]) -> dict[ScopeKey, Group]:
    """Parse an export, grouped by scope; raise InvalidInputError on anything malformed."""
    groups: dict[ScopeKey, Group] = defaultdict(lambda: ([], [], []))
    saw_header = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        kind, row = _entry(number, raw)
        if saw_header:
            _collect(groups, number, kind, row)
        else:
            _check_header(kind, row)
            saw_header = True
    if not saw_header:
        raise InvalidInputError("empty file: not a memlane export")
    return dict(groups)


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line of an export that ``read_export`` refuses: its number, the id it names (if
    it names one) and why."""

    number: int
    id: str | None
    reason: str


def split_bad_lines(lines: Iterable[str], *, stop: bool = False) -> tuple[list[str],
                                                                          list[BadLine]]:
    """The lines of an export that ``read_export`` accepts, and those after the header it
    refuses; with ``stop``, none after the first refused line is kept. A first line that is
    no header is an InvalidInputError: the file is not an export."""
    kept: list[str] = []
    bad: list[BadLine] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if not kept:
            _check_header(*_entry(number, raw))
            kept.append(raw)
            continue
        try:
            _collect(defaultdict(lambda: ([], [], [])), number, *_entry(number, raw))
        except InvalidInputError as exc:
            bad.append(BadLine(number, _named_id(raw), str(exc)))
            if stop:
                break
            continue
        kept.append(raw)
    if not kept:
        raise InvalidInputError("empty file: not a memlane export")
    return kept, bad


def _entry(number: int, raw: str) -> tuple[Any, Any]:
    """A line's type and its other fields."""
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInputError(f"line {number} is not JSON: {exc}") from exc
    check_unicode(json.dumps(row, ensure_ascii=False), f"line {number}")  # no \ud800
    kind = row.pop("type", None) if isinstance(row, dict) else None
    return kind, row


def _check_header(kind: Any, row: Any) -> None:
    if kind != "header" or row.get("format") != FORMAT:
        raise InvalidInputError("not a memlane export (the first line is no header)")
    if row.get("version") != VERSION:
        raise InvalidInputError(f"unsupported export version {row.get('version')}")


def _collect(groups: dict[ScopeKey, Group], number: int, kind: Any, row: Any) -> None:
    if kind == "message":
        message = message_from_dict(row)
        groups[_key(message)][0].append(message)
    elif kind == "memory":
        events = [event_from_dict(e) for e in row.pop("history", [])]
        record = record_from_dict(row)
        groups[_key(record)][1].append(record)
        groups[_key(record)][2].extend(events)
    else:
        raise InvalidInputError(f"line {number}: unknown line type {kind!r}")


def _named_id(raw: str) -> str | None:
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return None
    ident = row.get("id") if isinstance(row, dict) else None
    return ident if isinstance(ident, str) else None


def _key(item: Message | MemoryRecord) -> ScopeKey:
    return (item.tenant, item.user_id, item.agent_id, item.session_id)


CONFLICT_POLICY = ("skip: an id already stored with other content (changed or deleted "
                   "since the export) keeps the stored version; nothing is overwritten")
MAX_CONFLICT_IDS = 100


@dataclass(slots=True)
class Tally:
    messages: int = 0
    memories: int = 0

    def add(self, other: Tally) -> None:
        self.messages += other.messages
        self.memories += other.memories


@dataclass(slots=True)
class ScopeImport:
    """What an import did in one scope: ``created`` when the scope held nothing before;
    ``restored`` written, ``skipped`` already stored identically, ``conflicts`` stored with
    other content (left as stored); ``history`` events written with the restored memories."""

    user_id: str | None
    agent_id: str | None
    session_id: str | None
    created: bool
    restored: Tally = field(default_factory=Tally)
    skipped: Tally = field(default_factory=Tally)
    conflicts: Tally = field(default_factory=Tally)
    history: int = 0
    reidentified: int = 0


@dataclass(slots=True)
class ImportReport:
    """The totals of an import, its conflicting ids (the first ``MAX_CONFLICT_IDS``), the
    policy applied to them, and each scope's own counts. ``reidentified``: memories
    restored under a new id, because another tenant of the store holds theirs."""

    restored: Tally
    skipped: Tally
    conflicts: Tally
    history: int
    conflict_ids: list[str]
    conflict_policy: str
    scopes: list[ScopeImport]
    reidentified: int = 0

    @classmethod
    def of(cls, scopes: list[ScopeImport], conflict_ids: list[str]) -> ImportReport:
        report = cls(Tally(), Tally(), Tally(), 0, conflict_ids[:MAX_CONFLICT_IDS],
                     CONFLICT_POLICY, scopes)
        for scope in scopes:
            report.restored.add(scope.restored)
            report.skipped.add(scope.skipped)
            report.conflicts.add(scope.conflicts)
            report.history += scope.history
            report.reidentified += scope.reidentified
        return report


def import_export(store: Store, embedder: Embedder, tenant: str, lines: Iterable[str], *,
                  progress: bool = False) -> ImportReport:
    """Load an export into ``tenant``: write what is missing (re-embedding its memories with
    ``embedder``), skip what is stored identically, and leave what is stored with other
    content as it is, reported as a conflict. Importing the same file again writes nothing."""
    from tqdm import tqdm

    groups = read_export(lines)
    renamed = _renaming(store, tenant, groups)
    everything = RecordQuery(Scope(tenant), statuses=STATUSES)
    known = {(s.user_id, s.agent_id, s.session_id) for s in store.scopes(everything)}
    scopes, conflict_ids = [], []
    for (_, user, agent, session), (messages, records, events) in tqdm(
        groups.items(), desc="import", unit="scope", disable=not progress
    ):
        scope = Scope(tenant, user, agent, session)
        done = ScopeImport(user, agent, session, created=(user, agent, session) not in known)
        group = (messages, [_renamed(r, renamed) for r in records],
                 [replace(e, id=renamed.get(e.id, e.id),
                          memory_id=renamed.get(e.memory_id, e.memory_id)) for e in events])
        conflict_ids += _restore(store, embedder, scope, group, done, set(renamed.values()))
        scopes.append(done)
    return ImportReport.of(scopes, conflict_ids)


def _renaming(store: Store, tenant: str, groups: dict[ScopeKey, Group]) -> dict[str, str]:
    """The ids of the export's memories and history events that another tenant of the
    store holds, each with the id it is imported under (the same on every import)."""
    records = [r.id for _, found, _ in groups.values() for r in found]
    own = {r.id for r in store.get(tenant, records)}
    taken = store.taken_ids("memories", [i for i in records if i not in own])
    taken |= store.taken_ids("history", [e.id for _, _, found in groups.values()
                                         for e in found])
    return {old: derived_id(old, "import", tenant) for old in taken}


def _renamed(record: MemoryRecord, renamed: dict[str, str]) -> MemoryRecord:
    """The record under its new id, as are the memories it names (``superseded_by``, and
    the graph's references in its metadata)."""
    if not renamed:
        return record

    def new(value: Any) -> Any:
        if isinstance(value, str):
            return renamed.get(value, value)
        return [new(v) for v in value] if isinstance(value, list) else value

    by = record.superseded_by
    return replace(record, id=renamed.get(record.id, record.id),
                   superseded_by=None if by is None else renamed.get(by, by),
                   metadata={k: new(v) for k, v in record.metadata.items()})


def _restore(store: Store, embedder: Embedder, scope: Scope, group: Group,
             done: ScopeImport, fresh: set[str]) -> list[str]:
    """Write what of one scope's group is missing, counting into ``done`` (and the memories
    written under ``fresh`` ids); return the ids stored with other content (the
    conflicts)."""
    messages = [replace(m, tenant=scope.tenant) for m in group[0]]
    records = [replace(r, tenant=scope.tenant) for r in group[1]]
    new_messages, same_messages, clashing_messages = _sort(
        messages, {m.id: m for m in _conversation(store, scope)})
    new_records, same_records, clashing_records = _sort(
        records, {r.id: r for r in store.get(scope.tenant, [r.id for r in records])})
    done.skipped = Tally(same_messages, same_records)
    done.conflicts = Tally(len(clashing_messages), len(clashing_records))
    if new_messages or new_records:
        _write(store, embedder, scope, (new_messages, new_records, group[2]), done)
        if done.restored.memories:
            done.reidentified = sum(r.id in fresh for r in new_records)
    return clashing_messages + clashing_records


def _write(store: Store, embedder: Embedder, scope: Scope, group: Group,
           done: ScopeImport) -> None:
    """Store the missing messages and records (re-embedded) with the records' history, in
    one batch keyed by their ids, so that a concurrent import of the same lines is a no-op."""
    messages, records, events = group
    ids = {r.id for r in records}
    mine = [replace(e, tenant=scope.tenant) for e in events if e.memory_id in ids]
    vectors = embedder.embed([r.index_text for r in records], "document")
    fingerprint = content_hash(*(f"{m.id}\0{m.content}" for m in messages),
                               *(f"{r.id}\0{r.text}" for r in records))
    outcome = store.write(WriteBatch(
        scope=scope, add_key="import:" + content_hash(*(m.id for m in messages), *sorted(ids)),
        add_fingerprint=fingerprint, messages=messages,
        inserts=list(zip(records, vectors, strict=True)), events=mine,
    ))
    written = Tally(len(messages), len(records))
    if outcome.applied:
        done.restored, done.history = written, len(mine)
    else:  # a concurrent import of the same lines wrote them first
        done.skipped.add(written)


Item = TypeVar("Item", Message, MemoryRecord)


def _sort(incoming: list[Item], stored: dict[str, Item]) -> tuple[list[Item], int, list[str]]:
    """What is not stored yet, how many are stored identically, the ids stored otherwise."""
    new, same, clashing = [], 0, []
    for item in incoming:
        have = stored.get(item.id)
        if have is None:
            new.append(item)
        elif have == item:
            same += 1
        else:
            clashing.append(item.id)
    return new, same, clashing


def _conversation(store: Store, scope: Scope) -> list[Message]:
    """The raw messages of exactly this scope (a field left out must be empty, not "any"),
    those hidden by a deleted turn included."""
    exact = (scope.user_id, scope.agent_id, scope.session_id)
    return [m for m in store.messages(scope, include_deleted=True)
            if (m.user_id, m.agent_id, m.session_id) == exact]


def import_report_to_dict(report: ImportReport) -> dict[str, Any]:
    return asdict(report)


def import_report_from_dict(data: dict[str, Any]) -> ImportReport:
    def tally(value: dict[str, int]) -> Tally:
        return Tally(**value)

    try:
        scopes = [ScopeImport(**{**s, **{k: tally(s[k]) for k in ("restored", "skipped",
                                                                   "conflicts")}})
                  for s in data["scopes"]]
        return ImportReport(tally(data["restored"]), tally(data["skipped"]),
                            tally(data["conflicts"]), data["history"],
                            list(data["conflict_ids"]), data["conflict_policy"], scopes,
                            data.get("reidentified", 0))
    except (KeyError, TypeError) as exc:
        raise InvalidInputError(f"not an import report: {exc}") from exc
