"""Bad input to the ``memlane`` command: a one-line error on stderr and exit code 2, never
a traceback, and nothing written. Through the real entry point, in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import env_with
from .test_cli import SCRIPT, out, run

LATE = "9999-12-31T23:59:59-05:00"


def run_bytes(*args: str | bytes, stdin: bytes | None = None,
              code: int = 2) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([SCRIPT, "--quiet", *args], input=stdin, capture_output=True,
                          env=env_with(MEMLANE_EMBEDDER="fake"), timeout=120)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


def fails(db: Path, *args: str, stdin: str | None = None, code: int = 2) -> str:
    """Run a command that must fail cleanly; return its one-line error."""
    err = run(db, *args, stdin=stdin, code=code).stderr
    assert "Traceback" not in err, err
    if err.startswith("usage: "):  # argparse rejected an argument, after its usage line
        err = err.splitlines()[-1] + "\n"
    assert err.startswith(("memlane: error: ", "memlane ")) and err.count("\n") == 1, err
    return err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.db"
    run(path, "add", "hello there", "--user", "alice")
    return path


def test_bytes_that_are_not_utf8_in_argv_and_stdin(db: Path) -> None:
    err = run_bytes("--db", str(db), "add", b"caf\xe9 \xff", "--user", "alice").stderr
    assert b"not valid Unicode" in err and b"Traceback" not in err
    err = run_bytes("--db", str(db), "add", "x", "--user", b"\xff").stderr
    assert b"user_id" in err and b"Traceback" not in err
    err = run_bytes("--db", str(db), "add", "-", "--user", "alice", stdin=b"caf\xe9\n").stderr
    assert b"standard input is not valid UTF-8" in err and b"Traceback" not in err
    err = run_bytes("--db", str(db), "add", "-", "--json", "--user", "alice",
                    stdin=b'[{"content": "\xff"}]').stderr
    assert b"standard input is not valid UTF-8" in err
    assert len(out(run(db, "list", "--user", "alice"))) == 1


def test_stdin_in_utf8_is_read_as_such(db: Path) -> None:
    added = run_bytes("--db", str(db), "add", "-", "--user", "alice",
                      stdin="café ☕\n".encode(), code=0)
    assert json.loads(added.stdout)[0]["text"] == "café ☕\n"


@pytest.mark.parametrize("args", [
    ["list", "--user", "alice", "--filter", json.dumps({"importance": {"gt": 2**70}})],
    ["search", "x", "--user", "alice", "--filter", json.dumps({"metadata.x": 2**64})],
    ["list", "--user", "alice", "--offset", str(2**64)],
    ["list", "--user", "alice", "--limit", str(2**64)],
    ["list", "--user", "alice", "--offset", "-1"],
])
def test_integers_past_64_bits(db: Path, args: list[str]) -> None:
    assert re.search("64-bit|offset must|limit must", fails(db, *args))


@pytest.mark.parametrize("args", [
    ["add", "x", "--user", "alice", "--timestamp", LATE],
    ["list", "--user", "alice", "--as-of", LATE],
    ["search", "x", "--user", "alice", "--as-of", LATE],
    ["list", "--user", "alice", "--filter", json.dumps({"event_time": {"lt": LATE}})],
])
def test_a_time_that_overflows_in_utc(db: Path, args: list[str]) -> None:
    assert "out of range" in fails(db, *args)


def test_add_json_that_does_not_parse(db: Path) -> None:
    err = fails(db, "add", '[{"role": "user", "content": ', "--json", "--user", "alice")
    assert "not valid JSON" in err and "line 1 column" in err
    err = fails(db, "add", "-", "--json", "--user", "alice", stdin="{oops")
    assert "not valid JSON" in err
    deep = "[" * 5_000 + "]" * 5_000
    assert "nested too deeply" in fails(db, "add", deep, "--json", "--user", "alice")
    assert "nested too deeply" in fails(db, "list", "--user", "alice", "--filter",
                                        '{"and": ' * 5_000 + "{}" + "}" * 5_000)
    assert "nested too deeply" in fails(db, "add", "x", "--user", "alice", "--metadata",
                                        '{"a": ' * 5_000 + "1" + "}" * 5_000)


def test_a_filter_nested_too_deep(db: Path) -> None:
    spec: dict[str, object] = {"kind": "turn"}
    for _ in range(300):
        spec = {"not": spec}
    err = fails(db, "search", "x", "--user", "alice", "--filter", json.dumps(spec))
    assert "deeper than 32" in err
    assert "deeper than 32" in fails(db, "list", "--user", "alice", "--filter",
                                     json.dumps(spec))


def test_in_with_thousands_of_values(db: Path) -> None:
    kinds = [f"kind-{i}" for i in range(5_000)] + ["turn"]
    found = out(run(db, "list", "--user", "alice", "--filter",
                    json.dumps({"kind": {"in": kinds}})))
    assert [m["text"] for m in found] == ["hello there"]


def test_a_single_kind(db: Path) -> None:
    hits = out(run(db, "search", "hello", "--user", "alice", "--kind", "turn"))
    assert [h["memory"]["kind"] for h in hits] == ["turn"]


def test_an_empty_tenant(db: Path) -> None:
    assert "tenant" in fails(db, "--tenant", "", "list", "--user", "alice")
    assert "tenant" in fails(db, "--tenant", "  ", "list", "--user", "alice")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_db_that_is_not_a_database_file(tmp_path: Path) -> None:
    assert "not a regular file" in fails(Path("/dev/null"), "list", "--user", "alice")
    assert "is a directory" in fails(tmp_path, "list", "--user", "alice")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    before = _digest(notes)
    assert "not a SQLite database" in fails(notes, "add", "x", "--user", "alice")
    assert _digest(notes) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_db_in_a_missing_directory(tmp_path: Path) -> None:
    err = fails(tmp_path / "typo" / "x.db", "add", "x", "--user", "alice")
    assert str(tmp_path / "typo") in err and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_the_default_db_is_created_in_the_user_data_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = env_with(MEMLANE_EMBEDDER="fake", HOME=str(home), XDG_DATA_HOME=str(home / "data"))
    env.pop("MEMLANE_DB", None)
    done = subprocess.run([SCRIPT, "add", "x", "--user", "alice"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (home / "data" / "memlane" / "memlane.db").is_file()


def test_migrate_from_a_missing_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    err = fails(tmp_path / "unused.db", "migrate", "--from", "missing.db", "--to", "x.db")
    assert "missing.db" in err and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_store(db: Path) -> None:
    memory_id = out(run(db, "list", "--user", "alice"))[0]["id"]
    before = _digest(db)
    ro = ["--read-only"]
    assert len(out(run(db, *ro, "list", "--user", "alice"))) == 1
    assert out(run(db, *ro, "search", "hello", "--user", "alice"))
    assert out(run(db, *ro, "show", memory_id))["text"] == "hello there"
    assert out(run(db, *ro, "stats"))["messages"] == 1
    assert len(run(db, *ro, "export").stdout.splitlines()) == 4
    for args in (["add", "x", "--user", "alice"], ["delete", memory_id],
                 ["update", memory_id, "changed"], ["forget", "--user", "alice", "--yes"]):
        assert "read-only" in fails(db, *ro, *args)
    assert _digest(db) == before


def test_a_database_file_that_cannot_be_written(db: Path) -> None:
    if os.system(f"chattr +i '{db}' 2>/dev/null") != 0:
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE)")
    try:
        before = _digest(db)
        assert len(out(run(db, "list", "--user", "alice"))) == 1
        assert "read-only" in fails(db, "add", "x", "--user", "alice")
        assert _digest(db) == before
    finally:
        os.system(f"chattr -i '{db}'")


def test_a_locomo_file_with_a_turn_missing_its_speaker(db: Path, tmp_path: Path) -> None:
    sample = {"sample_id": "conv-9", "conversation": {
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [{"dia_id": "D1:1", "text": "who said this?"}]}}
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([sample]))
    err = fails(db, "import", str(path), "--format", "locomo")
    assert "conv-9" in err and "turn 1" in err and "speaker" in err


def test_import_of_an_export_with_a_broken_escape_leaves_the_line_out(db: Path,
                                                                        tmp_path: Path) -> None:
    export = tmp_path / "broken.jsonl"
    export.write_text('{"type": "header", "format": "memlane-export", "version": 1, '
                      '"tenant": "default"}\n{"type": "message", "content": "bad \\ud800"}\n')
    done = run(db, "import", str(export), code=5)
    assert "Traceback" not in done.stderr and "line 2 is not valid Unicode" in done.stderr
    assert json.loads(done.stdout)["restored"] == {"messages": 0, "memories": 0}


# --- memlane serve: options checked before anything starts -------------------------------

BAD_SERVE_OPTIONS = [
    ("--threads", "0", "at least 1"), ("--threads", "-2", "at least 1"),
    ("--max-body", "-1", "at least 1"), ("--max-body", "0", "at least 1"),
    ("--port", "-1", "0 to 65535"), ("--port", "65536", "0 to 65535"),
    ("--rate", "-1", "at least 0"), ("--rate", "nan", "finite"), ("--rate", "inf", "finite"),
    ("--burst", "0", "at least 1"), ("--burst", "-5", "at least 1"),
    ("--grace", "-1", "at least 0"), ("--grace", "nan", "finite"),
    ("--grace", "inf", "finite"), ("--threads", "two", "not an integer"),
    ("--rate", "fast", "not a number"),
]


@pytest.mark.parametrize(("option", "value", "why"), BAD_SERVE_OPTIONS)
def test_serve_refuses_a_bad_option_before_it_starts(tmp_path: Path, option: str, value: str,
                                                     why: str) -> None:
    store = tmp_path / "never.db"
    done = subprocess.run([SCRIPT, "--db", str(store), "serve", "--port", "0",
                           f"{option}={value}"], capture_output=True, text=True, timeout=60,
                          env=env_with(MEMLANE_EMBEDDER="fake"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    err = done.stderr
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"memlane serve: error: argument {option}: ") and why in err, err
    assert not store.exists()  # nothing opened, nothing listened


def test_serve_accepts_the_edges_of_each_option() -> None:
    from memlane.cli.main import build_parser

    edges = ["serve", "--port", "0", "--threads", "1", "--max-body", "1", "--rate", "0",
             "--burst", "1", "--grace", "0"]
    args = build_parser().parse_args(edges)
    assert (args.port, args.threads, args.max_body, args.rate, args.burst, args.grace) == (
        0, 1, 1, 0.0, 1, 0.0)
    assert build_parser().parse_args(["serve", "--port", "65535", "--rate", "0.5"]).rate == 0.5


# --- commands that work on a store, not through a server ---------------------------------

@pytest.mark.parametrize("args", [
    ["--db", "http://127.0.0.1:1", "keys", "list"],
    ["--db", "https://memory.example", "keys", "create", "--tenant", "acme"],
    ["--db", "HTTP://127.0.0.1:1", "keys", "revoke", "01ABC"],
    ["migrate", "--from", "http://127.0.0.1:1", "--to", "copy.db"],
    ["migrate", "--from", "store.db", "--to", "https://memory.example"],
    ["--db", "http://127.0.0.1:1", "migrate", "--from", "store.db", "--to", "copy.db"],
    ["--db", "http://127.0.0.1:1", "serve", "--port", "0"],
])
def test_keys_and_migrate_say_they_work_on_a_store_not_a_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    run(tmp_path / "store.db", "add", "x", "--user", "alice")
    before = _digest(tmp_path / "store.db")
    done = run_bytes(*args)
    err = done.stderr.decode()
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "a server" in err and "file or a PostgreSQL URL" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]
    assert _digest(tmp_path / "store.db") == before
