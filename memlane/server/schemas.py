"""The request bodies of the REST API (responses are the library's values as JSON,
``memlane.serialize``). No body has a ``tenant``: it comes from the key, and an unknown
field is refused (422)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Time = str | int | float
"""ISO 8601 text, or seconds since the epoch."""


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None


class AddIn(ScopeIn):
    messages: str | dict[str, Any] | list[dict[str, Any]] = Field(
        description="a text, one message {role, content, name?, id?, timestamp?, metadata?} "
                    "or a list of them")
    timestamp: Time | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    infer: bool | Literal["background"] = False


class SearchIn(ScopeIn):
    query: str
    limit: int = 10
    filters: dict[str, Any] | None = None
    kinds: str | list[str] | None = None
    as_of: Time | None = None
    explain: bool = False
    recipe: str | None = Field(None, description="hybrid, bm25 or dense")


class ContextIn(ScopeIn):
    query: str
    budget_tokens: int = 1500
    filters: dict[str, Any] | None = None


class UpdateIn(ScopeIn):
    text: str
    metadata: dict[str, Any] | None = None
    reason: str | None = None
    actor: str = "user"


class DeleteIn(ScopeIn):
    reason: str | None = None
    actor: str = "user"


class ForgetIn(ScopeIn):
    wait: float | None = None


class RunJobsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = 100
