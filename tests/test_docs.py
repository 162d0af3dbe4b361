"""Every fenced code block of README.md and docs/*.md, run as written.

Each file gets a temporary home directory (and working directory) of its own, and its
blocks run in order there, so a block can build on the earlier blocks of its file:

- ``python`` blocks are executed in one namespace per file (with the real embedder);
  memories and stores they leave open are closed when the file is done.
- ``sh``, ``bash`` and ``console`` blocks: each line (in ``console``, each ``$ `` line)
  that is a ``memlane`` command runs through the installed ``memlane`` script in a
  subprocess and must exit 0. Lines starting with a prefix in ``NOT_RUN`` are not run, for
  the reason given there; any other command fails the test until it gets a rule.
- ``json`` blocks must parse. Blocks in the languages of ``NOT_CHECKED`` are not checked.

Every ``postgresql://`` address in a file stands for a new database on the test server
(the same address, the same database). Before the first block runs, the input files in
``INPUTS`` are written to the working directory, and the default store exists, empty, as
for anyone who has used memlane before (docs/postgres.md migrates it).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memlane import AsyncMemory, Memory
from memlane.dev.postgres import fresh_database
from memlane.filters import parse
from memlane.store import SQLiteStore, Store

from .conftest import ROOT, env_with
from .test_cli import SCRIPT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
POSTGRES_URL = re.compile(r"postgresql://[^\s'\")]+")

SHELL = ("sh", "bash", "console")
NOT_CHECKED = {
    "": "a block without a language shows output (such as a packed context), not input",
    "text": "output, not input",
    "sql": "statements for a Citus coordinator, which the tests do not run",
    "pycon": "a session with a running server, shown with its answers; tests/test_remote.py "
             "makes the same calls on a live server",
}
NOT_RUN = {
    "make ": "builds the environment these tests already run in",
    "pip install": "installs packages from the network",
    "git clone": "fetches from the network",
    "memlane eval ": "a whole benchmark (minutes); tests/test_eval.py runs each on small data",
    "memlane serve": "a server that runs until stopped; its own tests start and stop it",
    "memlane mcp": "a server that runs until stopped; its own tests start and stop it",
    "memlane dev fake-llm": "a server that runs until stopped; tests/test_llm_write_path.py "
                            "starts it",
    "memlane keys revoke": "needs the id of a key made earlier; tests/test_server.py revokes "
                           "one and sees it refused",
    "curl ": "a request to a running server; tests/test_server.py makes each kind of request",
    "claude ": "Claude Code's own command; tests/test_mcp.py runs the arguments documented for "
               "it through memlane's parser",
}
PYTHON_NOT_RUN = {
    "OpenAICompatibleLLM(": "calls a remote LLM; tests/test_llm_write_path.py runs the write "
                            "path against a scripted LLM and the fake OpenAI-compatible server",
}
"""Python blocks holding one of these strings are not run, for the reason given."""

LOCOMO_SAMPLE = [{
    "sample_id": "conv-1",
    "conversation": {
        "speaker_a": "Ann", "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a puppy."},
            {"speaker": "Ben", "dia_id": "D1:2", "text": "What is its name?"},
            {"speaker": "Ann", "dia_id": "D1:3", "text": "Biscuit."},
        ],
    },
    "qa": [],
}]
BEAM_CHAT = [{"batch_number": 1, "time_anchor": None, "turns": [
    [{"role": "user", "id": 0, "time_anchor": "March-15-2024",
      "content": "I adopted a puppy called Biscuit."},
     {"role": "assistant", "id": 1, "content": "Congratulations! How old is Biscuit?"}],
    [{"role": "user", "id": 2, "content": "Ten weeks."},
     {"role": "assistant", "id": 3, "content": "A good age to start training."}],
]}]
INPUTS = {"conversations.json": json.dumps(LOCOMO_SAMPLE),
          "beam-chats/1/chat.json": json.dumps(BEAM_CHAT)}


@dataclass(frozen=True)
class Block:
    path: Path
    number: int  # 1-based, counting every fenced block of the file
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}-block{self.number}-{self.language or 'plain'}"


def blocks(path: Path) -> list[Block]:
    return [Block(path, n, m.group(1).lower(), m.group(2))
            for n, m in enumerate(FENCE.finditer(path.read_text(encoding="utf-8")), start=1)]


ALL = [b for path in DOCS for b in blocks(path)]


@dataclass
class FileRun:
    """The blocks of one documentation file, run in order in one home directory."""

    home: Path
    namespace: dict[str, Any] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "XDG_DATA_HOME": str(self.home / ".local" / "share")}

    def local(self, code: str, request: pytest.FixtureRequest) -> str:
        """The code with each PostgreSQL address pointing at a database of its own."""
        def database(match: re.Match[str]) -> str:
            if match.group(0) not in self.databases:
                server = request.getfixturevalue("postgres_server")
                self.databases[match.group(0)] = fresh_database(server)
            return self.databases[match.group(0)]

        return POSTGRES_URL.sub(database, code)

    def close(self) -> None:
        for value in self.namespace.values():
            if isinstance(value, Memory | AsyncMemory | Store):
                value.close()


@pytest.fixture
def file_run(tmp_path: Path) -> Iterator[FileRun]:
    for name, text in INPUTS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    run = FileRun(tmp_path)
    default = tmp_path / ".local" / "share" / "memlane" / "memlane.db"
    default.parent.mkdir(parents=True)
    SQLiteStore(default).close()
    yield run
    run.close()


def not_run(block: Block) -> str | None:
    """Why the block is not run, if a rule says so."""
    if block.language == "python":
        return next((why for marker, why in PYTHON_NOT_RUN.items() if marker in block.code),
                    None)
    return NOT_CHECKED.get(block.language)


def run_block(block: Block, run: FileRun, request: pytest.FixtureRequest,
              monkeypatch: pytest.MonkeyPatch) -> None:
    if not_run(block):
        return
    for name, value in run.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(run.home)
    code = run.local(block.code, request)
    if block.language == "python":
        exec(compile(code, block.name, "exec"), run.namespace)
    elif block.language in SHELL:
        shell_block(block, code, run)
    elif block.language == "json":
        json.loads(code)
    else:
        pytest.fail(f"no rule for {block.language!r} blocks: add one to test_docs.py")


GLOBAL_OPTIONS = {"--db": 1, "--api-key": 1, "--tenant": 1, "--embedder": 1, "--read-only": 0,
                  "--table": 0, "--quiet": 0}
"""memlane's options taken before the command, with how many values each has."""


def command_of(words: list[str]) -> str:
    """The command line without the global options before the command's name, so that
    ``memlane --db x serve`` meets the rule for ``memlane serve``."""
    rest = words[1:]
    while rest and rest[0] in GLOBAL_OPTIONS:
        rest = rest[1 + GLOBAL_OPTIONS[rest[0]]:]
    return " ".join([words[0], *rest])


def commands(code: str, language: str) -> list[str]:
    code = re.sub(r"\\\n\s*", " ", code)  # a line ending in a backslash goes on below
    lines = [line.strip() for line in code.splitlines()]
    if language == "console":
        return [line[2:] for line in lines if line.startswith("$ ")]
    return [line for line in lines if line and not line.startswith("#")]


def shell_block(block: Block, code: str, run: FileRun) -> None:
    for line in commands(code, block.language):
        words = [str(run.home) + w[1:] if w.startswith("~/") else w
                 for w in shlex.split(line, comments=True)]
        if any(command_of(words).startswith(prefix) for prefix in NOT_RUN):
            continue
        assert words[0] == "memlane", f"no rule for this command: {line}"
        done = subprocess.run([SCRIPT, *words[1:]], capture_output=True, text=True,
                              cwd=run.home, env=env_with(**run.env()), timeout=120)
        assert done.returncode == 0, f"{line}\nexit {done.returncode}: {done.stderr}"


@pytest.mark.parametrize("block", ALL, ids=lambda b: b.name)
def test_block_runs(block: Block, file_run: FileRun, request: pytest.FixtureRequest,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    why = not_run(block)
    if why:
        pytest.skip(why)
    for earlier in blocks(block.path)[:block.number - 1]:  # what this block builds on
        try:
            run_block(earlier, file_run, request, monkeypatch)
        except Exception as exc:
            pytest.fail(f"block {earlier.number} of the file, before this one, failed: "
                        f"{exc!r}")
    run_block(block, file_run, request, monkeypatch)


def test_every_language_has_a_rule() -> None:
    languages = {b.language for b in ALL}
    assert "python" in languages and "sh" in languages
    assert languages <= {"python", "json", *SHELL, *NOT_CHECKED}


def test_the_readme_example_forgets_what_it_stored(
        file_run: FileRun, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    example = next(b for b in blocks(ROOT / "README.md") if b.language == "python")
    run_block(example, file_run, request, monkeypatch)
    assert file_run.namespace["mem"].get_all(user_id="alice") == []


def test_the_filter_examples_parse() -> None:
    (block,) = [b for b in blocks(ROOT / "docs" / "filters.md") if b.language == "python"]
    examples = [line.split("#")[0].strip() for line in block.code.splitlines()]
    specs = [eval(example) for example in examples if example]  # dict literals
    assert len(specs) == 7
    for spec in specs:
        parse(spec)
