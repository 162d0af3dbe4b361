"""Token counting for budgets, offline: the bundled MiniLM WordPiece tokenizer.

WordPiece counts land within a few percent of GPT-style BPE counts on English prose; a
budget is a target, not a contract with a particular LLM's tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

TOKENIZER_NAME = "all-MiniLM-L6-v2 WordPiece (bundled)"
_lock = threading.Lock()
_tokenizer: Any = None


def _get() -> Any:
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            from .embed.onnx_minilm import load_tokenizer

            _tokenizer = load_tokenizer(None)
        return _tokenizer


def count_tokens(text: str) -> int:
    return len(_get().encode(text, add_special_tokens=False).ids)


def count_many(texts: Sequence[str]) -> list[int]:
    encodings = _get().encode_batch(list(texts), add_special_tokens=False)
    return [len(e.ids) for e in encodings]
