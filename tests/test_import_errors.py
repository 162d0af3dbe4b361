"""``memlane import --on-error``: a bad message costs only itself, in every format.

Through the real entry point. A bad message here is one character longer than the write
path accepts, so these tests hold whatever that limit is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memlane.cli.parser import EXIT_PARTIAL
from memlane.exchange import beam
from memlane.write.ingest import MAX_MESSAGE_CHARS

from .test_cli import out, plain, run

TOO_LONG = "x" * (MAX_MESSAGE_CHARS + 1)


def stored_ids(db: Path, user: str) -> list[str]:
    return [m["id"] for m in out(run(db, "messages", "--user", user, "--limit", "1000"))]


def beam_chat_with_a_bad_message(root: Path) -> tuple[Path, list[str], str]:
    """A chat of two batches whose second batch holds a message too long to store in its
    middle; the chat's message ids in order, and the bad one's."""
    batches = []
    for number, anchor in ((1, "March-15-2024"), (2, "April-05-2024")):
        first = 10 * number
        turns = [[{"role": "user", "id": first + 2 * e, "content": f"question {e}",
                   **({"time_anchor": anchor} if e == 0 else {})},
                  {"role": "assistant", "id": first + 2 * e + 1, "content": f"answer {e}"}]
                 for e in range(3)]
        batches.append({"batch_number": number, "time_anchor": None, "turns": turns})
    batches[1]["turns"][1][0]["content"] = TOO_LONG
    chat = root / "7"
    chat.mkdir(parents=True)
    (chat / beam.CHAT_FILE).write_text(json.dumps(batches))
    ids = [str(m["id"]) for b in batches for e in b["turns"] for m in e]
    return chat, ids, "22"


def test_beam_import_leaves_out_the_bad_message_and_stores_the_rest(tmp_path: Path) -> None:
    chat, ids, bad = beam_chat_with_a_bad_message(tmp_path / "chats")
    db = tmp_path / "skip.db"
    done = run(db, "import", str(tmp_path / "chats"), code=EXIT_PARTIAL)
    result = json.loads(done.stdout)
    assert result["chats"] == 1 and result["messages"] == 12 and result["memories"] == 11
    [rejected] = result["rejected"]
    assert rejected["file"] == str(chat / beam.CHAT_FILE)
    assert (rejected["sample"], rejected["session"], rejected["message"]) == (
        "beam-7", "batch-2", bad)
    assert f"{MAX_MESSAGE_CHARS + 1:,} characters" in rejected["reason"]
    assert result["stopped"] is False
    assert stored_ids(db, "beam-7") == [i for i in ids if i != bad]  # in the chat's order
    assert f"message {bad}: " in done.stderr and "stored the rest" in done.stderr
    again = tmp_path / "again.db"  # the chat's own file, and its directory, import alike
    assert out(run(again, "import", str(chat / beam.CHAT_FILE), "--user-prefix", "p-",
                   code=EXIT_PARTIAL))["memories"] == 11
    assert stored_ids(again, "p-beam-7") == stored_ids(db, "beam-7")


def test_beam_import_can_stop_at_the_bad_message(tmp_path: Path) -> None:
    _, ids, bad = beam_chat_with_a_bad_message(tmp_path / "chats")
    db = tmp_path / "stop.db"
    done = run(db, "import", str(tmp_path / "chats" / "7"), "--on-error", "stop",
               code=EXIT_PARTIAL)
    result = json.loads(done.stdout)
    assert result["stopped"] is True and [r["message"] for r in result["rejected"]] == [bad]
    before = ids[:ids.index(bad)]  # the first batch and the start of the second
    assert stored_ids(db, "beam-7") == before and len(before) == 8
    assert "stopped at" in done.stderr and "what came before it is stored" in done.stderr


def locomo_with_a_bad_turn(path: Path) -> None:
    turns = [{"speaker": "Ann", "dia_id": f"D1:{t}", "text": f"turn {t}"} for t in range(1, 5)]
    turns[1]["text"] = TOO_LONG
    later = [{"speaker": "Ben", "dia_id": "D2:1", "text": "a later session"}]
    path.write_text(json.dumps([{"sample_id": "conv-1", "qa": [], "conversation": {
        "session_1_date_time": "1:56 pm on 8 May, 2023", "session_1": turns,
        "session_2_date_time": "1:56 pm on 9 May, 2023", "session_2": later}}]))


@pytest.mark.parametrize(("on_error", "stored"), [
    ("skip", ["D1:1", "D1:3", "D1:4", "D2:1"]), ("stop", ["D1:1"])])
def test_locomo_import_on_error(tmp_path: Path, on_error: str, stored: list[str]) -> None:
    path = tmp_path / "locomo.json"
    locomo_with_a_bad_turn(path)
    db = tmp_path / "l.db"
    result = out(run(db, "import", str(path), "--on-error", on_error, code=EXIT_PARTIAL))
    assert result["rejected"] == [{"file": str(path), "sample": "conv-1",
                                   "session": "session_1", "message": "D1:2",
                                   "reason": result["rejected"][0]["reason"]}]
    assert "characters" in result["rejected"][0]["reason"]
    assert result["stopped"] is (on_error == "stop")
    assert stored_ids(db, "conv-1") == stored


def export_with_bad_lines(tmp_path: Path) -> tuple[Path, list[str]]:
    """An export of five messages whose second and fourth message lines are broken."""
    source = tmp_path / "source.db"
    for n in range(5):
        run(source, "add", f"message {n}", "--user", "alice", "--key", f"k{n}")
    dump = tmp_path / "dump.jsonl"
    run(source, "export", "--out", str(dump))
    lines = dump.read_text().splitlines()
    messages = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "message"]
    ids = [json.loads(lines[i])["id"] for i in messages]
    row: dict[str, Any] = json.loads(lines[messages[1]])
    del row["content"]
    lines[messages[1]] = json.dumps(row)
    lines[messages[3]] = '{"type": "message", "id": "broken'
    dump.write_text("\n".join(lines) + "\n")
    return dump, ids


def test_export_import_leaves_out_bad_lines(tmp_path: Path) -> None:
    dump, ids = export_with_bad_lines(tmp_path)
    db = tmp_path / "restore.db"
    done = run(db, "import", str(dump), code=EXIT_PARTIAL)
    result = json.loads(done.stdout)
    assert result["restored"]["messages"] == 3 and result["stopped"] is False
    first, second = result["rejected"]
    assert (first["line"], first["message"], second["line"]) == ("3", ids[1], "5")
    assert "content" in first["reason"] and "not JSON" in second["reason"]
    assert sorted(stored_ids(db, "alice")) == sorted([ids[0], ids[2], ids[4]])
    assert "line 3" in done.stderr and "line 5" in done.stderr
    table = run(tmp_path / "t.db", "import", str(dump), "--table", code=EXIT_PARTIAL).stdout
    assert "restored: 3 messages" in table and "left out:" in table and "not JSON" in table


def test_export_import_can_stop_at_the_first_bad_line(tmp_path: Path) -> None:
    dump, ids = export_with_bad_lines(tmp_path)
    db = tmp_path / "restore.db"
    result = out(run(db, "import", str(dump), "--on-error", "stop", code=EXIT_PARTIAL))
    assert result["stopped"] is True and [r["line"] for r in result["rejected"]] == ["3"]
    assert stored_ids(db, "alice") == [ids[0]]


def test_a_clean_import_exits_0_with_nothing_rejected(tmp_path: Path) -> None:
    chat, _, _ = beam_chat_with_a_bad_message(tmp_path / "chats")
    batches = json.loads((chat / beam.CHAT_FILE).read_text())
    batches[1]["turns"][1][0]["content"] = "short enough"
    (chat / beam.CHAT_FILE).write_text(json.dumps(batches))
    result = out(run(tmp_path / "ok.db", "import", str(chat), "--format", "beam"))
    assert result == {"chats": 1, "messages": 12, "memories": 12, "rejected": [],
                      "stopped": False}


def test_import_through_a_server_leaves_out_the_bad_message(
        tmp_path: Path, memlane_server: tuple[str, str]) -> None:
    url, token = memlane_server
    _, ids, bad = beam_chat_with_a_bad_message(tmp_path / "chats")
    done = plain("--db", url, "--api-key", token, "--quiet", "import",
                 str(tmp_path / "chats"), "--user-prefix", "served-", code=EXIT_PARTIAL)
    assert [r["message"] for r in json.loads(done.stdout)["rejected"]] == [bad]
    listed = json.loads(plain("--db", url, "--api-key", token, "messages", "--user",
                              "served-beam-7", "--limit", "100").stdout)
    assert [m["id"] for m in listed] == [i for i in ids if i != bad]
