"""One client for every OpenAI-compatible endpoint: OpenAI, Ollama, vLLM, llama.cpp server,
LM Studio. Built on the ``openai`` package (extra ``openai``).

It asks for JSON-schema structured output; an endpoint that rejects that is asked for a
JSON object instead, and then for plain text, and the working mode is remembered. The
``openai`` client retries connection errors, 408, 409, 429 and 5xx with exponential
backoff (``max_retries``); what still fails becomes a ``ModelError``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError, ModelError, missing_extra
from .base import LLM, Chat, Completion, Usage

MODES = ("json_schema", "json_object", "text")


class OpenAICompatibleLLM(LLM):
    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, temperature: float = 0.0,
                 mode: str = "json_schema") -> None:
        super().__init__()
        try:
            import openai
        except ImportError as exc:
            raise missing_extra("openai", "openai") from exc
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {MODES}")
        self.model = model
        self.temperature = temperature
        self.mode = mode
        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                                     timeout=timeout, max_retries=max_retries)

    def _complete(self, messages: Chat, schema: dict[str, Any], name: str) -> Completion:
        while True:
            try:
                response = self._client.chat.completions.create(
                    model=self.model, messages=list(messages),  # type: ignore[arg-type]
                    temperature=self.temperature, **self._format(schema, name),
                )
                break
            except self._openai.BadRequestError as exc:
                if self.mode == "text" or "response_format" not in str(exc):
                    raise ModelError(f"the LLM endpoint rejected the request: {exc}") from exc
                self.mode = MODES[MODES.index(self.mode) + 1]
            except self._openai.OpenAIError as exc:
                raise ModelError(f"the LLM endpoint failed: {exc}") from exc
        text = response.choices[0].message.content or ""
        usage = response.usage
        prompt = getattr(usage, "prompt_tokens", 0) or 0
        return Completion(text, Usage(1, prompt, getattr(usage, "completion_tokens", 0) or 0))

    def _format(self, schema: dict[str, Any], name: str) -> dict[str, Any]:
        if self.mode == "json_schema":
            return {"response_format": {"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, "strict": False}}}
        if self.mode == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}
