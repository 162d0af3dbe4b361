"""LLMs: one interface, one OpenAI-compatible client, and fakes for tests."""

from .base import LLM, Completion, Usage
from .fake import FakeOpenAIServer, ScriptedLLM, replay

__all__ = ["LLM", "Completion", "FakeOpenAIServer", "ScriptedLLM", "Usage", "replay"]
