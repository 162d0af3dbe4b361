"""Retrieval quality: LoCoMo (dev split), BEAM (the 100K dev chats) and the knowledge-update
set, into docs/benchmarks.md.

    python -m benchmarks.quality [--data ../shared/data/locomo-dev.json]
                                 [--beam ../shared/data/beam-100k-dev]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

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
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "locomo.db") as mem:
        run = locomo.run(mem, args.data, retriever="hybrid", ablation=True)
    body = report.locomo_markdown(run.report)
    report.write_outputs(run.report, body, RESULTS / "locomo", run.answers, plots=True)
    command = "memlane eval locomo --data ../shared/data/locomo-dev.json --ablation --out DIR"
    update_section(docs, "LoCoMo evidence retrieval (dev split)",
                   f"Command: `{command}` (run by `make bench`)\n\n{body}")
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "beam.db") as mem:
        beam_run = beam.run(mem, args.beam, retriever="hybrid", ablation=True)
    body = beam.markdown(beam_run.report)
    report.write_outputs(beam_run.report, body, RESULTS / "beam", beam_run.answers, plots=True)
    command = "memlane eval beam --data ../shared/data/beam-100k-dev --ablation --out DIR"
    update_section(docs, "BEAM evidence retrieval (100K dev chats)",
                   f"Command: `{command}` (run by `make bench`)\n\n{body}")
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


if __name__ == "__main__":
    main()
