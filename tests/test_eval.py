"""The evaluation harness: metrics, agreement with the reference scorer, the loaders."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memlane import FakeEmbedder, Memory
from memlane.eval import knowledge_update, longmemeval
from memlane.eval.harness import Answer, Question
from memlane.eval.metrics import clean_locomo_evidence, percentile, recall_within, scores_at

from .conftest import SHARED_DATA
from .test_cli import run

REFERENCE = SHARED_DATA.parent / "tools" / "locomo_score.py"
TOPICS = ["guitar", "lisbon", "marathon", "pottery", "sushi", "violin", "kayak", "garden",
          "chess", "camera", "novel", "puppy"]


def test_clean_evidence_follows_the_data_readme() -> None:
    valid = {"D1:3", "D30:5", "D2:1"}
    assert clean_locomo_evidence(["D1:3; D30:05", "D2:1 D9:9", "D1:3", 7], valid) == [
        "D1:3", "D30:5", "D2:1"]


def test_scores_at_by_hand() -> None:
    ranked = [["a"], ["x"], ["b", "c"], ["y"]]
    s = scores_at(ranked, ["a", "b"], 3)
    assert s == {"recall@3": 1.0, "all@3": 1.0, "any@3": 1.0,
                 "ndcg@3": pytest.approx((1 + 1 / 2) / (1 + 1 / 1.5849625007211563))}
    s1 = scores_at(ranked, ["a", "b"], 1)
    assert (s1["recall@1"], s1["all@1"], s1["ndcg@1"]) == (0.5, 0.0, 1.0)
    assert scores_at(ranked, ["z"], 4)["ndcg@4"] == 0.0
    assert percentile([1, 2, 3, 4], 50) == 2.5


def test_recall_within_a_budget_by_hand() -> None:
    ranked, tokens = [["a"], ["x"], ["b", "c"], ["y"]], [300, 500, 400, 10]
    assert recall_within(ranked, tokens, ["a", "b"], 299) == 0.0
    assert recall_within(ranked, tokens, ["a", "b"], 800) == 0.5  # a and x fit, b does not
    assert recall_within(ranked, tokens, ["a", "b"], 1_200) == 1.0
    assert recall_within(ranked, [300, 2_000, 1, 1], ["a", "b"], 1_000) == 0.5  # stops at x
    with pytest.raises(ValueError, match="one token count"):
        recall_within(ranked, [1], ["a"], 10)


def locomo_case(seed: int) -> list[dict[str, Any]]:
    """Small conversations with questions whose evidence mixes findable and odd entries."""
    rng = random.Random(seed)
    samples = []
    for c in range(2):
        conv: dict[str, Any] = {"speaker_a": "Ann", "speaker_b": "Ben"}
        ids = []
        for s in range(1, 4):
            conv[f"session_{s}_date_time"] = f"{s}:15 pm on {s + 2} May, 2023"
            turns = []
            for t in range(1, 7):
                topic = rng.choice(TOPICS)
                turns.append({"speaker": rng.choice(["Ann", "Ben"]), "dia_id": f"D{s}:{t}",
                              "text": f"We talked about the {topic} and {rng.choice(TOPICS)}."})
                ids.append((f"D{s}:{t}", topic))
            conv[f"session_{s}"] = turns
        qa = []
        for q in range(12):
            picks = rng.sample(ids, rng.randint(1, 3))
            evidence = [p[0] if rng.random() < 0.7 else p[0].replace(":", ":0") for p in picks]
            if q % 5 == 0:
                evidence.append("D9:99")
            if q == 11:
                evidence = ["D42:1"]
            qa.append({"question": f"What about the {picks[0][1]}?", "answer": "x",
                       "evidence": ["; ".join(evidence)] if q % 3 == 0 else evidence,
                       "category": 1 + q % 5})
        samples.append({"sample_id": f"conv-{c}", "conversation": conv, "qa": qa})
    return samples


@pytest.mark.parametrize("retriever", ["hybrid", "bm25"])
def test_report_agrees_with_the_reference_scorer(tmp_path: Path, retriever: str) -> None:
    data = tmp_path / "case.json"
    data.write_text(json.dumps(locomo_case(3)))
    dump, out = tmp_path / "rankings.jsonl", tmp_path / "report"
    report = json.loads(run(tmp_path / "unused.db", "eval", "locomo", "--data", str(data),
                            "--retriever", retriever, "--dump-rankings", str(dump),
                            "--out", str(out), "--no-plots").stdout)
    assert report["questions_scored"] == 22 and report["skipped_no_evidence"] == 2
    reference = json.loads(subprocess.run(
        [sys.executable, str(REFERENCE), str(data), str(dump)],
        capture_output=True, text=True, check=True).stdout)
    ours = report["retrievers"][retriever]["metrics"]
    pairs = [(reference["cat1-4"], ours["cat1-4"])]
    pairs += [(reference["categories"][c], ours[c]) for c in reference["categories"]]
    for ref, mine in pairs:
        assert ref["n"] == mine["n"]
        for metric, value in ref.items():
            assert round(value, 3) == round(mine[metric], 3), metric
    within = recall_from_dump(json.loads(data.read_text()), dump, 2_000)
    assert round(within, 6) == round(ours["cat1-4"]["recall_within@2000"], 6)
    assert (out / "locomo.json").exists() and "| bm25 |" in (out / "locomo.md").read_text()


def recall_from_dump(samples: list[dict[str, Any]], dump: Path, budget: int) -> float:
    """Recall within ``budget`` tokens over categories 1-4, from the rankings file alone
    (its ``ranked`` and ``tokens``) and the data."""
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    values = []
    for line in lines:
        sample = next(s for s in samples if s["sample_id"] == line["sample_id"])
        qa = sample["qa"][line["qa_index"]]
        conv = sample["conversation"]
        valid = {t["dia_id"] for k, turns in conv.items()
                 if k.startswith("session_") and isinstance(turns, list) for t in turns}
        gold = clean_locomo_evidence(qa["evidence"], valid)
        if gold and qa["category"] in (1, 2, 3, 4):
            assert len(line["tokens"]) == len(line["ranked"])
            values.append(recall_within(line["ranked"], line["tokens"], gold, budget))
    return sum(values) / len(values)


def test_plots_are_written(tmp_path: Path) -> None:
    data = tmp_path / "case.json"
    data.write_text(json.dumps(locomo_case(4)))
    run(tmp_path / "x.db", "eval", "locomo", "--data", str(data), "--out", str(tmp_path / "o"))
    for name in ("locomo-recall.png", "locomo-latency.png"):
        assert (tmp_path / "o" / name).read_bytes()[:4] == b"\x89PNG"


def test_eval_rejects_files_of_the_wrong_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2, 3]")
    run(tmp_path / "x.db", "eval", "locomo", "--data", str(bad), code=2)
    run(tmp_path / "x.db", "eval", "longmemeval", "--data", str(bad), code=2)
    run(tmp_path / "x.db", "eval", "locomo", "--data", str(tmp_path / "none.json"), code=2)


def longmemeval_case() -> list[dict[str, Any]]:
    def session(topic: str, answer: bool) -> list[dict[str, Any]]:
        return [{"role": "user", "content": f"Let me tell you about my {topic} plans.",
                 "has_answer": answer},
                {"role": "assistant", "content": "Sounds great, tell me more."}]

    items = []
    for i, topic in enumerate(["violin", "kayak", "pottery"]):
        others = [t for t in TOPICS if t != topic][:3]
        items.append({
            "question_id": f"q{i}" + ("_abs" if i == 2 else ""),
            "question_type": "single-session-user" if i else "multi-session",
            "question": f"What are my {topic} plans?", "answer": topic,
            "question_date": "2023/06/01 (Thu) 10:00",
            "haystack_session_ids": ["s-a", "s-b", "s-c", "s-d"],
            "haystack_dates": ["2023/05/01 (Mon) 09:00", "2023/05/03 (Wed) 09:00",
                               "2023/05/02 (Tue) 09:00", "2023/05/04 (Thu) 09:00"],
            "haystack_sessions": [session(others[0], False), session(topic, True),
                                  session(others[1], False), session(others[2], False)],
            "answer_session_ids": [] if i == 2 else ["s-b"],
        })
    return items


def test_longmemeval_scores_turns_and_sessions(tmp_path: Path) -> None:
    data = tmp_path / "lme.json"
    data.write_text(json.dumps(longmemeval_case()))
    with Memory(tmp_path / "l.db", embedder=FakeEmbedder()) as mem:
        result = longmemeval.run(mem, data, retriever="bm25", ks=(1, 3), progress=False)
    report = result.report
    assert report["questions_scored"] == 2 and report["skipped_abstention"] == 1
    pooled = report["retrievers"]["bm25"]["metrics"]["all"]
    assert pooled["turn_recall_any@1"] == 1.0 and pooled["session_recall_all@1"] == 1.0
    assert set(report["retrievers"]["bm25"]["metrics"]) == {
        "all", "multi-session", "single-session-user"}
    assert result.answers["bm25"][0].ranked[0] == ["s-b:0"]
    assert "| bm25 | session |" in longmemeval.markdown(report)


def test_knowledge_update_generator_is_deterministic_and_consistent() -> None:
    first, truths = knowledge_update.generate(5, seed=9)
    again, _ = knowledge_update.generate(5, seed=9)
    assert first == again
    for sample in first:
        turns = {t["dia_id"]: t for k, v in sample["conversation"].items()
                 if k.startswith("session_") and isinstance(v, list) for t in v}
        for _question, current, stale in truths[sample["sample_id"]]:
            assert current in turns and stale and all(s in turns for s in stale)
            assert _order(current) > max(map(_order, stale))


def _order(dia_id: str) -> tuple[int, int]:
    s, t = dia_id[1:].split(":")
    return int(s), int(t)


def test_stale_first_rate() -> None:
    q1 = Question(("a", 0), "a", "q", "g", ("new",))
    q2 = Question(("a", 1), "a", "q", "g", ("new2",))
    answers = [Answer(q1, [["old"], ["new"]], [1, 2], 1.0),
               Answer(q2, [["new2"], ["old2"]], [1, 2], 1.0)]
    stale = {("a", 0): {"old"}, ("a", 1): {"old2"}}
    assert knowledge_update.stale_first_rate(answers, stale) == 0.5


def test_knowledge_update_with_the_write_path_ranks_current_values_first(
        tmp_path: Path) -> None:
    with Memory(tmp_path / "ku.db", embedder=FakeEmbedder()) as plain:
        without = knowledge_update.run(plain, people=6, seed=3, ks=(1, 5), progress=False)
    with Memory(tmp_path / "ku2.db", embedder=FakeEmbedder(),
                llm=knowledge_update.scripted_llm()) as mem:
        result = knowledge_update.run(mem, people=6, seed=3, ks=(1, 5), progress=False)
        assert {j.status for j in mem.jobs(limit=1000)} == {"done"}
    hybrid = result.report["retrievers"]["hybrid"]
    before = without.report["retrievers"]["hybrid"]
    # with the lexical test embedder; the MiniLM figures are in docs/benchmarks.md
    assert hybrid["stale_first_rate"] < 0.5 * before["stale_first_rate"]
    assert hybrid["metrics"]["knowledge-update"]["recall@1"] > (
        before["metrics"]["knowledge-update"]["recall@1"] + 0.3)
