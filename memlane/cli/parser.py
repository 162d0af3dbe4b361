"""The ``memlane`` argument parser: the options every command shares, and the way a module
adds its commands.

A module adds commands with a ``register(sub)`` function that takes the sub-parsers of
``memlane`` (``argparse``'s ``add_subparsers()``); ``main.COMMANDS`` lists those functions.
A command's parser sets ``handler``, called as ``handler(mem, args)`` with the opened
:class:`~memlane.Memory` (``add_command`` does this and adds the scope flags). Its result is
printed as JSON (or a table with ``--table``); ``None`` prints nothing. A command that opens
no store sets ``no_store=True`` and is called with ``None``; one that needs a fresh
temporary store (an evaluation) sets ``temporary_store=True``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypedDict

from ..errors import UsageError
from ..memory import Memory

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4
EXIT_PARTIAL = 5
"""A command that did part of what it was asked: an import that left out bad messages."""
EXIT_BROKEN_PIPE = 128 + 13
"""A reader that closed the output pipe: the status of a process ended by SIGPIPE."""
EMBEDDERS = ("minilm", "fake")
SCOPE_FLAGS = "--user, --agent, --session"

Handler = Callable[[Memory, argparse.Namespace], Any]
Subparsers = Any  # argparse does not name the type of add_subparsers()' result
Register = Callable[[Subparsers], None]


@dataclass(frozen=True, slots=True)
class Partial:
    """A handler's result for a command that did only part of what it was asked: printed as
    any result, then the command exits with ``EXIT_PARTIAL``."""

    result: Any


class Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build(registers: Iterable[Register]) -> argparse.ArgumentParser:
    """The parser of ``memlane`` with the commands each of ``registers`` adds."""
    p = Parser(prog="memlane", description="Long-term memory for LLM agents.")
    global_options(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="what to do (memlane COMMAND --help for its options)")
    for register in registers:
        register(sub)
    for _, command_parser in command_parsers(p):
        if command_parser is not p:
            global_options(command_parser, argparse.SUPPRESS)
    return p


def global_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
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


def add_command(sub: Subparsers, name: str, handler: Handler, helptext: str,
                scoped: bool = True, needs_scope: bool = False) -> argparse.ArgumentParser:
    """A command working on the opened store; ``scoped`` adds ``--user``, ``--agent`` and
    ``--session``, ``needs_scope`` makes at least one of them required."""
    sp: argparse.ArgumentParser = sub.add_parser(name, help=helptext, description=helptext)
    sp.set_defaults(handler=handler, needs_scope=needs_scope)
    if scoped:
        sp.add_argument("--user", dest="user_id", help="user id of the scope")
        sp.add_argument("--agent", dest="agent_id", help="agent id of the scope")
        sp.add_argument("--session", dest="session_id", help="session id of the scope")
    return sp


def command_parsers(parser: argparse.ArgumentParser,
                    path: str = "memlane") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every command's parser below it (``eval locomo`` included), each with
    its command line (``memlane eval locomo``)."""
    yield path, parser
    for action in actions(parser):
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_parsers(sub, f"{path} {name}")


def actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments of ``parser``, and after a list of sub-commands one entry per
    sub-command carrying its ``dest`` (name) and ``help`` (argparse keeps both lists
    private; the check that every option is documented reads them here)."""
    found: list[argparse.Action] = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            found += action._choices_actions
    return found


class ScopeArgs(TypedDict):
    user_id: str | None
    agent_id: str | None
    session_id: str | None


def scope(args: argparse.Namespace) -> ScopeArgs:
    """The scope flags; for a command that needs a scope, an error naming them if none."""
    found: ScopeArgs = {"user_id": args.user_id, "agent_id": args.agent_id,
                        "session_id": args.session_id}
    if getattr(args, "needs_scope", False) and all(v is None for v in found.values()):
        raise UsageError(f"{args.command} needs a scope: pass at least one of {SCOPE_FLAGS}")
    return found


def json_value(text: str, what: str = "the value") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply to read") from None


def json_arg(text: str) -> Any:
    """An argument type: JSON text, its error reported as a usage error."""
    try:
        return json_value(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc


def at_least(minimum: int) -> Callable[[str], int]:
    """An argument type: an integer no smaller than ``minimum``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def between(low: int, high: int) -> Callable[[str], int]:
    """An argument type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, not {value}")
        return value

    return parse


def number_at_least(minimum: float) -> Callable[[str], float]:
    """An argument type: a finite number no smaller than ``minimum`` (not NaN, not
    infinity)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, not {value:g}")
        return value

    return parse
