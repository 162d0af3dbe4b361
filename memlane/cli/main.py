"""The ``memlane`` command. JSON on stdout by default, ``--table`` for people.

Each module in ``COMMANDS`` adds its sub-commands (see ``parser`` for how a command is
written); this module opens the store, runs the command and turns errors into exit codes.

Exit codes: 0 success, 1 run-time failure (for ``forget``, also an erasure left pending by
another connection's reader: the counts are printed first), 2 invalid input or usage,
3 not found, 4 conflict (retry), 5 an import that left out bad messages (its result, printed
as usual, names them), and 141 (128 + SIGPIPE, the status of a command the signal
ended), quietly, when the reader of the output went away first (``memlane keys list |
head -1``). Settings come from flags, then the environment (``MEMLANE_DB``,
``MEMLANE_TENANT``, ``MEMLANE_EMBEDDER``; for the LLM ``MEMLANE_LLM_MODEL``,
``MEMLANE_LLM_BASE_URL`` and ``MEMLANE_LLM_API_KEY`` or ``OPENAI_API_KEY``; for a server given
as ``--db http(s)://...``, ``MEMLANE_API_KEY``), then defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConflictError, MemlaneError, NotFoundError, UsageError
from . import commands, demo, evaluate, keys, mcp, serve, tools
from .opening import open_memory
from .output import render_json, render_table
from .parser import (
    EXIT_BROKEN_PIPE,
    EXIT_CONFLICT,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    Partial,
    Register,
    build,
)

COMMANDS: list[Register] = [
    commands.register,
    tools.register,
    demo.register,
    evaluate.register,
    keys.register,
    serve.register,
    mcp.register,
]
"""The modules' ``register(sub)`` functions, in the order ``memlane --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    return build(COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:  # the reader of the output went away (``| head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace) -> int:
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
    except BrokenPipeError:
        raise
    except OSError as exc:
        return _fail(exc, EXIT_FAILURE)
    code = EXIT_PARTIAL if isinstance(result, Partial) else EXIT_OK
    result = result.result if isinstance(result, Partial) else result
    if result is not None:
        print(getattr(args, "render", render_table)(result) if args.table
              else render_json(result), flush=True)
    return code


def _fail(exc: Exception, code: int) -> int:
    print(f"memlane: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
