"""Opening what a command works on: the store, the embedder and the LLM, from the flags,
then the environment, then the defaults."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..embed.base import Embedder
from ..errors import UsageError
from ..llm.base import LLM
from ..memory import Memory, default_location
from .parser import EMBEDDERS


def embedder_name(args: argparse.Namespace) -> str:
    name: str = args.embedder or os.environ.get("MEMLANE_EMBEDDER") or "minilm"
    if name not in EMBEDDERS:
        raise UsageError(f"unknown embedder {name!r}; choose from {EMBEDDERS}")
    return name


def make_embedder(name: str) -> Embedder:
    from ..embed import FakeEmbedder, MiniLMEmbedder

    if name == "fake":
        return FakeEmbedder()
    return MiniLMEmbedder()


def store_location(args: argparse.Namespace) -> str:
    """The store a command names: ``--db``, else ``$MEMLANE_DB``, else the default file."""
    return str(args.db or os.environ.get("MEMLANE_DB") or default_location())


def is_server(location: str) -> bool:
    """Whether ``location`` names a memlane server (http(s)://) rather than a store."""
    return location.lower().startswith(("http://", "https://"))


def own_store(location: str, command: str, given_as: str = "--db") -> str:
    """``location``, for a command that opens the store itself (``keys``, ``migrate``,
    ``serve``): a server's URL is refused, saying what to give instead."""
    if is_server(location):
        raise UsageError(f"{command} works on a store (a SQLite file or a PostgreSQL "
                         f"URL), not through a server: {given_as} {location} is a server; "
                         "give the store it serves")
    return location


def open_memory(args: argparse.Namespace, temporary: Path | None = None) -> Memory:
    """The store the command works on; evaluations get a fresh one in ``temporary``."""
    location = (str(temporary / "eval.db") if temporary is not None
                else store_location(args))
    tenant = (args.tenant if args.tenant is not None
              else os.environ.get("MEMLANE_TENANT") or "default")
    if is_server(location):  # a server: its key's tenant
        return Memory(location, tenant=tenant, api_key=args.api_key, read_only=args.read_only)
    return Memory(location, embedder=make_embedder(embedder_name(args)), tenant=tenant,
                  llm=make_llm(scripted=getattr(args, "scripted_llm", False)),
                  read_only=args.read_only and temporary is None)


def make_llm(*, scripted: bool = False) -> LLM | None:
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
