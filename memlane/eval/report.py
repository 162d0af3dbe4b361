"""Evaluation reports: JSON, a markdown summary and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import missing_extra
from .harness import BUDGETS, Answer


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metric_headers(ks: Sequence[int]) -> list[str]:
    return [*(f"R@{k}" for k in ks), *(f"all@{k}" for k in ks), *(f"nDCG@{k}" for k in ks),
            *(f"tok@{k}" for k in ks), *(f"R≤{b // 1000}k tok" for b in BUDGETS),
            "p50 ms", "p95 ms"]


def metric_cells(m: Mapping[str, Any], ks: Sequence[int], timing: Mapping[str, Any]) -> list[Any]:
    """One group's recall, all-evidence hit, nDCG, tokens and recall within each budget at
    each k, then the latency of its searches."""
    return [*(_fmt(m[f"recall@{k}"]) for k in ks), *(_fmt(m[f"all@{k}"]) for k in ks),
            *(_fmt(m[f"ndcg@{k}"]) for k in ks), *(round(m[f"tokens@{k}"]) for k in ks),
            *(_fmt(m.get(f"recall_within@{b}", "-")) for b in BUDGETS),
            timing["p50_ms"], timing["p95_ms"]]


def retriever_table(report: Mapping[str, Any], group: str, ks: Sequence[int]) -> str:
    """One row per retriever: recall, all-evidence hit and nDCG at each k for one group."""
    rows = [[name, result["metrics"][group]["n"],
             *metric_cells(result["metrics"][group], ks, result["latency"])]
            for name, result in report["retrievers"].items() if group in result["metrics"]]
    return table(rows, ["retriever", "n", *metric_headers(ks)])


def group_table(report: Mapping[str, Any], retriever: str, ks: Sequence[int]) -> str:
    """One row per group (question type) for one retriever, with each group's own latency
    (``latency_by_group``)."""
    result = report["retrievers"][retriever]
    rows = [[group, m["n"], *metric_cells(m, ks, result["latency_by_group"][group])]
            for group, m in result["metrics"].items()]
    return table(rows, ["group", "n", *metric_headers(ks)])


def category_table(report: Mapping[str, Any], k: int, names: Mapping[str, str]) -> str:
    """Recall@k per category (columns) for each retriever (rows)."""
    groups = [g for g in names if any(g in r["metrics"] for r in report["retrievers"].values())]
    headers = ["retriever", *(f"{g} {names[g]}" for g in groups)]
    rows = [[name, *(_fmt(r["metrics"][g][f"recall@{k}"]) if g in r["metrics"] else "-"
                     for g in groups)]
            for name, r in report["retrievers"].items()]
    return table(rows, headers)


def recall_by_group(report: Mapping[str, Any], k: int) -> str:
    """Recall@k of each retriever (rows) in each group (columns)."""
    groups = list(dict.fromkeys(g for r in report["retrievers"].values() for g in r["metrics"]))
    rows = [[name, *(_fmt(r["metrics"][g][f"recall@{k}"]) if g in r["metrics"] else "-"
                     for g in groups)]
            for name, r in report["retrievers"].items()]
    return table(rows, ["retriever", *groups])


def locomo_markdown(report: Mapping[str, Any]) -> str:
    ks = report["ks"]
    headline = [k for k in ks if k in (5, 10, 20)] or ks
    return "\n".join([
        f"LoCoMo evidence retrieval on `{report['data']}` ({report['conversations']} "
        f"conversations, {report['turns']} turns, {report['questions_scored']} questions "
        f"scored, {report['skipped_no_evidence']} without evidence skipped). Embedder "
        f"{report['embedder']}; tokens counted with the {report['tokenizer']} tokenizer. "
        f"Date {report['date']}; machine: {report['machine']}.", "",
        "Categories 1-4 together:", "",
        retriever_table(report, "cat1-4", headline), "",
        "Recall@10 per category:", "",
        category_table(report, 10, {**report["categories"], "cat1-4": "all"}),
    ])


def write_outputs(report: Mapping[str, Any], markdown: str, out: Path,
                  answers: Mapping[str, Sequence[Answer]] | None, *, plots: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    name = report["benchmark"]
    written = [out / f"{name}.json", out / f"{name}.md"]
    written[0].write_text(json.dumps(report, indent=2))
    written[1].write_text(markdown + "\n")
    if plots:
        written += plot(report, answers or {}, out)
    return written


def plot(report: Mapping[str, Any], answers: Mapping[str, Sequence[Answer]],
         out: Path) -> list[Path]:
    """Recall@k curves per group for each retriever, and the latency distribution."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise missing_extra("matplotlib", "eval") from exc
    ks = report["ks"]
    first = next(iter(report["retrievers"].values()))["metrics"]
    groups = list(first)
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), sharey=True)
    for ax, group in zip(axes if len(groups) > 1 else [axes], groups, strict=True):
        for name, result in report["retrievers"].items():
            m = result["metrics"].get(group)
            if m:
                ax.plot(ks, [m[f"recall@{k}"] for k in ks], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_title(f"{group} (n={first[group]['n']})", fontsize=9)
        ax.set_xlabel("k")
    (axes[0] if len(groups) > 1 else axes).set_ylabel("recall@k")
    (axes[0] if len(groups) > 1 else axes).legend(fontsize=8)
    fig.tight_layout()
    recall_png = out / f"{report['benchmark']}-recall.png"
    fig.savefig(recall_png, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, items in answers.items():
        ax.hist([a.latency_ms for a in items], bins=40, alpha=0.5, label=name)
    ax.set_xlabel("search latency (ms)")
    ax.set_ylabel("questions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    latency_png = out / f"{report['benchmark']}-latency.png"
    fig.savefig(latency_png, dpi=110)
    plt.close(fig)
    return [recall_png, latency_png]
