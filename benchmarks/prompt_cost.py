"""Prompt sizes of the LLM write path for one typical add, counted with the bundled
tokenizer: one new line, six earlier lines and a summary; five stored facts to reconcile.

    python -m benchmarks.prompt_cost
"""

from __future__ import annotations

import json

from memlane.prompts import extract, reconcile
from memlane.tokens import TOKENIZER_NAME, count_tokens


def sizes() -> dict[str, int]:
    earlier = [extract.line(f"c{i}", "2026-03-14", "Alice", "user",
                            "I went hiking with my sister near the lake last weekend, it was "
                            "lovely.") for i in range(6)]
    new = [extract.line("1", "2026-03-14", "Alice", "user",
                        "Big news: I moved to Lisbon last week, still unpacking boxes.")]
    chat = extract.messages(earlier, new, "Alice lives in Paris and works as a nurse; she "
                                          "talked about hiking.")
    stored = [("2026-01-10", "Alice lives in Paris, near the canal.")] * 5
    decide = reconcile.messages("Alice lives in Lisbon.", "2026-03-14", stored)
    return {
        "extract_system_prompt": count_tokens(extract.SYSTEM),
        "extract_call": sum(count_tokens(m["content"]) for m in chat),
        "reconcile_call": sum(count_tokens(m["content"]) for m in decide),
    }


if __name__ == "__main__":
    print(json.dumps({"tokenizer": TOKENIZER_NAME, **sizes()}, indent=2))
