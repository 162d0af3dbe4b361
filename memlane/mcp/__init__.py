"""The MCP server: memlane's memory as tools for assistants that speak the Model Context
Protocol (Claude Desktop, Claude Code, Cursor, VS Code), over stdio or streamable HTTP.

``build_server(resolver)`` returns an SDK server whose tools act on one ``Binding`` per call:
a ``Memory`` bound to a tenant and one fixed scope within it. No tool takes a user, agent,
session or tenant, so a model cannot reach another scope by naming one. ``memlane mcp`` runs
it over stdio with the scope from its command line; an HTTP host mounts
``server.streamable_http_app()`` and supplies a resolver that reads the caller's identity
from the authenticated request. Needs the ``mcp`` extra.
"""

from __future__ import annotations

from ..errors import missing_extra

try:
    import mcp.server.mcpserver  # noqa: F401  (the SDK's 2.x server API)
except ImportError as exc:  # absent, or a 1.x SDK without MCPServer
    raise missing_extra("mcp (2.3 or later)", "mcp") from exc

from .binding import Binding, Resolver, fixed
from .server import build_server

__all__ = ["Binding", "Resolver", "build_server", "fixed"]
