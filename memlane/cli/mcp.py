"""``memlane mcp``: the MCP server over stdio, bound to one scope of one store.

The scope comes from the command line (and the tenant from ``--tenant``), never from the
model: every tool acts on that scope only. Standard output carries nothing but the
protocol; logs and errors go to standard error.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from ..memory import Memory


def cmd_mcp(mem: Memory, a: argparse.Namespace) -> None:
    from ..mcp import Binding, build_server, fixed

    if a.user_id is None and a.agent_id is None and a.session_id is None:
        raise UsageError("mcp needs a scope for its tools: pass at least one of "
                         "--user, --agent, --session")
    binding = Binding(mem, user_id=a.user_id, agent_id=a.agent_id, session_id=a.session_id,
                      read_only=a.read_only)
    build_server(fixed(binding), allow_erase=a.allow_erase).run("stdio")


def register(sub: Any) -> None:
    text = ("serve the memory of one scope to an MCP client (Claude Desktop, Claude Code, "
            "Cursor, VS Code) over stdio")
    sp = sub.add_parser("mcp", help=text, description=text)
    sp.add_argument("--user", dest="user_id", help="user id every tool is bound to")
    sp.add_argument("--agent", dest="agent_id", help="agent id every tool is bound to")
    sp.add_argument("--session", dest="session_id", help="session id every tool is bound to")
    sp.add_argument("--allow-erase", action="store_true",
                    help="offer the erase_all_memories tool (forget the whole scope)")
    sp.set_defaults(handler=cmd_mcp)
