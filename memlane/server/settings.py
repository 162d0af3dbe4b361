"""What a server is configured with (read by the CLI from its flags, never at import)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..memory import Memory

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """``open_memory`` builds the one ``Memory`` the server serves (in its lifespan, closed
    at shutdown); each request sees it as the tenant of its key (``Memory.for_tenant``)."""

    open_memory: Callable[[], Memory]
    auth: bool = True
    """Requests need a key (``memlane keys create``); off only on a loopback address."""
    tenant: str = "default"
    """Without auth, the tenant of every request."""
    max_body_bytes: int = 2 * MIB
    """Larger request bodies are refused with 413."""
    rate: float = 100.0
    """Requests per second allowed to each key, on average (0: no limit)."""
    burst: int = 200
    """Requests a key may make at once before ``rate`` applies."""
    auth_failures: int = 20
    """Refused keys one client address may present within ``auth_window`` seconds; then
    its requests to ``/v1`` and ``/mcp`` get 429 for ``auth_window`` seconds, whatever key
    they send (``lockout``; 0: no limit)."""
    auth_window: float = 60.0
    """Seconds over which refused keys are counted, and that an address stays refused."""
    threads: int = 8
    """Requests served at once (the rest wait); a PostgreSQL pool is sized to match."""
    job_interval: float = 0.5
    """Seconds between looks for background LLM jobs of any tenant (with an LLM)."""
    mcp: bool = True
    """Serve the MCP tools at ``/mcp`` behind the same keys (when the ``mcp`` extra is
    installed)."""
    mcp_allow_erase: bool = False
    """Offer the ``erase_all_memories`` tool at ``/mcp``."""
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    """Host names the server answers to, ``/v1`` and ``/mcp`` alike (against DNS
    rebinding; ``guard.allowed_hosts``); ``"*"`` accepts any."""
