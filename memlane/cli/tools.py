"""Commands that open no memory: copying a store to another, and a fake LLM server."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..memory import Memory
from .opening import own_store
from .output import render_json
from .parser import Subparsers


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

    if getattr(a, "db", None):  # a global option: migrate takes its stores from --from, --to
        own_store(a.db, "migrate")
    own_store(a.source, "migrate", "--from")
    own_store(a.target, "migrate", "--to")
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


def register(sub: Subparsers) -> None:
    """Add ``migrate`` and ``dev fake-llm`` to the sub-commands of ``memlane``."""
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
