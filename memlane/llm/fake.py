"""Fakes for tests, shipped so users can test their own code: a scripted in-process LLM and
an OpenAI-compatible HTTP server on loopback that replays scripted answers (so the real
client is exercised end to end)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .base import LLM, Chat, Completion, Usage

Script = Callable[[list[dict[str, str]], str], str]
"""Given the chat and the schema name, the answer text."""


def replay(answers: Iterable[str | dict[str, Any]]) -> Script:
    """A script that gives the answers in order (dicts as JSON), then repeats the last."""
    queue = [a if isinstance(a, str) else json.dumps(a) for a in answers]
    lock = threading.Lock()

    def answer(messages: list[dict[str, str]], name: str) -> str:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer


class ScriptedLLM(LLM):
    """An LLM whose answers come from a script; counts words as tokens."""

    def __init__(self, script: Script, model: str = "scripted") -> None:
        super().__init__()
        self.script = script
        self.model = model
        self.requests: list[tuple[list[dict[str, str]], str]] = []

    def _complete(self, messages: Chat, schema: dict[str, Any], name: str) -> Completion:
        chat = [dict(m) for m in messages]
        self.requests.append((chat, name))
        text = self.script(chat, name)
        prompt = sum(len(m.get("content", "").split()) for m in chat)
        return Completion(text, Usage(1, prompt, len(text.split())))


class FakeOpenAIServer:
    """``POST /v1/chat/completions`` on 127.0.0.1, answered by a script.

    ``fail_first`` answers that many requests with HTTP 429 first (to exercise retries);
    ``reject_schema`` answers 400 to requests asking for ``json_schema`` output.
    """

    def __init__(self, script: Script, *, port: int = 0, fail_first: int = 0,
                 reject_schema: bool = False) -> None:
        self.script = script
        self.fail_first = fail_first
        self.reject_schema = reject_schema
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                if fake.fail_first > 0:
                    fake.fail_first -= 1
                    return self._send(429, {"error": {"message": "slow down"}})
                fmt = (body.get("response_format") or {}).get("type")
                if fake.reject_schema and fmt == "json_schema":
                    return self._send(400, {"error": {
                        "message": "response_format json_schema is not supported"}})
                schema = ((body.get("response_format") or {}).get("json_schema") or {})
                try:
                    text = fake.script(body.get("messages", []), schema.get("name", ""))
                except Exception as exc:  # a broken script is a server error, not a hang
                    return self._send(500, {"error": {"message": f"script failed: {exc}"}})
                prompt = sum(len(str(m.get("content", "")).split())
                             for m in body.get("messages", []))
                return self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                              "total_tokens": prompt + len(text.split())},
                })

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
