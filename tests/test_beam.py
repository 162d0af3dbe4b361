"""BEAM chats: the reader, ``memlane eval beam`` (checked against the reference scorer) and
``memlane import`` of chat directories."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memlane.errors import InvalidInputError
from memlane.exchange import beam

from .conftest import SHARED_DATA
from .test_cli import out, run
from .test_eval import REFERENCE, TOPICS

BEAM_DEV = SHARED_DATA / "beam-100k-dev"
ABILITIES = ["information_extraction", "knowledge_update", "contradiction_resolution",
             "multi_session_reasoning", "summarization"]


def beam_chat(seed: int) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """A small chat in the BEAM format (three batches, anchors on their first messages, as
    the data has them) and probing questions whose evidence takes every form the data uses:
    a list, a mapping of lists, a nested list, ids that are no message, none at all."""
    rng = random.Random(seed)
    anchors = ["March-15-2024", "April-05-2024", "April-25-2024"]
    batches, ids, next_id = [], [], 0
    for number, anchor in enumerate(anchors, 1):
        turns = []
        for exchange in range(4):
            topic = rng.choice(TOPICS)
            user = {"role": "user", "id": next_id,
                    "content": f"Tell me about my {topic} and the {rng.choice(TOPICS)}."}
            if exchange == 0:
                user |= {"time_anchor": anchor, "index": f"{number},1",
                         "question_type": "main_question"}
            answer = {"role": "assistant", "id": next_id + 1,
                      "content": f"Your {topic} plan looks fine; keep at it."}
            turns.append([user, answer])
            ids += [(next_id, topic), (next_id + 1, topic)]
            next_id += 2
        batches.append({"batch_number": number, "time_anchor": None, "turns": turns})
    questions: dict[str, list[dict[str, Any]]] = {"abstention": [
        {"question": "What did I say about skydiving?", "ideal_response": "Nothing."}]}
    for n, ability in enumerate(ABILITIES):
        items = []
        for q in range(3):
            picks = rng.sample(ids, rng.randint(1, 3))
            cited: Any = [p[0] for p in picks]
            if ability == "contradiction_resolution":
                cited = {"first_statement": cited[:1], "second_statement": cited[1:]}
            elif q == 1:
                cited = [*cited[:-1], [cited[-1], 999]]  # nested, with an id of no message
            if n == 0 and q == 2:
                cited = [] if seed % 2 else [998]  # nothing left to find
            items.append({"question": f"What about my {picks[0][1]}?", "answer": "x",
                          "source_chat_ids": cited})
        questions[ability] = items
    return batches, questions


def write_chats(root: Path, seeds: dict[str, int]) -> Path:
    for name, seed in seeds.items():
        batches, questions = beam_chat(seed)
        (root / name).mkdir(parents=True)
        (root / name / beam.CHAT_FILE).write_text(json.dumps(batches))
        (root / name / beam.QUESTIONS_FILE).write_text(json.dumps(questions))
    return root


def as_locomo(root: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The chats at ``root`` as LoCoMo samples for the reference scorer (message id N is
    turn D1:N, each ability a category), with each chat's directory by its user id."""
    samples, names = [], {}
    for directory in beam.chat_dirs(root):
        messages = [m for batch in json.loads((directory / beam.CHAT_FILE).read_text())
                    for exchange in batch["turns"] for m in exchange]
        asked = json.loads((directory / beam.QUESTIONS_FILE).read_text())
        qa = [{"question": item["question"], "category": ability,
               "evidence": [f"D1:{i}" for i in flat(item.get("source_chat_ids"))]}
              for ability, items in asked.items() for item in items]
        turns = [{"speaker": m["role"], "dia_id": f"D1:{m['id']}", "text": m["content"]}
                 for m in messages]
        samples.append({"sample_id": f"beam-{directory.name}", "qa": qa, "conversation": {
            "session_1_date_time": "1:00 pm on 1 May, 2024", "session_1": turns}})
        names[f"beam-{directory.name}"] = directory.name
    return samples, names


def flat(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [i for v in value.values() for i in flat(v)]
    if isinstance(value, list):
        return [i for v in value for i in flat(v)]
    return [] if value is None else [value]


def agree_with_reference(tmp_path: Path, data: Path, report: dict[str, Any], dump: Path,
                         retriever: str) -> None:
    """The report's metrics per ability are those the reference scorer computes from the
    same rankings, written in its LoCoMo form."""
    samples, _ = as_locomo(data)
    locomo_data, rankings = tmp_path / "as-locomo.json", tmp_path / "as-locomo.jsonl"
    locomo_data.write_text(json.dumps(samples))
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    rankings.write_text("".join(json.dumps(
        {**line, "ranked": [[f"D1:{i}" for i in unit] for unit in line["ranked"]]}) + "\n"
        for line in lines))
    ks = ",".join(map(str, report["ks"]))
    reference = json.loads(subprocess.run(
        [sys.executable, str(REFERENCE), str(locomo_data), str(rankings), "--k", ks],
        capture_output=True, text=True, check=True).stdout)
    ours = report["retrievers"][retriever]["metrics"]
    assert set(reference["categories"]) == set(ours) - {"all"}
    assert reference["skipped_no_evidence"] == (report["skipped_abstention"]
                                                + report["skipped_no_evidence"])
    for ability, ref in reference["categories"].items():
        assert ref["n"] == ours[ability]["n"]
        for metric, value in ref.items():
            assert round(value, 3) == round(ours[ability][metric], 3), (ability, metric)


# --- the reader -------------------------------------------------------------------------

def test_reader_keeps_ids_order_and_times(tmp_path: Path) -> None:
    root = write_chats(tmp_path / "chats", {"10": 1, "2": 2, "notes": 3})
    (root / "empty").mkdir()  # no chat.json: not a chat
    chats = beam.load(root, questions=True)
    assert [c.name for c in chats] == ["2", "10", "notes"]
    chat = chats[0]
    assert chat.user_id == "beam-2" and chat.message_count == 24
    messages = [m for b in chat.batches for m in b.messages]
    assert [m["id"] for m in messages] == [str(i) for i in range(24)]
    times = [m["timestamp"] for m in messages]
    assert times == sorted(set(times))  # strictly increasing
    assert times[0] == "2024-03-15T00:00:00+00:00" and times[1] == "2024-03-15T00:00:01+00:00"
    assert chat.batches[1].messages[0]["timestamp"] == "2024-04-05T00:00:00+00:00"
    assert [b.number for b in chat.batches] == [1, 2, 3]
    assert beam.load(root / "2" / beam.CHAT_FILE)[0].questions == {}  # only when asked
    assert [c.name for c in beam.load(root / "10")] == ["10"]


def test_times_continue_where_a_batch_has_no_anchor_and_never_go_back(tmp_path: Path) -> None:
    batches = [
        {"batch_number": 1, "time_anchor": "May 2, 2024",
         "turns": [[{"role": "user", "id": 0, "content": "a"},
                    {"role": "assistant", "id": 1, "content": "b"}]]},
        {"batch_number": 2, "time_anchor": None,
         "turns": [[{"role": "user", "id": 2, "content": "c"}]]},
        {"batch_number": 3, "time_anchor": "2024-05-01",  # earlier: the order wins
         "turns": [[{"role": "user", "id": 3, "content": "d"}]]},
    ]
    (tmp_path / beam.CHAT_FILE).write_text(json.dumps(batches))
    chat = beam.load(tmp_path)[0]
    times = [m["timestamp"][11:19] for b in chat.batches for m in b.messages]
    assert times == ["00:00:00", "00:00:01", "00:00:02", "00:00:03"]


def test_evidence_takes_lists_mappings_and_nested_lists() -> None:
    assert beam.evidence({"source_chat_ids": [4, 2, 4]}) == ["4", "2"]
    assert beam.evidence({"source_chat_ids": {"a": [1], "b": [2, 1]}}) == ["1", "2"]
    assert beam.evidence({"source_chat_ids": [3, [5, 6]]}) == ["3", "5", "6"]
    assert beam.evidence({"question": "abstention: none"}) == []


@pytest.mark.parametrize(("chat", "questions", "expected"), [
    ([1, 2], None, "is not a BEAM chat"),
    ({"turns": []}, None, "is not a BEAM chat"),
    ([{"batch_number": 1, "turns": [[{"role": "user", "id": 0, "content": "x"}]]}], None,
     "first message has no time anchor"),
    ([{"batch_number": 1, "time_anchor": "someday", "turns": [[{"role": "user", "id": 0,
                                                               "content": "x"}]]}],
     None, "unrecognised"),
    ([{"batch_number": 1, "time_anchor": "March-15-2024",
       "turns": [[{"role": "user", "content": "x"}]]}], None, "has no 'id'"),
    ([{"batch_number": 1, "time_anchor": "March-15-2024",
       "turns": [[{"role": "user", "id": 0, "content": 5}]]}], None, "no 'content' string"),
    ([{"batch_number": 1, "time_anchor": "March-15-2024",
       "turns": [[{"role": "user", "id": 0, "content": "x"},
                  {"role": "user", "id": 0, "content": "y"}]]}], None, "appears twice"),
    ([{"batch_number": 1, "time_anchor": "March-15-2024", "turns": [{"role": "user"}]}],
     None, "is not a list of messages"),
    ([{"batch_number": 1, "time_anchor": "March-15-2024",
       "turns": [[{"role": "user", "id": 0, "content": "x"}]]}], [1], "probing questions"),
])
def test_files_that_are_not_beam_are_refused(tmp_path: Path, chat: Any, questions: Any,
                                             expected: str) -> None:
    (tmp_path / beam.CHAT_FILE).write_text(json.dumps(chat))
    if questions is not None:
        (tmp_path / beam.QUESTIONS_FILE).write_text(json.dumps(questions))
    with pytest.raises(InvalidInputError, match=expected):
        beam.load(tmp_path, questions=questions is not None)


def test_a_directory_without_chats_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="holds no BEAM chat"):
        beam.load(tmp_path)
    (tmp_path / beam.CHAT_FILE).write_text("{not json")
    with pytest.raises(InvalidInputError, match="not a readable JSON file"):
        beam.load(tmp_path)


# --- memlane eval beam ------------------------------------------------------------------

@pytest.mark.parametrize("retriever", ["hybrid", "bm25"])
def test_eval_beam_agrees_with_the_reference_scorer(tmp_path: Path, retriever: str) -> None:
    data = write_chats(tmp_path / "chats", {"1": 5, "2": 6})
    dump, report_dir = tmp_path / "rankings.jsonl", tmp_path / "report"
    report = out(run(tmp_path / "unused.db", "eval", "beam", "--data", str(data),
                     "--retriever", retriever, "--dump-rankings", str(dump),
                     "--out", str(report_dir), "--no-plots"))
    # per chat: 15 questions with evidence (one of them with none that is a message in
    # chat 2), 1 abstention; chat 1's empty list and chat 2's [998] are skipped
    assert report["chats"] == 2 and report["messages"] == 48
    assert report["skipped_abstention"] == 2 and report["skipped_no_evidence"] == 2
    assert report["questions_scored"] == 28
    assert report["dropped_evidence_ids"] == 1 + 2 * 4  # 998, and 999 in each nested list
    ours = report["retrievers"][retriever]["metrics"]
    assert set(ours) == {*ABILITIES, "all"} and ours["all"]["n"] == 28
    assert set(report["retrievers"][retriever]["latency_by_group"]) == set(ours)
    assert "recall_within@2000" in ours["all"] and report["messages_left_out"] == []
    agree_with_reference(tmp_path, data, report, dump, retriever)
    markdown = (report_dir / "beam.md").read_text()
    assert "| contradiction_resolution |" in markdown and "| bm25 |" in markdown
    assert "2 abstention questions skipped" in markdown


def test_eval_beam_ablation_and_errors(tmp_path: Path) -> None:
    data = write_chats(tmp_path / "chats", {"1": 7})
    report = out(run(tmp_path / "x.db", "eval", "beam", "--data", str(data / "1"),
                     "--ablation", "--k", "1,5"))
    assert list(report["retrievers"])[:3] == ["hybrid", "bm25", "dense"]
    assert "+ windows" in report["retrievers"] and report["ks"] == [1, 5]
    run(tmp_path / "x.db", "eval", "beam", "--data", str(tmp_path / "none"), code=2)
    (data / "1" / beam.QUESTIONS_FILE).unlink()
    assert "probing_questions.json" in run(tmp_path / "x.db", "eval", "beam", "--data",
                                            str(data), code=2).stderr


@pytest.mark.skipif(not BEAM_DEV.is_dir(), reason="the BEAM dev chats are not here")
def test_eval_beam_on_a_real_chat(tmp_path: Path) -> None:
    dump = tmp_path / "rankings.jsonl"
    report = out(run(tmp_path / "x.db", "eval", "beam", "--data", str(BEAM_DEV / "1"),
                     "--k", "1,5,10", "--dump-rankings", str(dump)))
    assert report["messages"] == 188 and report["questions_scored"] == 18
    assert report["skipped_abstention"] == 2 and report["dropped_evidence_ids"] == 0
    assert report["retrievers"]["hybrid"]["metrics"]["all"]["recall@10"] > 0.3
    agree_with_reference(tmp_path, BEAM_DEV / "1", report, dump, "hybrid")
