"""Retrieval quality: LoCoMo (dev split), BEAM (the 100K dev chats) and the knowledge-update
set, into docs/benchmarks.md.

    python -m benchmarks.quality [--data ../shared/data/locomo-dev.json]
                                 [--beam ../shared/data/beam-100k-dev]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memlane import Memory
from memlane.eval import beam, knowledge_update, locomo, report

from .report import update_section
from .run import RESULTS, ROOT

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo-dev.json"
DEFAULT_BEAM = ROOT.parent / "shared" / "data" / "beam-100k-dev"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--beam", type=Path, default=DEFAULT_BEAM)
    args = parser.parse_args(argv)
    docs = ROOT / "docs" / "benchmarks.md"
    _evidence(docs, "locomo", "LoCoMo evidence retrieval (dev split)",
              "memlane eval locomo --data ../shared/data/locomo-dev.json --ablation --out DIR",
              lambda mem: locomo.run(mem, args.data, retriever="hybrid", ablation=True),
              report.locomo_markdown)
    _evidence(docs, "beam", "BEAM evidence retrieval (100K dev chats)",
              "memlane eval beam --data ../shared/data/beam-100k-dev --ablation --out DIR",
              lambda mem: beam.run(mem, args.beam, retriever="hybrid", ablation=True),
              beam.markdown)
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "ku.db") as mem:
        ku = knowledge_update.run(mem, people=40, seed=1)
    with tempfile.TemporaryDirectory() as tmp, Memory(
            Path(tmp) / "ku.db", llm=knowledge_update.scripted_llm()) as mem:
        ku_llm = knowledge_update.run(mem, people=40, seed=1)
    update_section(docs, "Knowledge updates", "\n\n".join([
        "Without an LLM (turns and windows only). Command: `memlane eval knowledge-update "
        "--people 40 --seed 1` (run by `make bench`)", knowledge_update.markdown(ku.report),
        "With the LLM write path, the LLM being a scripted stand-in that reads the generated "
        "sentences exactly (so this measures reconcile, supersede and ranking, not a real "
        "model's extraction). Command: `memlane eval knowledge-update --people 40 --seed 1 "
        "--scripted-llm`", knowledge_update.markdown(ku_llm.report)]))



def _evidence(docs: Path, name: str, title: str, command: str,
              run: Callable[[Memory], Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """One evidence benchmark on a fresh store: its results written, its section published."""
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / f"{name}.db") as mem:
        done = run(mem)
    body = markdown(done.report)
    report.write_outputs(done.report, body, RESULTS / name, done.answers, plots=True)
    update_section(docs, title, f"Command: `{command}` (run by `make bench`)\n\n{body}")


if __name__ == "__main__":
    main()
