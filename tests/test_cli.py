"""The CLI through its real entry point (the installed ``memlane`` script)."""

from __future__ import annotations

import argparse
import json
import os
import re
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


def plain(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """The command as given: no global options put in front."""
    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True,
                          env=env_with(MEMLANE_EMBEDDER="fake"), timeout=120)
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


def test_an_idempotency_key_never_returns_another_users_add(db: Path) -> None:
    run(db, "add", "Alice secret: code 9911", "--user", "alice", "--key", "req-1")
    bobs = out(run(db, "add", "Bob: buy milk", "--user", "bob", "--key", "req-1"))
    assert [r["text"] for r in bobs] == ["Bob: buy milk"]  # bob's own key
    done = run(db, "add", "Bob: buy eggs", "--user", "bob", "--key", "req-1", code=4)
    assert "9911" not in done.stdout + done.stderr and "req-1" in done.stderr
    assert [r["id"] for r in out(run(db, "list", "--user", "bob"))
            if r["kind"] == "turn"] == [bobs[0]["id"]]
    again = out(run(db, "add", "Alice secret: code 9911", "--user", "alice", "--key", "req-1"))
    assert [r["text"] for r in again] == ["Alice secret: code 9911"]
    assert len(out(run(db, "list", "--user", "alice"))) == 1


def test_forget_erases_the_scope(db: Path) -> None:
    run(db, "add", "alice data", "--user", "alice")
    run(db, "add", "bob data", "--user", "bob")
    erased = out(run(db, "forget", "--user", "alice", "--yes"))["erased"]
    assert erased == {"messages": 1, "memories": 2, "vectors": 2,  # the turn and its window
                      "history": 2, "adds": 1, "jobs": 0, "wal_truncated": True,
                      "verified_clean": True}
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
    assert counts["restored"] == {"messages": 2, "memories": 4}
    assert counts["history"] == 6
    assert [(s["user_id"], s["session_id"], s["created"]) for s in counts["scopes"]] == [
        ("alice", "s1", True), ("bob", None, True)]
    again = out(run(copy, "import", str(dump)))
    assert again["restored"] == {"messages": 0, "memories": 0}
    assert again["skipped"] == {"messages": 2, "memories": 4}
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
    assert counts == {"conversations": 1, "turns": 3, "memories": 3, "rejected": [],
                      "stopped": False}
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
    with subprocess.Popen([SCRIPT, "dev", "fake-llm", "--script", str(script), "--port",
                           str(port)], stderr=subprocess.PIPE, text=True) as server:
        try:
            assert server.stderr is not None and "127.0.0.1" in server.stderr.readline()
            env = {"MEMLANE_LLM_MODEL": "fake",
                   "MEMLANE_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1"}
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


def test_global_options_go_before_or_after_the_command(db: Path, tmp_path: Path) -> None:
    plain("add", "said after the command", "--user", "alice", "--db", str(db), "--quiet",
          "--tenant", "acme")
    listed = out(plain("list", "--user", "alice", "--tenant", "acme", "--db", str(db)))
    assert [m["text"] for m in listed] == ["said after the command"]
    assert out(plain("--db", str(db), "--tenant", "acme", "list", "--user", "alice")) == listed
    assert out(plain("--db", str(db), "list", "--user", "alice")) == []  # default tenant
    # given on both sides, the one after the command wins
    other = tmp_path / "other.db"
    assert out(plain("--db", str(other), "list", "--user", "alice", "--db", str(db),
                     "--tenant", "acme")) == listed
    table = plain("list", "--user", "alice", "--table", "--db", str(db), "--tenant", "acme",
                  "--embedder", "fake").stdout
    assert "said after the command" in table and not table.startswith("[")
    assert "--table" in plain("search", "--help").stdout


def test_table_lists_show_kind_and_status(db: Path) -> None:
    kept = out(run(db, "add", "kept note", "--user", "alice"))[0]
    gone = out(run(db, "add", "dropped note", "--user", "alice"))[0]
    run(db, "delete", gone["id"], "--user", "alice")
    text = run(db, "list", "--user", "alice", "--status", "active", "--status", "deleted",
               "--table").stdout
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["id", "kind", "status"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[2:]}
    assert rows == {kept["id"]: ["turn", "active"], gone["id"]: ["turn", "deleted"]}


def test_table_search_explain_shows_each_signal(db: Path) -> None:
    run(db, "add", "tables are readable", "--user", "alice")
    run(db, "add", "nothing in common", "--user", "alice")
    text = run(db, "search", "tables readable", "--user", "alice", "--explain",
               "--table").stdout
    header = text.splitlines()[0].split()
    assert header[0] == "score" and {"dense", "keyword"} <= set(header)
    best = text.splitlines()[2]
    assert "tables are readable" in best
    assert len(re.findall(r"#1 \+0\.\d{4}", best)) == 2  # ranked first by both signals


def test_stats_table_is_readable(db: Path) -> None:
    first = out(run(db, "add", "one", "--user", "alice"))[0]
    run(db, "add", "two", "--user", "alice")
    run(db, "delete", first["id"], "--user", "alice")
    text = run(db, "stats", "--user", "alice", "--table").stdout
    assert "{" not in text and "'" not in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("kind"))
    assert header.split() == ["kind", "active", "superseded", "archived", "deleted", "total"]
    assert next(line for line in lines if line.startswith("turn")).split() == [
        "turn", "1", "0", "0", "1", "2"]
    # the deleted turn's message is hidden too
    assert next(line for line in lines if line.startswith("messages")).split()[-1] == "1"
    assert "user_id=alice" in text and "calls" in text


def test_every_command_and_option_is_documented() -> None:
    from memlane.cli.main import build_parser
    from memlane.cli.parser import actions, command_parsers

    undocumented, commands = [], 0
    for path, parser in command_parsers(build_parser()):
        commands += 1
        for action in actions(parser):
            if not action.help or action.help == argparse.SUPPRESS:
                undocumented.append(f"{path}: {action.option_strings or action.dest}")
        options = {o for a in actions(parser) for o in a.option_strings}
        if path != "memlane" and not {"--table", "--db", "--quiet"} <= options:
            undocumented.append(f"{path}: global options")
    assert commands > 20 and undocumented == []


@pytest.mark.parametrize("command", [
    ["search", "foo"], ["context", "foo"], ["list"], ["add", "x"], ["messages"],
    ["delete-all", "--yes"], ["forget", "--yes"],
])
def test_scope_errors_name_the_flags(db: Path, command: list[str]) -> None:
    error = run(db, *command, code=2).stderr
    assert "pass at least one of --user, --agent, --session" in error
    assert "user_id" not in error and command[0] in error


def test_delete_all_soft_deletes_one_scope(db: Path) -> None:
    run(db, "add", "a1", "--user", "alice", "--session", "s1")
    run(db, "add", "a2", "--user", "alice", "--session", "s2")
    run(db, "add", "b1", "--user", "bob", "--session", "s1")
    assert "--yes" in run(db, "delete-all", "--user", "alice", "--session", "s1",
                          code=2).stderr
    assert out(run(db, "delete-all", "--user", "alice", "--session", "s1", "--yes")) == {
        "deleted": 1}
    assert [m["text"] for m in out(run(db, "list", "--user", "alice"))] == ["a2"]
    assert [m["text"] for m in out(run(db, "list", "--user", "alice", "--status",
                                       "deleted"))] == ["a1"]
    assert [m["text"] for m in out(run(db, "list", "--user", "bob"))] == ["b1"]


def test_messages_pages_the_raw_messages_of_a_scope(db: Path) -> None:
    chat = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    run(db, "add", "-", "--json", "--user", "alice", stdin=json.dumps(chat))
    run(db, "add", "not alice's", "--user", "bob")
    page = out(run(db, "messages", "--user", "alice", "--limit", "2", "--offset", "1"))
    assert [m["content"] for m in page] == ["message 1", "message 2"]
    assert len(out(run(db, "messages", "--user", "alice"))) == 5
    run(db, "messages", "--user", "alice", "--offset", "-1", code=2)
    run(db, "messages", "--user", "alice", "--limit", "0", code=2)
    table = run(db, "messages", "--user", "alice", "--table").stdout
    assert "message 4" in table and "not alice's" not in table


def test_reset_erases_everything_once_confirmed(db: Path) -> None:
    run(db, "add", "x", "--user", "alice")
    run(db, "--tenant", "acme", "add", "y", "--user", "bob")
    assert "--yes" in run(db, "reset", code=2).stderr
    assert out(run(db, "list", "--user", "alice"))
    assert out(run(db, "reset", "--yes")) == {"reset": True}
    assert out(run(db, "list", "--user", "alice")) == []
    assert out(run(db, "--tenant", "acme", "list", "--user", "bob")) == []
    assert out(run(db, "scopes")) == []


def test_scopes_lists_users_agents_and_sessions_with_counts(db: Path) -> None:
    run(db, "add", "a1", "--user", "alice", "--session", "s1")
    chat = [{"role": "user", "content": "a2"}, {"role": "assistant", "content": "a3"}]
    run(db, "add", "-", "--json", "--user", "alice", "--session", "s2", stdin=json.dumps(chat))
    run(db, "add", "b1", "--user", "bob", "--agent", "helper")
    assert out(run(db, "scopes")) == [
        {"user_id": "alice", "agent_id": None, "session_id": "s1", "memories": 1,
         "messages": 1},
        {"user_id": "alice", "agent_id": None, "session_id": "s2", "memories": 2,
         "messages": 2},
        {"user_id": "bob", "agent_id": "helper", "session_id": None, "memories": 1,
         "messages": 1},
    ]
    users = out(run(db, "scopes", "--by", "user"))
    assert [(s["user_id"], s["memories"], s["messages"]) for s in users] == [
        ("alice", 3, 3), ("bob", 1, 1)]
    assert [s["session_id"] for s in out(run(db, "scopes", "--user", "alice"))] == ["s1", "s2"]
    table = run(db, "scopes", "--table").stdout.splitlines()
    assert table[0].split() == ["user", "agent", "session", "memories", "messages"]
    assert table[2].split() == ["alice", "-", "s1", "1", "1"]


def test_export_by_scope(db: Path, tmp_path: Path) -> None:
    run(db, "add", "alice note", "--user", "alice", "--session", "s1")
    run(db, "add", "bob note", "--user", "bob")
    lines = [json.loads(line) for line in run(db, "export", "--user", "alice").stdout.splitlines()]
    assert lines[0]["scope"] == {"tenant": "default", "user_id": "alice"}
    assert {line["user_id"] for line in lines[1:]} == {"alice"} and len(lines) > 2
    dump = tmp_path / "alice.jsonl"
    run(db, "export", "--user", "alice", "--out", str(dump))
    copy = tmp_path / "copy.db"
    run(copy, "import", str(dump))
    assert [s["user_id"] for s in out(run(copy, "scopes"))] == ["alice"]


def test_backup_restores_into_the_live_store(db: Path, tmp_path: Path) -> None:
    first = out(run(db, "add", "alice one", "--user", "alice", "--session", "s1"))[0]
    run(db, "add", "alice two", "--user", "alice", "--session", "s1")
    run(db, "add", "bob one", "--user", "bob")
    backup = tmp_path / "backup.jsonl"
    run(db, "export", "--out", str(backup))
    saved = {r["id"]: r for r in map(json.loads, backup.read_text().splitlines())
             if r["type"] == "memory"}
    run(db, "delete", first["id"], "--user", "alice")  # changed since the backup
    run(db, "forget", "--user", "bob", "--yes")  # gone: restored from the backup
    live = {r["id"]: r for r in map(json.loads, run(db, "export").stdout.splitlines())
            if r["type"] == "memory"}
    missing = [i for i in saved if i not in live]
    changed = sorted(i for i in saved if i in live and live[i] != saved[i])
    assert missing and first["id"] in changed

    report = out(run(db, "import", str(backup)))
    assert report["restored"] == {"messages": 1, "memories": len(missing)}
    assert report["history"] == sum(len(saved[i]["history"]) for i in missing)
    assert report["skipped"] == {"messages": 2,
                                 "memories": len(saved) - len(missing) - len(changed)}
    assert report["conflicts"] == {"messages": 0, "memories": len(changed)}
    assert sorted(report["conflict_ids"]) == changed and "skip" in report["conflict_policy"]
    scopes = {(s["user_id"], s["session_id"]): s for s in report["scopes"]}
    assert scopes[("bob", None)]["created"] and not scopes[("alice", "s1")]["created"]
    assert scopes[("bob", None)]["restored"] == {"messages": 1, "memories": len(missing)}
    assert [m["text"] for m in out(run(db, "list", "--user", "bob"))] == ["bob one"]
    assert [m["text"] for m in out(run(db, "list", "--user", "alice"))] == ["alice two"]
    table = run(db, "import", str(backup), "--table").stdout
    assert "conflict" in table and "{" not in table

    before = run(db, "export").stdout
    again = out(run(db, "import", str(backup)))
    assert again["restored"] == {"messages": 0, "memories": 0} and again["history"] == 0
    assert run(db, "export").stdout == before


def test_import_into_another_tenant_of_the_same_store(db: Path, tmp_path: Path) -> None:
    first = out(run(db, "add", "remember this", "--user", "alice"))[0]
    run(db, "update", first["id"], "remember this, please", "--user", "alice")
    dump = tmp_path / "l.jsonl"
    run(db, "export", "--out", str(dump))
    counts = out(run(db, "--tenant", "t2", "import", str(dump)))
    assert counts["restored"] == {"messages": 1, "memories": 2}
    assert counts["reidentified"] == 2 and counts["history"] == 4
    copied = out(run(db, "--tenant", "t2", "list", "--user", "alice"))
    assert [m["text"] for m in copied] == ["remember this, please"]
    assert copied[0]["id"] != first["id"] and copied[0]["tenant"] == "t2"
    history = out(run(db, "--tenant", "t2", "history", copied[0]["id"]))
    assert [e["op"] for e in history] == ["add", "update"]
    again = out(run(db, "--tenant", "t2", "import", str(dump)))
    assert again["restored"] == {"messages": 0, "memories": 0}
    assert again["skipped"] == {"messages": 1, "memories": 2}
    assert out(run(db, "list", "--user", "alice"))[0]["id"] == first["id"]


@pytest.mark.parametrize("args", [["keys", "list"], ["list", "--user", "alice"],
                                  ["export"], ["list", "--user", "alice", "--table"]])
def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(db: Path,
                                                                 args: list[str]) -> None:
    """``memlane ... | head -1`` with ``head`` gone before the first line is written: no
    traceback, and the exit status of a command ended by SIGPIPE (128 + 13)."""
    run(db, "add", "hello there", "--user", "alice")
    plain("keys", "create", "--db", str(db), "--tenant", "acme")
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone
    try:
        done = subprocess.run([SCRIPT, "--db", str(db), "--quiet", *args], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              env=env_with(MEMLANE_EMBEDDER="fake"))
    finally:
        os.close(writer)
    assert done.stderr == "" and done.returncode == 141, (done.returncode, done.stderr)
