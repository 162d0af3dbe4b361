"""``memlane eval``: retrieval benchmarks, each on a fresh temporary store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..memory import Memory
from .parser import Subparsers


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(k) for k in text.split(",")}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--k takes integers separated by commas") from exc
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("every k must be at least 1")
    return ks


def _common(sp: argparse.ArgumentParser, default_ks: str) -> None:
    sp.add_argument("--retriever", choices=("hybrid", "bm25", "dense"), default="hybrid",
                    help="the configured retriever; the others run as baselines")
    sp.add_argument("--k", type=_ks, default=_ks(default_ks), help="cut-offs, e.g. 1,5,10")
    sp.add_argument("--out", type=Path, help="directory for the JSON, markdown and plots")
    sp.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def _check_data(path: Path) -> Path:
    if not path.is_file():
        raise UsageError(f"no such data file: {path}")
    return path


def _publish(result: dict[str, Any], answers: Any, markdown: str,
             a: argparse.Namespace) -> dict[str, Any]:
    """Write the report files (with --out), show the summary on stderr, return the JSON."""
    from ..eval import report

    if a.out:
        report.write_outputs(result, markdown, a.out, answers, plots=not a.no_plots)
    print(markdown, file=sys.stderr)
    return result


def cmd_locomo(mem: Memory, a: argparse.Namespace) -> Any:
    from ..eval import locomo, report

    result = locomo.run(mem, _check_data(a.data), retriever=a.retriever, ks=a.k,
                        progress=not a.quiet, ablation=a.ablation)
    if a.dump_rankings:
        locomo.dump_rankings(result.answers[a.retriever], a.dump_rankings)
    return _publish(result.report, result.answers, report.locomo_markdown(result.report), a)


def cmd_beam(mem: Memory, a: argparse.Namespace) -> Any:
    from ..eval import beam, locomo

    if not a.data.exists():
        raise UsageError(f"no such data directory or file: {a.data}")
    result = beam.run(mem, a.data, retriever=a.retriever, ks=a.k, progress=not a.quiet,
                      ablation=a.ablation)
    if a.dump_rankings:
        locomo.dump_rankings(result.answers[a.retriever], a.dump_rankings)
    return _publish(result.report, result.answers, beam.markdown(result.report), a)


def cmd_longmemeval(mem: Memory, a: argparse.Namespace) -> Any:
    from ..eval import longmemeval

    result = longmemeval.run(mem, _check_data(a.data), retriever=a.retriever, ks=a.k,
                             progress=not a.quiet)
    return _publish(result.report, result.answers, longmemeval.markdown(result.report), a)


def cmd_knowledge_update(mem: Memory, a: argparse.Namespace) -> Any:
    from ..eval import knowledge_update

    result = knowledge_update.run(mem, people=a.people, seed=a.seed, retriever=a.retriever,
                                  ks=a.k, progress=not a.quiet)
    return _publish(result.report, result.answers, knowledge_update.markdown(result.report), a)


def register(sub: Subparsers) -> None:
    ev = sub.add_parser("eval", help="retrieval benchmarks (on a fresh temporary store)")
    which = ev.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK",
                              help="the benchmark to run")
    sp = which.add_parser("locomo", help="LoCoMo evidence retrieval")
    sp.add_argument("--data", type=Path, required=True, help="a LoCoMo-format JSON file")
    sp.add_argument("--dump-rankings", type=Path,
                    help="write the configured retriever's rankings for locomo_score.py")
    sp.add_argument("--ablation", action="store_true",
                    help="also score each step of the default pipeline added in turn")
    _common(sp, "1,3,5,10,20,50")
    sp.set_defaults(handler=cmd_locomo, temporary_store=True)
    sp = which.add_parser("beam", help="BEAM evidence retrieval")
    sp.add_argument("--data", type=Path, required=True,
                    help="a BEAM chat directory (chat.json, probing_questions.json) or a "
                         "directory of them")
    sp.add_argument("--dump-rankings", type=Path,
                    help="write the configured retriever's rankings, one line per question "
                         "(sample_id: the chat's user id, qa_index: the question's position "
                         "among the chat's questions in file order)")
    sp.add_argument("--ablation", action="store_true",
                    help="also score each step of the default pipeline added in turn")
    _common(sp, "1,3,5,10,20,50")
    sp.set_defaults(handler=cmd_beam, temporary_store=True)
    sp = which.add_parser("longmemeval", help="LongMemEval evidence retrieval")
    sp.add_argument("--data", type=Path, required=True, help="a LongMemEval-format JSON file")
    _common(sp, "1,3,5,10,30,50")
    sp.set_defaults(handler=cmd_longmemeval, temporary_store=True)
    sp = which.add_parser("knowledge-update",
                          help="generated conversations whose facts change over time")
    sp.add_argument("--people", type=int, default=40, help="how many people to generate")
    sp.add_argument("--seed", type=int, default=1, help="random seed of the generator")
    sp.add_argument("--scripted-llm", action="store_true",
                    help="extract facts with a scripted stand-in LLM that reads the "
                         "generated sentences exactly (tests reconcile and ranking)")
    _common(sp, "1,3,5,10")
    sp.set_defaults(handler=cmd_knowledge_update, temporary_store=True)
