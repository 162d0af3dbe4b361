"""``memlane demo``: ingest the shipped sample conversation, then search it and pack context."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from typing import Any, TextIO

from ..memory import Memory
from ..read.context import Context
from .parser import Subparsers, add_command

SAMPLE = "sample_conversation.json"
CONTEXT_BUDGET = 300


def load_sample() -> dict[str, Any]:
    text = resources.files("memlane.demo").joinpath(SAMPLE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def ingest(memory: Memory) -> dict[str, Any]:
    """Add the sample's sessions (a second run stores nothing twice); return the sample."""
    sample = load_sample()
    for session in sample["sessions"]:
        memory.add(session["messages"], user_id=sample["user_id"],
                   session_id=session["session_id"], timestamp=session["timestamp"])
    return sample


def context(memory: Memory, sample: dict[str, Any]) -> Context:
    return memory.context(sample["context_query"], user_id=sample["user_id"],
                          budget_tokens=CONTEXT_BUDGET)


def run(memory: Memory, out: TextIO) -> None:
    sample = ingest(memory)
    user = sample["user_id"]
    total = len(memory.get_all(user_id=user, limit=1000))
    out.write(f"Ingested {len(sample['sessions'])} sessions for user '{user}': "
              f"{total} memories in the store (adding again stores nothing twice).\n")
    for query in sample["searches"]:
        out.write(f"\nsearch: {query}\n")
        for hit in memory.search(query, user_id=user, limit=2):
            when = hit.memory.event_time.strftime("%Y-%m-%d")
            lines = hit.text.splitlines()
            out.write(f"  {hit.score:.3f}  [{when}] {lines[0]}\n")
            out.write("".join(f"                      {line}\n" for line in lines[1:]))
            out.write(f"         sources: {', '.join(hit.memory.source_ids)}\n")
    ctx = context(memory, sample)
    out.write(f"\ncontext for: {sample['context_query']} "
              f"({ctx.tokens} of {ctx.budget_tokens} tokens, "
              f"{'whole history' if ctx.complete else 'best matches'}, "
              f"{len(ctx.sources)} sources)\n{ctx.text}\n")


def cmd_demo(mem: Memory, a: argparse.Namespace) -> None:
    run(mem, sys.stdout)


def register(sub: Subparsers) -> None:
    add_command(sub, "demo", cmd_demo, "ingest a sample conversation and search it", False)
