"""Where ingest time goes: a LoCoMo import profiled, the model's own ceiling, long passages.

    python -m benchmarks.ingest_profile [--data ../shared/data/locomo-dev.json]
                                        [--beam ../shared/data/beam-100k-dev] [--passages 300]

1. The import (``exchange.locomo.ingest``: one ``Memory.add`` per session) into a fresh
   SQLite file with the default MiniLM embedder, timed, then run again under cProfile and
   its time split by stage. The model runs on helper threads too; its share is the
   embedder's time in the importing thread less tokenization, and the padding part of it
   the padded tokens' share of the tokens the model was given.
2. The model alone on one thread, in calls of 8 texts of 32 tokens: milliseconds of CPU
   per token, and from it the most turns per second the cores could embed at the import's
   tokens per turn (every other stage free).
3. Passages of long messages: BEAM messages cut into passages of ``PASSAGE_CHARS``
   characters, embedded a message at a time and 32 passages at a time (cache cleared).

Writes JSON to benchmarks/results/ and a section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from memlane import Memory, MiniLMEmbedder
from memlane.eval.machine import describe as machine
from memlane.exchange import locomo
from memlane.write.passages import PASSAGE_CHARS, split

from .report import report

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
Stats = dict[tuple[str, int, str], tuple[int, int, float, float, dict[Any, Any]]]


class Counted(MiniLMEmbedder):
    """The default embedder, counting the tokens it gives the model, padding included."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = [0, 0]  # real, padded
        self._count_lock = threading.Lock()

    def _run(self, session: Any, encodings: list[Any]) -> Any:  # type: ignore[override]
        with self._count_lock:
            self.tokens[0] += sum(len(e.ids) for e in encodings)
            self.tokens[1] += len(encodings) * max(len(e.ids) for e in encodings)
        return MiniLMEmbedder._run(session, encodings)


def import_once(conversations: list[locomo.Conversation], embedder: MiniLMEmbedder,
                profile: cProfile.Profile | None = None) -> float:
    """Seconds to import ``conversations`` into a fresh SQLite file."""
    embedder.clear_cache()
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(Path(tmp) / "import.db", embedder=embedder)
        start = time.perf_counter()
        if profile is not None:
            profile.enable()
        locomo.ingest(mem, conversations)
        if profile is not None:
            profile.disable()
        elapsed = time.perf_counter() - start
        mem.close()
    return elapsed


def cumulative(stats: Stats, file_end: str, name: str, caller: str | None = None) -> float:
    """Seconds in the first function ``name`` of a file ending ``file_end`` (and in what it
    called), over all its calls or over its calls from the function named ``caller``."""
    found = sorted((line, cum, callers) for (file, line, func), (_, _, _, cum, callers)
                   in stats.items() if file.endswith(file_end) and func == name)
    if not found:
        return 0.0
    _, cum, callers = found[0]
    if caller is None:
        return float(cum)
    return float(sum(c[3] for (_, _, f), c in callers.items() if f == caller))


def own(stats: Stats, name: str) -> float:
    """Seconds inside built-in methods whose name contains ``name``."""
    return sum(tt for (_, _, func), (_, _, tt, _, _) in stats.items() if name in func)


def split_time(stats: Stats, padded_share: float) -> dict[str, float]:
    """The import's seconds by stage (every row is wall time in the importing thread)."""
    total = cumulative(stats, "exchange/locomo.py", "ingest")
    embedding = cumulative(stats, "embed/base.py", "embed")
    tokenizing = own(stats, "'encode_batch' of") + own(stats, "'encode' of")
    model = cumulative(stats, "onnx_minilm.py", "_embed") - tokenizing
    windows = cumulative(stats, "windows.py", "mean_vector")
    writing = cumulative(stats, "store/sqlite.py", "write")
    placing = (cumulative(stats, "placing.py", "place") - windows
               - cumulative(stats, "embed/base.py", "embed", caller="_message_lines"))
    rows = {"tokenization": tokenizing, "model, real tokens": model * (1 - padded_share),
            "model, padding": model * padded_share,
            "embedder cache and normalization": embedding - tokenizing - model,
            "window vectors (means, no model)": windows, "SQLite writes": writing,
            "reading the conversation and placing the windows": placing}
    rows["Python: the rest of add (checks, records, history)"] = total - sum(rows.values())
    return {"total": total, **rows}


def ingest(data: Path) -> dict[str, Any]:
    conversations = locomo.load(data)
    embedder = Counted()
    embedder.embed(["warm up"])
    turns = sum(c.turn_count for c in conversations)
    cpu = time.process_time()
    seconds = min(import_once(conversations, embedder) for _ in range(2))
    cpu_per_import = (time.process_time() - cpu) / 2
    embedder.tokens = [0, 0]
    profile = cProfile.Profile()
    import_once(conversations, embedder, profile)
    real, padded = embedder.tokens
    stats: Stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return {"conversations": len(conversations), "turns": turns, "seconds": round(seconds, 2),
            "turns_per_s": round(turns / seconds, 1), "cpu_seconds": round(cpu_per_import, 2),
            "tokens_per_turn": round(real / turns, 1), "padded_tokens": padded,
            "real_tokens": real,
            "profile": {k: round(v, 3) for k, v in split_time(stats, 1 - real / padded).items()}}


def model_ceiling(tokens_per_turn: float) -> dict[str, Any]:
    """CPU milliseconds per token of the model on one thread (best of five runs of 8 x 32
    tokens); the turns per second all cores could embed at that rate."""
    embedder = MiniLMEmbedder(threads=1, parallel_calls=1, cache_size=0)
    session, tokenizer = embedder._load()
    text = " ".join(["memory"] * 30)
    encodings = [tokenizer.encode(text)] * 8
    per_run = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(10):
            embedder._run(session, encodings)
        per_run.append((time.process_time() - start) / 10)
    ms_per_token = 1000 * min(per_run) / sum(len(e.ids) for e in encodings)
    cores = os.cpu_count() or 1
    return {"ms_per_token": round(ms_per_token, 4), "cores": cores,
            "turns_per_s_ceiling": round(cores * 1000 / (ms_per_token * tokens_per_turn), 1)}


def beam_messages(root: Path) -> Iterator[str]:
    for chat in sorted(root.glob("*/chat.json"), key=lambda p: int(p.parent.name)):
        for batch in json.loads(chat.read_text(encoding="utf-8")):
            for turn in batch.get("turns", []):
                for message in turn:
                    yield str(message.get("content", ""))


def passages(root: Path, count: int) -> dict[str, Any]:
    """Passages per second, embedding BEAM messages' passages (``PASSAGE_CHARS`` characters
    at most) a message at a time and 32 at a time."""
    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    messages: list[list[str]] = []
    for message in beam_messages(root):
        messages.append([p.text for p in split(message)])
        if sum(map(len, messages)) >= count:
            break
    flat = [p for m in messages for p in m]
    out: dict[str, Any] = {"passage_chars": PASSAGE_CHARS, "messages": len(messages),
                           "passages": len(flat),
                           "mean_chars": round(float(np.mean([len(p) for p in flat])), 1),
                           "passages_per_message": round(len(flat) / len(messages), 2)}
    for name, calls in (("per_message", messages),
                        ("per_32", [flat[i:i + 32] for i in range(0, len(flat), 32)])):
        embedder.clear_cache()
        start = time.perf_counter()
        for texts in calls:
            embedder.embed(texts)
        out[f"{name}_passages_per_s"] = round(len(flat) / (time.perf_counter() - start), 1)
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    imp, ceiling, long = result["import"], result["ceiling"], result["passages"]
    profile = imp["profile"]
    padding = 100 * (imp["padded_tokens"] / imp["real_tokens"] - 1)
    lines = [f"Command: `{command}`  ", f"Date: {result['date']}  ",
             f"Machine: {result['machine']}", "",
             f"LoCoMo import (`memlane import locomo-dev.json`: {imp['conversations']} "
             f"conversations, {imp['turns']} turns, one `Memory.add` per session) into a new "
             f"SQLite file with the default embedder: **{imp['turns_per_s']} turns/s** "
             f"({imp['seconds']} s, {imp['cpu_seconds']} s of CPU). The model reads "
             f"{imp['tokens_per_turn']} tokens a turn; calls padded them to "
             f"{imp['padded_tokens']:,} ({padding:.1f}% padding).", "",
             "The same import under cProfile (its overhead inflates the Python rows), by stage:",
             "", "| stage | seconds | share |", "|---|---:|---:|"]
    for stage, seconds in profile.items():
        if stage != "total":
            lines.append(f"| {stage} | {seconds:.2f} | {100 * seconds / profile['total']:.1f}% |")
    lines.append(f"| total | {profile['total']:.2f} | 100% |")
    lines += ["", f"The model alone, one thread: {ceiling['ms_per_token']} ms of CPU per token; "
              f"at {imp['tokens_per_turn']} tokens a turn, {ceiling['cores']} cores could embed "
              f"at most {ceiling['turns_per_s_ceiling']} turns/s with every other stage free. "
              "The int8 weights are widened to float32 when the model loads, so this is float32 "
              "matrix arithmetic (about 21 MFLOP a token).", "",
              f"Long messages: {long['messages']} BEAM messages cut into {long['passages']} "
              f"passages of at most {long['passage_chars']:,} characters "
              f"({long['passages_per_message']} a message, mean {long['mean_chars']} "
              f"characters): **{long['per_message_passages_per_s']} passages/s** embedded a "
              f"message at a time, {long['per_32_passages_per_s']} passages/s 32 at a time."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "locomo-dev.json")
    parser.add_argument("--beam", type=Path, default=DATA / "beam-100k-dev")
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    imported = ingest(args.data)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "import": imported,
              "ceiling": model_ceiling(imported["tokens_per_turn"]),
              "passages": passages(args.beam, args.passages)}
    report("ingest_profile", "Where ingest time goes", result, markdown, argv, args.no_report)


if __name__ == "__main__":
    main()
