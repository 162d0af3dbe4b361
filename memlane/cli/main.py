"""The ``memlane`` command. JSON on stdout by default, ``--table`` for people.

Each module in ``COMMANDS`` adds its sub-commands (see ``parser`` for how a command is
written); this module opens the store, runs the command and turns errors into exit codes.

Exit codes: 0 success, 1 run-time failure (for ``forget``, also an erasure left pending by
another connection's reader: the counts are printed first), 2 invalid input or usage,
3 not found, 4 conflict (retry). Settings come from flags, then the environment (``MEMLANE_DB``,
``MEMLANE_TENANT``, ``MEMLANE_EMBEDDER``; for the LLM ``MEMLANE_LLM_MODEL``,
``MEMLANE_LLM_BASE_URL`` and ``MEMLANE_LLM_API_KEY`` or ``OPENAI_API_KEY``), then defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..embed.base import Embedder
from ..errors import ConflictError, MemlaneError, NotFoundError, UsageError
from ..llm.base import LLM
from ..memory import Memory, default_location
from . import commands, demo, evaluate, tools
from .output import render_json, render_table
from .parser import (
    EMBEDDERS,
    EXIT_CONFLICT,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    Register,
    build,
)

COMMANDS: list[Register] = [
    commands.register,
    tools.register,
    demo.register,
    evaluate.register,
]
"""The modules' ``register(sub)`` functions, in the order ``memlane --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    return build(COMMANDS)


def _make_embedder(name: str) -> Embedder:
    from ..embed import FakeEmbedder, MiniLMEmbedder

    if name == "fake":
        return FakeEmbedder()
    return MiniLMEmbedder()


def open_memory(args: argparse.Namespace, temporary: Path | None = None) -> Memory:
    """The store the command works on; evaluations get a fresh one in ``temporary``."""
    location = (str(temporary / "eval.db") if temporary is not None
                else args.db or os.environ.get("MEMLANE_DB") or str(default_location()))
    embedder = args.embedder or os.environ.get("MEMLANE_EMBEDDER") or "minilm"
    if embedder not in EMBEDDERS:
        raise UsageError(f"unknown embedder {embedder!r}; choose from {EMBEDDERS}")
    tenant = (args.tenant if args.tenant is not None
              else os.environ.get("MEMLANE_TENANT") or "default")
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
