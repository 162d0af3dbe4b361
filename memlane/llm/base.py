"""The LLM interface: one public method that returns validated JSON, and usage counting.

Providers implement ``_complete`` (text in, text out); ``complete_json`` adds parsing,
repair and validation once for all of them. Every call's tokens are added to ``usage``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ModelOutputError
from . import jsonout

Chat = Sequence[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.calls + other.calls, self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage


class LLM(ABC):
    """A chat model that answers with JSON for a given schema."""

    model: str

    def __init__(self) -> None:
        self._usage = Usage()
        self._usage_lock = threading.Lock()

    @property
    def usage(self) -> Usage:
        """Calls and tokens since this object was made."""
        return self._usage

    def complete_json(self, messages: Chat, schema: dict[str, Any],
                      name: str) -> tuple[dict[str, Any], Usage]:
        """The model's answer as an object conforming to ``schema``, and what it cost.

        Raises ``ModelOutputError`` (with the raw text) when the answer cannot be read.
        """
        completion = self._complete(messages, schema, name)
        with self._usage_lock:
            self._usage = self._usage + completion.usage
        value = jsonout.parse(completion.text)
        problems = jsonout.validate(value, schema)
        if problems:
            raise ModelOutputError("the model's answer does not fit its schema: "
                                   + "; ".join(problems[:5]), completion.text)
        return value, completion.usage

    @abstractmethod
    def _complete(self, messages: Chat, schema: dict[str, Any], name: str) -> Completion:
        """The raw answer text for a chat, asking for JSON matching ``schema``."""


NO_LLM = ("pass Memory(llm=...), or set MEMLANE_LLM_MODEL (and MEMLANE_LLM_BASE_URL) for the "
          "CLI and the server")
"""What to do when a call needs an LLM and none was given, at every door."""
