"""Context packing on LoCoMo (dev split): how often a packed context holds the evidence.

    python -m benchmarks.context_packing [--data ../shared/data/locomo-dev.json]
                                         [--budgets 300,1000] [--docs]

Each conversation is ingested as ``memlane eval locomo`` ingests it; for every scorable
question ``Memory.context`` packs a context at each budget, scored by the gold evidence turn
ids the context cites (``Context.sources``): evidence recall (share of the gold ids cited),
the share of questions with every piece of evidence in the context, and the tokens used.
``--docs`` writes the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlane import Memory
from memlane.eval import locomo
from memlane.eval.harness import Question
from memlane.eval.machine import describe
from memlane.eval.metrics import mean
from memlane.exchange import locomo as locomo_file
from memlane.timeutil import utcnow
from memlane.tokens import TOKENIZER_NAME

from .report import update_section
from .run import ROOT

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo-dev.json"
TITLE = "Context packing: evidence in the packed context (LoCoMo dev split)"


def measure(mem: Memory, questions: Sequence[Question],
            budgets: Sequence[int]) -> dict[str, dict[str, dict[str, float]]]:
    """Per budget and category (and categories 1-4 together): recall, all, tokens."""
    sums: dict[int, dict[str, defaultdict[str, list[float]]]] = {
        b: defaultdict(lambda: defaultdict(list)) for b in budgets}
    for q in questions:
        gold = set(q.gold)
        for budget in budgets:
            ctx = mem.context(q.text, user_id=q.user_id, budget_tokens=budget)
            cited = gold & set(ctx.sources)
            for group in (q.group, "cat1-4") if q.group in "1234" else (q.group,):
                row = sums[budget][group]
                row["recall"].append(len(cited) / len(gold))
                row["all"].append(float(cited == gold))
                row["tokens"].append(float(ctx.tokens))
    return {str(b): {g: {"n": len(v["recall"]), **{m: round(mean(x), 4) for m, x in v.items()}}
                     for g, v in sorted(by_group.items())}
            for b, by_group in sums.items()}


def markdown(report: dict[str, Any]) -> str:
    groups = [*locomo.CATEGORIES, "cat1-4"]
    head = " | ".join(f"{g} {locomo.CATEGORIES.get(g, 'all')}" for g in groups)
    lines = [
        f"Evidence cited by `Memory.context` on `{report['data']}` ({report['questions']} "
        f"questions); tokens counted with the {report['tokenizer']} tokenizer. Date "
        f"{report['date']}; machine: {report['machine']}.",
        "",
        f"| budget | metric | {head} |",
        "|---:|---|" + "---:|" * len(groups),
    ]
    for budget, by_group in report["budgets"].items():
        for metric in ("recall", "all", "tokens"):
            cells = " | ".join(f"{by_group[g][metric]:.3f}" if metric != "tokens"
                               else f"{by_group[g][metric]:.0f}" for g in groups)
            lines.append(f"| {budget} | {metric} | {cells} |")
    lines += ["", "Recall is the share of a question's gold evidence turns that the packed "
              "context cites; all is the share of questions with every evidence turn in the "
              "context. The ranked path is taken for every question (no conversation fits "
              "the budgets whole)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--budgets", default="300,1000")
    parser.add_argument("--docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    conversations = locomo_file.load(args.data)
    asked, _ = locomo.questions(conversations)
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "locomo.db") as mem:
        locomo_file.ingest(mem, conversations, progress=False)
        results = measure(mem, asked, budgets)
    report = {"data": args.data.name, "questions": len(asked), "tokenizer": TOKENIZER_NAME,
              "date": utcnow().strftime("%Y-%m-%d"), "machine": describe(),
              "budgets": results}
    print(json.dumps(report, indent=2))
    body = markdown(report)
    print(body)
    if args.docs:
        command = "python -m benchmarks.context_packing --docs"
        update_section(ROOT / "docs" / "benchmarks.md", TITLE, f"Command: `{command}`\n\n{body}")


if __name__ == "__main__":
    main()
