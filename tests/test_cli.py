"""The CLI through its real entry point (the installed ``memlane`` script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import env_with

SCRIPT = shutil.which("memlane", path=str(Path(sys.executable).parent)) or "memlane"


def run(db: Path, *args: str, stdin: str | None = None, fake: bool = True,
        code: int = 0) -> subprocess.CompletedProcess[str]:
    env = env_with(MEMLANE_EMBEDDER="fake") if fake else env_with()
    done = subprocess.run([SCRIPT, "--db", str(db), "--quiet", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


def out(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


def test_add_search_list_show_history_update_delete(db: Path) -> None:
    added = out(run(db, "add", "I moved to Lisbon in March.", "--user", "alice",
                    "--name", "alice", "--timestamp", "2026-03-14T10:00:00Z",
                    "--metadata", '{"topic": "home"}'))
    memory_id = added[0]["id"]
    assert added[0]["speaker"] == "alice" and added[0]["metadata"] == {"topic": "home"}
    hits = out(run(db, "search", "Lisbon", "--user", "alice", "--explain"))
    assert hits[0]["memory"]["kind"] == "window" and "keyword" in hits[0]["explain"]
    assert hits[0]["memory"]["source_ids"] == added[0]["source_ids"]
    assert hits[0]["id"] == memory_id and hits[0]["memory_ids"] == [memory_id]
    turns = out(run(db, "search", "Lisbon", "--user", "alice", "--kind", "turn"))
    assert turns[0]["memory"]["id"] == memory_id
    assert out(run(db, "list", "--user", "alice", "--filter", '{"metadata.topic": "home"}'))
    assert out(run(db, "show", memory_id, "--user", "alice"))["text"].startswith("I moved")
    updated = out(run(db, "update", memory_id, "I live in Lisbon.", "--user", "alice",
                      "--reason", "rephrased"))
    assert updated["version"] == 2
    assert out(run(db, "delete", memory_id, "--user", "alice"))["status"] == "deleted"
    ops = [e["op"] for e in out(run(db, "history", memory_id))]
    assert ops == ["add", "update", "delete"]
    assert out(run(db, "list", "--user", "alice")) == []


def test_table_output_is_for_people(db: Path) -> None:
    turn = out(run(db, "add", "tables are readable", "--user", "alice"))[0]
    text = run(db, "--table", "search", "tables", "--user", "alice").stdout
    assert text.splitlines()[0].split()[:2] == ["score", "id"]
    assert text.splitlines()[2].split()[1] == turn["id"]  # the turn, not its window
    assert "tables are readable" in text


def test_add_reads_json_messages_from_stdin(db: Path) -> None:
    messages = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]
    added = out(run(db, "add", "-", "--json", "--user", "u", stdin=json.dumps(messages)))
    assert [m["text"] for m in added] == ["one", "two"]


def test_context_command(db: Path) -> None:
    run(db, "add", "Priya is allergic to peanuts.", "--user", "priya")
    ctx = out(run(db, "context", "dinner", "--user", "priya", "--budget", "200"))
    assert ctx["complete"] and "peanuts" in ctx["text"] and ctx["tokens"] <= 200
    assert ctx["cited"] == {"1": ctx["memory_ids"][0]} and ctx["citations"] == {"1": ctx["sources"]}


def test_exit_codes_scripts_can_trust(db: Path) -> None:
    run(db, "add", "x", "--user", "alice")
    assert "empty" in run(db, "add", " ", "--user", "alice", code=2).stderr
    run(db, "search", "x", code=2)  # no scope
    run(db, "search", "x", "--user", "alice", "--filter", '{"nope": 1}', code=2)
    run(db, "search", "x", "--user", "alice", "--filter", "{not json", code=2)
    run(db, "show", "01NOTANID", "--user", "alice", code=3)
    run(db, "forget", "--user", "alice", code=2)  # needs --yes
    run(db, "no-such-command", code=2)


def test_forget_erases_the_scope(db: Path) -> None:
    run(db, "add", "alice data", "--user", "alice")
    run(db, "add", "bob data", "--user", "bob")
    erased = out(run(db, "forget", "--user", "alice", "--yes"))["erased"]
    assert erased["memories"] == 2 and erased["messages"] == 1  # the turn and its window
    assert out(run(db, "list", "--user", "alice")) == []
    assert len(out(run(db, "list", "--user", "bob"))) == 1


def test_export_then_import_round_trips(db: Path, tmp_path: Path) -> None:
    first = out(run(db, "add", "remember this", "--user", "alice", "--session", "s1"))[0]
    run(db, "update", first["id"], "remember this, please", "--user", "alice")
    run(db, "add", "and this", "--user", "bob")
    dump = tmp_path / "dump.jsonl"
    # header, 2 messages, 2 turns and their 2 windows
    assert out(run(db, "export", "--out", str(dump)))["exported_lines"] == 7
    copy = tmp_path / "copy.db"
    counts = out(run(copy, "import", str(dump)))
    # history: 4 adds, the turn's update and its window's rebuild
    assert (counts["memories"], counts["messages"], counts["history"]) == (4, 2, 6)
    again = out(run(copy, "import", str(dump)))
    assert again["memories"] == 0 and again["skipped_scopes"] == 2
    dump2 = tmp_path / "dump2.jsonl"
    run(copy, "export", "--out", str(dump2))
    assert dump.read_text().splitlines() == dump2.read_text().splitlines()


def test_import_rejects_files_that_are_not_what_they_claim(db: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": "world"}')
    assert "LoCoMo" in run(db, "import", str(bogus), code=2).stderr
    notjson = tmp_path / "x.jsonl"
    notjson.write_text("this is not json\n")
    run(db, "import", str(notjson), code=2)
    run(db, "import", str(tmp_path / "missing.json"), code=2)


def test_import_locomo_file(db: Path, tmp_path: Path) -> None:
    sample = [{
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Ann", "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a puppy."},
                {"speaker": "Ben", "dia_id": "D1:2", "text": "Cute!", "blip_caption": "a dog"},
            ],
            "session_2_date_time": "9:00 am on 9 June, 2023",
            "session_2": [{"speaker": "Ben", "dia_id": "D2:1", "text": "How is the puppy?"}],
            "session_3_date_time": "9:00 am on 9 July, 2023",
        },
        "qa": [],
    }]
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(sample))
    counts = out(run(db, "import", str(path)))
    assert counts == {"conversations": 1, "turns": 3, "memories": 3}
    listed = out(run(db, "list", "--user", "conv-x"))
    assert [m["source_ids"] for m in listed] == [["D1:1"], ["D1:2"], ["D2:1"]]
    assert listed[1]["text"] == "Cute! and shared a dog."
    assert listed[0]["event_time"].startswith("2023-05-08T13:56")
    assert listed[2]["session_id"] == "session_2"


def test_demo_runs_on_the_default_embedder(db: Path) -> None:
    text = run(db, "demo", fake=False).stdout
    assert "search: What food restrictions should I keep in mind?" in text
    assert "sources:" in text and "<memories>" in text
    again = run(db, "demo", fake=False).stdout
    assert again.splitlines()[0] == text.splitlines()[0]


def test_fake_llm_server_and_infer_through_the_cli(db: Path, tmp_path: Path) -> None:
    import socket

    script = tmp_path / "answers.json"
    script.write_text(json.dumps([
        {"facts": [{"text": "Alice lives in Paris.", "sources": [1]}]},
        {"action": "ADD", "target": None, "reason": "new"},
    ]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([SCRIPT, "dev", "fake-llm", "--script", str(script),
                               "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None and "127.0.0.1" in server.stderr.readline()
        env = {"MEMLANE_LLM_MODEL": "fake", "MEMLANE_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1"}
        added = json.loads(subprocess.run(
            [SCRIPT, "--db", str(db), "add", "I live in Paris.", "--user", "alice",
             "--name", "Alice", "--infer", "sync"], capture_output=True, text=True,
            env=env_with(MEMLANE_EMBEDDER="fake", **env), timeout=60, check=True).stdout)
        assert [m["kind"] for m in added] == ["turn", "fact"]
        jobs = out(run(db, "jobs"))
        assert jobs[0]["status"] == "done" and jobs[0]["usage"]["calls"] == 2
    finally:
        server.terminate()
        server.wait(10)


def test_migrate_sqlite_to_postgres_round_trips(db: Path, tmp_path: Path,
                                                postgres_server: str) -> None:
    from memlane.dev.postgres import fresh_database

    first = out(run(db, "add", "remember this", "--user", "alice", "--session", "s1"))[0]
    run(db, "update", first["id"], "remember this, please", "--user", "alice")
    second = out(run(db, "add", "and this", "--user", "alice", "--session", "s1"))[0]
    run(db, "delete", second["id"], "--user", "alice")
    run(db, "--tenant", "acme", "add", "other tenant", "--user", "bob")
    target = fresh_database(postgres_server)
    report = json.loads(run(db, "migrate", "--from", str(db), "--to", target).stdout)
    assert report["default"]["memories"] == 4 and report["acme"]["messages"] == 1
    for tenant in ("default", "acme"):
        sqlite_dump = run(db, "--tenant", tenant, "export").stdout
        pg_dump = subprocess.run([SCRIPT, "--db", target, "--tenant", tenant, "export"],
                                 capture_output=True, text=True, check=True,
                                 env=env_with(MEMLANE_EMBEDDER="fake")).stdout
        assert pg_dump == sqlite_dump and len(pg_dump.splitlines()) > 1
    hits = subprocess.run([SCRIPT, "--db", target, "search", "remember", "--user", "alice"],
                          capture_output=True, text=True, check=True,
                          env=env_with(MEMLANE_EMBEDDER="fake")).stdout
    assert "remember this, please" in hits
