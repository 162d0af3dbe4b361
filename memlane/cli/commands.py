"""The commands that work on one store: add, search, list, update, delete, forget,
import, export, statistics and jobs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ErasurePendingError, UsageError
from ..exchange.rejects import ON_ERROR
from ..memory import Memory
from ..store.base import ScopeField
from . import importing
from .output import render_import_result, render_json, render_stats, render_table
from .parser import Subparsers, add_command, at_least, json_arg, json_value, scope

SCOPE_FIELD: dict[str, ScopeField] = {"user": "user_id", "agent": "agent_id",
                                      "session": "session_id"}


def _stdin() -> str:
    """Standard input as text; bytes that are not UTF-8 are an error, not replaced."""
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"standard input is not valid UTF-8: byte {data[exc.start]:#04x} "
                         f"at offset {exc.start}") from None


def cmd_add(mem: Memory, a: argparse.Namespace) -> Any:
    messages: Any = a.text
    if a.json:
        source = _stdin() if a.text == "-" else a.text
        messages = json_value(source, "the --json text")
    elif a.text == "-":
        messages = _stdin()
    if isinstance(messages, str):
        messages = [{"role": a.role, "content": messages, **({"name": a.name} if a.name else {})}]
    infer: bool | str = "background" if a.infer == "background" else a.infer == "sync"
    return mem.add(messages, **scope(a), timestamp=a.timestamp, metadata=a.metadata,
                   idempotency_key=a.key, infer=infer)  # type: ignore[arg-type]


def cmd_search(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.search(a.query, **scope(a), limit=a.limit, filters=a.filter, kinds=a.kind,
                      as_of=a.as_of, explain=a.explain, recipe=a.recipe)


def cmd_context(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.context(a.query, **scope(a), budget_tokens=a.budget, filters=a.filter)


def cmd_list(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.get_all(**scope(a), filters=a.filter, kinds=a.kind, as_of=a.as_of,
                       statuses=a.status, limit=a.limit, offset=a.offset)


def cmd_show(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.get(a.id, **scope(a))


def cmd_history(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.history(a.id, **scope(a))


def cmd_update(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.update(a.id, a.text, **scope(a), metadata=a.metadata, reason=a.reason)


def cmd_delete(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.delete(a.id, **scope(a), reason=a.reason)


def cmd_forget(mem: Memory, a: argparse.Namespace) -> Any:
    if not a.yes:
        raise UsageError("forget erases a whole scope for good; confirm with --yes")
    try:
        return {"erased": mem.forget(**scope(a), wait=a.wait)}
    except ErasurePendingError as exc:  # say what was deleted, then fail with why
        pending = {"erased": exc.counts, "pending": True}
        print(render_table(pending) if a.table else render_json(pending))
        raise


def cmd_delete_all(mem: Memory, a: argparse.Namespace) -> Any:
    chosen = scope(a)
    if not a.yes:
        raise UsageError("delete-all deletes every memory of the scope; confirm with --yes")
    return {"deleted": mem.delete_all(**chosen, reason=a.reason)}


def cmd_messages(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.messages(**scope(a), limit=a.limit, offset=a.offset)


def cmd_scopes(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.scopes(**scope(a), by=SCOPE_FIELD[a.by] if a.by else None)


def cmd_reset(mem: Memory, a: argparse.Namespace) -> Any:
    if not a.yes:
        raise UsageError("reset erases everything in the store, every tenant; "
                         "confirm with --yes")
    mem.reset()
    return {"reset": True}


def cmd_import(mem: Memory, a: argparse.Namespace) -> Any:
    return importing.run(mem, a)


def cmd_export(mem: Memory, a: argparse.Namespace) -> Any:
    if a.out in (None, "-"):
        mem.export(sys.stdout, **scope(a))
        return None
    with open(a.out, "w", encoding="utf-8") as out:
        lines = mem.export(out, **scope(a))
    return {"exported_lines": lines, "file": a.out}


def cmd_stats(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.stats(**scope(a))


def cmd_jobs(mem: Memory, a: argparse.Namespace) -> Any:
    if a.run:
        return mem.run_jobs(limit=a.limit)
    return mem.jobs(statuses=a.status, limit=a.limit)


def register(sub: Subparsers) -> None:
    """Add the store commands to the sub-commands of ``memlane``."""
    _add(sub)
    _reads(sub)
    _changes(sub)
    _erasures(sub)
    _listings(sub)
    _exchange(sub)
    _reports(sub)


def _add(sub: Subparsers) -> None:
    sp = add_command(sub, "add", cmd_add,
                     "store a message (or, with --json, a list of messages)", needs_scope=True)
    sp.add_argument("text", help="the message text, '-' for stdin")
    sp.add_argument("--json", action="store_true", help="TEXT is a JSON list of messages")
    sp.add_argument("--role", default="user", help="role of the message (default: user)")
    sp.add_argument("--name", help="speaker name")
    sp.add_argument("--timestamp", help="when it was said (ISO 8601)")
    sp.add_argument("--metadata", type=json_arg, help="JSON object")
    sp.add_argument("--key", help="idempotency key")
    sp.add_argument("--infer", choices=("sync", "background"),
                    help="extract facts with the configured LLM (now, or as a queued job)")


def _reads(sub: Subparsers) -> None:
    sp = add_command(sub, "search", cmd_search, "find memories", needs_scope=True)
    sp.add_argument("query", help="what to look for")
    sp.add_argument("--limit", type=int, default=10, help="at most this many hits")
    sp.add_argument("--filter", type=json_arg, help="JSON filter (see docs/filters.md)")
    sp.add_argument("--kind", action="append", help="only this kind (repeatable)")
    sp.add_argument("--as-of", help="what was true at this time")
    sp.add_argument("--explain", action="store_true", help="show each signal's contribution")
    sp.add_argument("--recipe", help="search recipe: hybrid, bm25 or dense")

    sp = add_command(sub, "context", cmd_context, "pack memories for a prompt",
                     needs_scope=True)
    sp.add_argument("query", help="what the prompt is about")
    sp.add_argument("--budget", type=int, default=1500, help="token budget")
    sp.add_argument("--filter", type=json_arg, help="JSON filter (see docs/filters.md)")

    sp = add_command(sub, "list", cmd_list, "list memories of a scope", needs_scope=True)
    sp.add_argument("--filter", type=json_arg, help="JSON filter (see docs/filters.md)")
    sp.add_argument("--kind", action="append", help="only this kind (repeatable)")
    sp.add_argument("--as-of", help="what was true at this time")
    sp.add_argument("--status", action="append", help="status to include (repeatable)")
    sp.add_argument("--limit", type=int, default=100, help="at most this many memories")
    sp.add_argument("--offset", type=int, default=0, help="skip this many first")

    for name, handler, text in (("show", cmd_show, "show one memory"),
                                ("history", cmd_history, "show a memory's history")):
        add_command(sub, name, handler, text).add_argument("id", help="the memory id")


def _changes(sub: Subparsers) -> None:
    sp = add_command(sub, "update", cmd_update, "change a memory's text (a new version)")
    sp.add_argument("id", help="the memory id")
    sp.add_argument("text", help="the new text")
    sp.add_argument("--metadata", type=json_arg, help="JSON object merged into the metadata")
    sp.add_argument("--reason", help="why, kept in the history")

    sp = add_command(sub, "delete", cmd_delete, "delete a memory (soft; history is kept)")
    sp.add_argument("id", help="the memory id")
    sp.add_argument("--reason", help="why, kept in the history")

    sp = add_command(sub, "delete-all", cmd_delete_all, "delete every memory of a scope "
                     "(soft; history is kept)", needs_scope=True)
    sp.add_argument("--reason", help="why, kept in the history")
    sp.add_argument("--yes", action="store_true", help="confirm the deletion")


def _erasures(sub: Subparsers) -> None:
    sp = add_command(sub, "forget", cmd_forget, "erase a whole scope for good; prints the "
                     "rows removed from each table and whether the file was verified clean",
                     needs_scope=True)
    sp.add_argument("--yes", action="store_true", help="confirm the erasure")
    sp.add_argument("--wait", type=float, help="seconds to wait for other connections' "
                    "readers before reporting the erasure pending (default: 10)")

    sp = add_command(sub, "reset", cmd_reset, "erase everything in the store, every tenant",
                     False)
    sp.add_argument("--yes", action="store_true", help="confirm the erasure")


def _listings(sub: Subparsers) -> None:
    sp = add_command(sub, "messages", cmd_messages, "the raw messages of a scope, in order",
                     needs_scope=True)
    sp.add_argument("--limit", type=at_least(1), default=100,
                    help="at most this many messages")
    sp.add_argument("--offset", type=at_least(0), default=0, help="skip this many first")

    sp = add_command(sub, "scopes", cmd_scopes, "the users, agents and sessions in the store "
                     "(or in the given scope) with their counts of memories and raw messages")
    sp.add_argument("--by", choices=tuple(SCOPE_FIELD),
                    help="one line per user, agent or session, summed")


def _exchange(sub: Subparsers) -> None:
    sp = add_command(sub, "import", cmd_import, "import a memlane export (a backup restores "
                     "what is missing), a LoCoMo file or BEAM chats; exits with 5 if it left "
                     "out bad messages", False)
    sp.add_argument("file", help="a memlane export (.jsonl), a LoCoMo JSON file, or a BEAM "
                    "chat directory, its chat.json or a directory of chat directories")
    sp.add_argument("--format", choices=importing.FORMATS, default="auto",
                    help="the file's format (default: jsonl by its suffix, beam for a "
                         "directory or a chat.json, else locomo)")
    sp.add_argument("--user-prefix", default="",
                    help="prefix for the user ids of LoCoMo samples and BEAM chats")
    sp.add_argument("--on-error", choices=ON_ERROR, default="skip",
                    help="a bad message: leave it out and store the rest (skip, the "
                         "default), or stop there, keeping what was stored before it")
    sp.set_defaults(render=render_import_result)

    sp = add_command(sub, "export", cmd_export, "export memories with their history and raw "
                     "messages as JSON lines (all of the tenant, or the given scope)")
    sp.add_argument("--out", help="output file (default: stdout)")


def _reports(sub: Subparsers) -> None:
    add_command(sub, "stats", cmd_stats, "counts by kind and status, jobs and LLM cost"
                ).set_defaults(render=render_stats)

    sp = add_command(sub, "jobs", cmd_jobs, "LLM jobs: status, errors and cost", False)
    sp.add_argument("--status", action="append", help="only this status (repeatable)")
    sp.add_argument("--limit", type=int, default=100, help="at most this many jobs")
    sp.add_argument("--run", action="store_true", help="run pending jobs now")
