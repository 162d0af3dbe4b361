"""What a tool call may touch, and how a transport says so.

A ``Resolver`` is called once per tool call (and per listing of the tools) with the HTTP
request that carried it (``None`` over stdio) and returns the ``Binding`` of that call.
Over stdio it is ``fixed``: the scope came from the command line. Over HTTP the host reads
the principal its authentication put on the request (``request.state``, after checking an
API key) and returns that key's tenant and scope, so every call is bound by the credential
it arrived with (``memlane serve`` also binds each session to the key that opened it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ..memory import Memory
from ..types import Scope, check_unicode


@dataclass(frozen=True, slots=True)
class Binding:
    """A ``Memory`` already bound to a tenant (``Memory.for_tenant``) and one scope in it.

    At least one of ``user_id``, ``agent_id`` and ``session_id`` must be set: an MCP caller
    never sees a whole tenant. ``read_only`` leaves the write tools out of the tool list
    and refuses them; ``actor`` is written into the history of the memories the tools
    change.
    """

    memory: Memory
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    read_only: bool = False
    actor: str = "mcp"

    def __post_init__(self) -> None:
        Scope(self.memory.tenant, self.user_id, self.agent_id,
              self.session_id).require_bounded("an MCP server")
        check_unicode(self.actor, "actor")

    @property
    def scope(self) -> dict[str, Any]:
        """The scope as keyword arguments of every ``Memory`` call."""
        return {"user_id": self.user_id, "agent_id": self.agent_id,
                "session_id": self.session_id}


Resolver = Callable[[Request | None], Binding]
"""The binding of one tool call, from the HTTP request that carried it (None over stdio)."""


def fixed(binding: Binding) -> Resolver:
    """A resolver that binds every call to ``binding`` (stdio: one user per process)."""

    def resolve(request: Request | None) -> Binding:
        return binding

    return resolve
