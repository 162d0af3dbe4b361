"""Retrieval quality: LoCoMo (dev split) and the knowledge-update set, into docs/benchmarks.md.

    python -m benchmarks.quality [--data ../shared/data/locomo-dev.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from memlane import Memory
from memlane.eval import knowledge_update, locomo, report

from .report import update_section
from .run import RESULTS, ROOT

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo-dev.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    docs = ROOT / "docs" / "benchmarks.md"
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "locomo.db") as mem:
        run = locomo.run(mem, args.data, retriever="hybrid", ablation=True)
    body = report.locomo_markdown(run.report)
    report.write_outputs(run.report, body, RESULTS / "locomo", run.answers, plots=True)
    command = "memlane eval locomo --data ../shared/data/locomo-dev.json --ablation --out DIR"
    update_section(docs, "LoCoMo evidence retrieval (dev split)",
                   f"Command: `{command}` (run by `make bench`)\n\n{body}")
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "ku.db") as mem:
        ku = knowledge_update.run(mem, people=40, seed=1)
    update_section(docs, "Knowledge updates",
                   "Command: `memlane eval knowledge-update --people 40 --seed 1` (run by "
                   f"`make bench`)\n\n{knowledge_update.markdown(ku.report)}")


if __name__ == "__main__":
    main()
