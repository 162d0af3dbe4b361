"""The request bodies of the REST API (responses are the library's values as JSON,
``memlane.serialize``, described by ``answers``). No body has a ``tenant``: it comes from
the key, and an unknown field is refused (422).

The schema states the bounds the library checks (an id's length, a limit's range, a text
that is not blank, a scope where one is needed), so that clients and fuzzers know them; the
library stays the one that checks them, and answers 400 with its own message."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

Time = str | int | float
"""ISO 8601 text, or seconds since the epoch."""
NOT_BLANK = {"type": "string", "minLength": 1, "pattern": r"\S"}
ID = {"type": "string", "minLength": 1, "maxLength": 256,
      "pattern": r"^[^\x00-\x1f]*[^\x00-\x1f\s][^\x00-\x1f]*$"}
MESSAGE = {"type": "object", "required": ["content"], "additionalProperties": False,
           "properties": {
               "role": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": r"\S",
                        "default": "user"},
               "content": NOT_BLANK,
               "name": {"type": "string"},
               "id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
               "timestamp": {"anyOf": [{"type": "string"}, {"type": "number"}]},
               "metadata": {"type": "object"}}}
Text = Annotated[str, WithJsonSchema(NOT_BLANK)]
Id = Annotated[str | None, WithJsonSchema({"anyOf": [ID, {"type": "null"}]})]
Limit = Annotated[int, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 1000})]
Offset = Annotated[int, WithJsonSchema({"type": "integer", "minimum": 0,
                                        "maximum": 2**63 - 1})]
NEEDS_SCOPE = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
    {"required": [name]} for name in ("user_id", "agent_id", "session_id")]})
"""A call that acts on one scope: at least one of user_id, agent_id, session_id."""


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id = None
    agent_id: Id = None
    session_id: Id = None


class AddIn(ScopeIn):
    model_config = NEEDS_SCOPE

    messages: Annotated[str | dict[str, Any] | list[dict[str, Any]], WithJsonSchema({"anyOf": [
        NOT_BLANK, MESSAGE, {"type": "array", "items": MESSAGE, "minItems": 1}]})] = Field(
        description="a text, one message {role, content, name?, id?, timestamp?, metadata?} "
                    "or a list of them")
    timestamp: Time | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    infer: bool | Literal["background"] = False


class SearchIn(ScopeIn):
    model_config = NEEDS_SCOPE

    query: Text
    limit: Limit = 10
    filters: dict[str, Any] | None = None
    kinds: str | list[str] | None = None
    as_of: Time | None = None
    explain: bool = False
    recipe: str | None = Field(None, description="hybrid, bm25 or dense")


class ContextIn(ScopeIn):
    model_config = NEEDS_SCOPE

    query: Text
    budget_tokens: int = 1500
    filters: dict[str, Any] | None = None


class UpdateIn(ScopeIn):
    text: Text
    metadata: dict[str, Any] | None = None
    reason: str | None = None
    actor: str = "user"


class DeleteIn(ScopeIn):
    reason: str | None = None
    actor: str = "user"


class ForgetIn(ScopeIn):
    model_config = NEEDS_SCOPE

    wait: Annotated[float | None, WithJsonSchema({"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 3600}, {"type": "null"}]})] = None


class RunJobsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Limit = 100
