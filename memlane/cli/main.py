"""The ``memlane`` command. JSON on stdout by default, ``--table`` for people.

Exit codes: 0 success, 1 run-time failure (for ``forget``, also an erasure left pending by
another connection's reader: the counts are printed first), 2 invalid input or usage,
3 not found, 4 conflict (retry). Settings come from flags, then the environment (``MEMLANE_DB``,
``MEMLANE_TENANT``, ``MEMLANE_EMBEDDER``; for the LLM ``MEMLANE_LLM_MODEL``,
``MEMLANE_LLM_BASE_URL`` and ``MEMLANE_LLM_API_KEY`` or ``OPENAI_API_KEY``; for a server given
as ``--db http(s)://...``, ``MEMLANE_API_KEY``), then defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypedDict

from ..embed.base import Embedder
from ..errors import (
    ConflictError,
    ErasurePendingError,
    MemlaneError,
    NotFoundError,
    UsageError,
)
from ..exchange import locomo
from ..llm.base import LLM
from ..memory import Memory, default_location
from ..store.base import ScopeField
from . import demo, evaluate, keys, mcp, serve
from .output import render_json, render_stats, render_table

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4
EMBEDDERS = ("minilm", "fake")
SCOPE_FIELD: dict[str, ScopeField] = {"user": "user_id", "agent": "agent_id",
                                      "session": "session_id"}


def _make_embedder(name: str) -> Embedder:
    from ..embed import FakeEmbedder, MiniLMEmbedder

    if name == "fake":
        return FakeEmbedder()
    return MiniLMEmbedder()


def _json_arg(text: str) -> Any:
    try:
        return _json(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _json(text: str, what: str = "the value") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply to read") from None


def _stdin() -> str:
    """Standard input as text; bytes that are not UTF-8 are an error, not replaced."""
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"standard input is not valid UTF-8: byte {data[exc.start]:#04x} "
                         f"at offset {exc.start}") from None


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def _scope_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", dest="user_id", help="user id of the scope")
    parser.add_argument("--agent", dest="agent_id", help="agent id of the scope")
    parser.add_argument("--session", dest="session_id", help="session id of the scope")


class ScopeArgs(TypedDict):
    user_id: str | None
    agent_id: str | None
    session_id: str | None


SCOPE_FLAGS = "--user, --agent, --session"


def _scope(args: argparse.Namespace) -> ScopeArgs:
    """The scope flags; for a command that needs a scope, an error naming them if none."""
    scope: ScopeArgs = {"user_id": args.user_id, "agent_id": args.agent_id,
                        "session_id": args.session_id}
    if getattr(args, "needs_scope", False) and all(v is None for v in scope.values()):
        raise UsageError(f"{args.command} needs a scope: pass at least one of {SCOPE_FLAGS}")
    return scope


# --- commands ----------------------------------------------------------------------------


def cmd_add(mem: Memory, a: argparse.Namespace) -> Any:
    messages: Any = a.text
    if a.json:
        source = _stdin() if a.text == "-" else a.text
        messages = _json(source, "the --json text")
    elif a.text == "-":
        messages = _stdin()
    if isinstance(messages, str):
        messages = [{"role": a.role, "content": messages, **({"name": a.name} if a.name else {})}]
    infer: bool | str = "background" if a.infer == "background" else a.infer == "sync"
    return mem.add(messages, **_scope(a), timestamp=a.timestamp, metadata=a.metadata,
                   idempotency_key=a.key, infer=infer)  # type: ignore[arg-type]


def cmd_search(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.search(a.query, **_scope(a), limit=a.limit, filters=a.filter, kinds=a.kind,
                      as_of=a.as_of, explain=a.explain, recipe=a.recipe)


def cmd_context(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.context(a.query, **_scope(a), budget_tokens=a.budget, filters=a.filter)


def cmd_list(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.get_all(**_scope(a), filters=a.filter, kinds=a.kind, as_of=a.as_of,
                       statuses=a.status, limit=a.limit, offset=a.offset)


def cmd_show(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.get(a.id, **_scope(a))


def cmd_history(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.history(a.id, **_scope(a))


def cmd_update(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.update(a.id, a.text, **_scope(a), metadata=a.metadata, reason=a.reason)


def cmd_delete(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.delete(a.id, **_scope(a), reason=a.reason)


def cmd_forget(mem: Memory, a: argparse.Namespace) -> Any:
    if not a.yes:
        raise UsageError("forget erases a whole scope for good; confirm with --yes")
    try:
        return {"erased": mem.forget(**_scope(a), wait=a.wait)}
    except ErasurePendingError as exc:  # say what was deleted, then fail with why
        pending = {"erased": exc.counts, "pending": True}
        print(render_table(pending) if a.table else render_json(pending))
        raise


def cmd_delete_all(mem: Memory, a: argparse.Namespace) -> Any:
    scope = _scope(a)
    if not a.yes:
        raise UsageError("delete-all deletes every memory of the scope; confirm with --yes")
    return {"deleted": mem.delete_all(**scope, reason=a.reason)}


def cmd_messages(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.messages(**_scope(a), limit=a.limit, offset=a.offset)


def cmd_scopes(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.scopes(**_scope(a), by=SCOPE_FIELD[a.by] if a.by else None)


def cmd_reset(mem: Memory, a: argparse.Namespace) -> Any:
    if not a.yes:
        raise UsageError("reset erases everything in the store, every tenant; "
                         "confirm with --yes")
    mem.reset()
    return {"reset": True}


def cmd_import(mem: Memory, a: argparse.Namespace) -> Any:
    path = Path(a.file)
    fmt = a.format
    if fmt == "auto":
        fmt = "jsonl" if path.suffix in (".jsonl", ".ndjson") else "locomo"
    if fmt == "locomo":
        conversations = locomo.load(path)
        return locomo.ingest(mem, conversations, user_prefix=a.user_prefix,
                             progress=not a.quiet)
    try:
        with path.open(encoding="utf-8") as lines:
            return mem.import_(lines, progress=not a.quiet)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc


def cmd_export(mem: Memory, a: argparse.Namespace) -> Any:
    if a.out in (None, "-"):
        mem.export(sys.stdout, **_scope(a))
        return None
    with open(a.out, "w", encoding="utf-8") as out:
        lines = mem.export(out, **_scope(a))
    return {"exported_lines": lines, "file": a.out}


def cmd_stats(mem: Memory, a: argparse.Namespace) -> Any:
    return mem.stats(**_scope(a))


def cmd_jobs(mem: Memory, a: argparse.Namespace) -> Any:
    if a.run:
        return mem.run_jobs(limit=a.limit)
    return mem.jobs(statuses=a.status, limit=a.limit)


def cmd_fake_llm(mem: Memory | None, a: argparse.Namespace) -> Any:
    from ..llm.fake import FakeOpenAIServer, replay

    try:
        answers = json.loads(Path(a.script).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read the script {a.script}: {exc}") from exc
    if not isinstance(answers, list) or not answers:
        raise UsageError("the script must be a JSON list of answers (strings or objects)")
    server = FakeOpenAIServer(replay(answers), port=a.port)
    print(f"fake OpenAI-compatible server on {server.base_url}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return None


def cmd_migrate(mem: Memory | None, a: argparse.Namespace) -> Any:
    from ..exchange.migrate import migrate
    from ..store import open_store

    source = open_store(a.source, create=False)
    try:
        target = open_store(a.target)
    except BaseException:
        source.close()
        raise
    try:
        print(render_json(migrate(source, target, progress=not a.quiet)))
    finally:
        source.close()
        target.close()
    return None


def cmd_demo(mem: Memory, a: argparse.Namespace) -> Any:
    demo.run(mem, sys.stdout)
    return None


# --- parser ------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _global_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """The options every command takes, before or after its name (after it, their default
    is SUPPRESS so that an option given before the name is not reset)."""
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument("--db", default=default, help="store location: a SQLite file path "
                       "(default: $MEMLANE_DB or the user data directory), :memory:, "
                       "postgresql://user@host/db or a server, http(s)://host:port")
    group.add_argument("--api-key", default=default, help="the key of a server given as "
                       "--db http(s)://host:port (default: $MEMLANE_API_KEY)")
    group.add_argument("--tenant", default=default,
                       help="tenant (default: $MEMLANE_TENANT or 'default')")
    flag = False if default is None else default
    group.add_argument("--read-only", action="store_true", default=flag,
                       help="open the SQLite file for reading only: every write is refused")
    group.add_argument("--embedder", choices=EMBEDDERS, default=default,
                       help="embedding model (default: $MEMLANE_EMBEDDER or minilm)")
    group.add_argument("--table", action="store_true", default=flag,
                       help="print a table instead of JSON")
    group.add_argument("--quiet", action="store_true", default=flag, help="no progress bars")


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command's parser, sub-commands (``eval locomo``) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _commands(sub)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="memlane", description="Long-term memory for LLM agents.")
    _global_options(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="what to do (memlane COMMAND --help for its options)")

    def command(name: str, handler: Callable[[Memory, argparse.Namespace], Any],
                helptext: str, scoped: bool = True,
                needs_scope: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=helptext, description=helptext)
        sp.set_defaults(handler=handler, needs_scope=needs_scope)
        if scoped:
            _scope_args(sp)
        return sp

    sp = command("add", cmd_add, "store a message (or, with --json, a list of messages)",
                 needs_scope=True)
    sp.add_argument("text", help="the message text, '-' for stdin")
    sp.add_argument("--json", action="store_true", help="TEXT is a JSON list of messages")
    sp.add_argument("--role", default="user", help="role of the message (default: user)")
    sp.add_argument("--name", help="speaker name")
    sp.add_argument("--timestamp", help="when it was said (ISO 8601)")
    sp.add_argument("--metadata", type=_json_arg, help="JSON object")
    sp.add_argument("--key", help="idempotency key")
    sp.add_argument("--infer", choices=("sync", "background"),
                    help="extract facts with the configured LLM (now, or as a queued job)")

    sp = command("search", cmd_search, "find memories", needs_scope=True)
    sp.add_argument("query", help="what to look for")
    sp.add_argument("--limit", type=int, default=10, help="at most this many hits")
    sp.add_argument("--filter", type=_json_arg, help="JSON filter (see docs/filters.md)")
    sp.add_argument("--kind", action="append", help="only this kind (repeatable)")
    sp.add_argument("--as-of", help="what was true at this time")
    sp.add_argument("--explain", action="store_true", help="show each signal's contribution")
    sp.add_argument("--recipe", help="search recipe: hybrid, bm25 or dense")

    sp = command("context", cmd_context, "pack memories for a prompt", needs_scope=True)
    sp.add_argument("query", help="what the prompt is about")
    sp.add_argument("--budget", type=int, default=1500, help="token budget")
    sp.add_argument("--filter", type=_json_arg, help="JSON filter (see docs/filters.md)")

    sp = command("list", cmd_list, "list memories of a scope", needs_scope=True)
    sp.add_argument("--filter", type=_json_arg, help="JSON filter (see docs/filters.md)")
    sp.add_argument("--kind", action="append", help="only this kind (repeatable)")
    sp.add_argument("--as-of", help="what was true at this time")
    sp.add_argument("--status", action="append", help="status to include (repeatable)")
    sp.add_argument("--limit", type=int, default=100, help="at most this many memories")
    sp.add_argument("--offset", type=int, default=0, help="skip this many first")

    for name, handler, text in (("show", cmd_show, "show one memory"),
                                ("history", cmd_history, "show a memory's history")):
        command(name, handler, text).add_argument("id", help="the memory id")

    sp = command("update", cmd_update, "change a memory's text (a new version)")
    sp.add_argument("id", help="the memory id")
    sp.add_argument("text", help="the new text")
    sp.add_argument("--metadata", type=_json_arg, help="JSON object merged into the metadata")
    sp.add_argument("--reason", help="why, kept in the history")

    sp = command("delete", cmd_delete, "delete a memory (soft; history is kept)")
    sp.add_argument("id", help="the memory id")
    sp.add_argument("--reason", help="why, kept in the history")

    sp = command("delete-all", cmd_delete_all, "delete every memory of a scope (soft; "
                 "history is kept)", needs_scope=True)
    sp.add_argument("--reason", help="why, kept in the history")
    sp.add_argument("--yes", action="store_true", help="confirm the deletion")

    sp = command("forget", cmd_forget, "erase a whole scope for good; prints the rows "
                 "removed from each table and whether the file was verified clean",
                 needs_scope=True)
    sp.add_argument("--yes", action="store_true", help="confirm the erasure")
    sp.add_argument("--wait", type=float, help="seconds to wait for other connections' "
                    "readers before reporting the erasure pending (default: 10)")

    sp = command("reset", cmd_reset, "erase everything in the store, every tenant", False)
    sp.add_argument("--yes", action="store_true", help="confirm the erasure")

    sp = command("messages", cmd_messages, "the raw messages of a scope, in order",
                 needs_scope=True)
    sp.add_argument("--limit", type=_at_least(1), default=100,
                    help="at most this many messages")
    sp.add_argument("--offset", type=_at_least(0), default=0, help="skip this many first")

    sp = command("scopes", cmd_scopes, "the users, agents and sessions in the store (or in "
                 "the given scope) with their counts of memories and raw messages")
    sp.add_argument("--by", choices=tuple(SCOPE_FIELD),
                    help="one line per user, agent or session, summed")

    sp = command("import", cmd_import, "import a memlane export (a backup restores what is "
                 "missing) or a LoCoMo file", False)
    sp.add_argument("file", help="a memlane export (.jsonl) or a LoCoMo JSON file")
    sp.add_argument("--format", choices=("auto", "jsonl", "locomo"), default="auto",
                    help="the file's format (default: by its suffix)")
    sp.add_argument("--user-prefix", default="", help="prefix for LoCoMo sample user ids")

    sp = command("export", cmd_export, "export memories with their history and raw "
                 "messages as JSON lines (all of the tenant, or the given scope)")
    sp.add_argument("--out", help="output file (default: stdout)")

    command("stats", cmd_stats, "counts by kind and status, jobs and LLM cost").set_defaults(
        render=render_stats)

    sp = command("jobs", cmd_jobs, "LLM jobs: status, errors and cost", False)
    sp.add_argument("--status", action="append", help="only this status (repeatable)")
    sp.add_argument("--limit", type=int, default=100, help="at most this many jobs")
    sp.add_argument("--run", action="store_true", help="run pending jobs now")

    sp = sub.add_parser("migrate", help="copy everything from one store to another")
    sp.add_argument("--from", dest="source", required=True, help="source store location")
    sp.add_argument("--to", dest="target", required=True,
                    help="target store location, e.g. postgresql://user@host/db")
    sp.set_defaults(handler=cmd_migrate, no_store=True)

    dev = sub.add_parser("dev", help="tools for testing code that uses memlane")
    tools = dev.add_subparsers(dest="tool", required=True, metavar="TOOL", help="the tool")
    sp = tools.add_parser("fake-llm", help="serve scripted answers as an OpenAI-compatible "
                          "endpoint on 127.0.0.1")
    sp.add_argument("--script", required=True, help="JSON list of answers, replayed in order")
    sp.add_argument("--port", type=int, default=8011, help="port on 127.0.0.1")
    sp.set_defaults(handler=cmd_fake_llm, no_store=True)

    command("demo", cmd_demo, "ingest a sample conversation and search it", False)
    evaluate.add_parser(sub)
    mcp.add_parser(sub)
    keys.add_parser(sub)
    serve.add_parser(sub)
    for command_parser in _commands(p):
        _global_options(command_parser, argparse.SUPPRESS)
    return p


def open_memory(args: argparse.Namespace, temporary: Path | None = None) -> Memory:
    """The store the command works on; evaluations get a fresh one in ``temporary``."""
    location = (str(temporary / "eval.db") if temporary is not None
                else args.db or os.environ.get("MEMLANE_DB") or str(default_location()))
    embedder = args.embedder or os.environ.get("MEMLANE_EMBEDDER") or "minilm"
    if embedder not in EMBEDDERS:
        raise UsageError(f"unknown embedder {embedder!r}; choose from {EMBEDDERS}")
    tenant = (args.tenant if args.tenant is not None
              else os.environ.get("MEMLANE_TENANT") or "default")
    if location.lower().startswith(("http://", "https://")):  # a server: its key's tenant
        return Memory(location, tenant=tenant, api_key=args.api_key, read_only=args.read_only)
    return Memory(location, embedder=_make_embedder(embedder), tenant=tenant,
                  llm=_make_llm(scripted=getattr(args, "scripted_llm", False)),
                  read_only=args.read_only and temporary is None)


def _make_llm(*, scripted: bool = False) -> LLM | None:
    """The LLM from the environment, if one is configured (the evaluation's scripted
    stand-in when asked for)."""
    if scripted:
        from ..eval.knowledge_update import scripted_llm

        return scripted_llm()
    model = os.environ.get("MEMLANE_LLM_MODEL")
    if not model:
        return None
    from ..llm.openai_compat import OpenAICompatibleLLM

    key = os.environ.get("MEMLANE_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return OpenAICompatibleLLM(model, base_url=os.environ.get("MEMLANE_LLM_BASE_URL"),
                               api_key=key)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "no_store", False):
            args.handler(None, args)
            return EXIT_OK
        with tempfile.TemporaryDirectory(prefix="memlane-") as tmp:
            scratch = Path(tmp) if getattr(args, "temporary_store", False) else None
            with open_memory(args, scratch) as mem:
                result = args.handler(mem, args)
    except UsageError as exc:
        return _fail(exc, EXIT_USAGE)
    except NotFoundError as exc:
        return _fail(exc, EXIT_NOT_FOUND)
    except ConflictError as exc:
        return _fail(exc, EXIT_CONFLICT)
    except MemlaneError as exc:
        return _fail(exc, EXIT_FAILURE)
    except OSError as exc:
        return _fail(exc, EXIT_FAILURE)
    if result is not None:
        return _emit(getattr(args, "render", render_table)(result) if args.table
                     else render_json(result))
    return EXIT_OK


def _emit(text: str) -> int:
    """Print the result; a reader that stopped early (``| head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
    return EXIT_OK


def _fail(exc: Exception, code: int) -> int:
    print(f"memlane: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
