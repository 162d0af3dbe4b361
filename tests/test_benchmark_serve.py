"""The server load benchmark at a tiny size: it runs end to end (a real server killed and
restarted), finds every acknowledged add, and writes its docs section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import update_section
from benchmarks.serve import markdown

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.serve", "--seconds", "2", "--clients", "4",
         "--memories", "200", "--scopes", "2", "--stores", "sqlite,postgres",
         "--server-threads", "4", "--embedder", "fake", "--rates", "10", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("run", ["steady", "kill"])
def test_every_acknowledged_add_is_found(result: dict[str, Any], store: str,
                                         run: str) -> None:
    r = result["stores"][store][run]
    assert r["errors"] == 0, r["error_kinds"]
    assert r["searches_per_s"] > 0 and r["search_ms"]["p95"] is not None
    assert r["adds_acknowledged"] > 0
    assert r["memories_found"] == r["memories_acknowledged"] >= r["adds_acknowledged"]
    assert r["adds_acknowledged"] <= r["adds_stored"] <= r["adds_sent"]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_kill_is_seen_by_the_clients(result: dict[str, Any], store: str) -> None:
    steady, killed = result["stores"][store]["steady"], result["stores"][store]["kill"]
    assert steady["connection_retries"] == 0
    assert killed["connection_retries"] > 0 and killed["client_downtime_s"]["max"] > 0
    assert killed["restart_s"] > 0


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_paced_run_sends_at_its_rate(result: dict[str, Any], store: str) -> None:
    [paced] = result["stores"][store]["paced"]
    assert paced["rate"] == 10 and paced["errors"] == 0
    assert 7 <= paced["requests_per_s"] <= 12  # 4 clients, one request each 0.4 s
    assert paced["memories_found"] == paced["memories_acknowledged"]


def test_the_docs_section(result: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    update_section(path, "Server under load", markdown(result, "python -m benchmarks.serve"))
    text = path.read_text()
    assert "## Other\n\nkept" in text and "## Server under load" in text
    assert text.count("| sqlite | steady |") == 1 and text.count("| postgres | kill |") == 1
    assert text.count("| sqlite | paced 10/s |") == 1
    assert "target <= 30 ms:" in text and "target >= 300:" in text
