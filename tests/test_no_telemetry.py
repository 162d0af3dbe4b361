"""No telemetry: running the default embedder leaves no file outside memlane's own directory.

Official ONNX Runtime builds start a telemetry client when the module loads: a device id
and an event queue under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime``, with uploads
to Microsoft. memlane turns it off before the runtime loads; this test runs the embedder in
fresh processes whose home, XDG and temporary directories are empty, then looks at them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = shutil.which("memlane", path=str(Path(sys.executable).parent)) or "memlane"
EMBED = """
from memlane.embed import MiniLMEmbedder
from memlane.eval.machine import describe
assert MiniLMEmbedder().embed(["is anyone listening?"], "document").shape == (1, 384)
assert "onnxruntime" in describe()
"""


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_the_embedder_writes_nothing_outside_memlanes_directory(tmp_path: Path) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "MEMLANE_", "ORT_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_STATE_HOME=str(home / ".local/state"))
    for command in ([sys.executable, "-c", EMBED],
                    [SCRIPT, "--quiet", "add", "I moved to Lisbon.", "--user", "alice"],
                    [SCRIPT, "--quiet", "search", "Lisbon", "--user", "alice"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert _files(tmp) == []
    assert [f for f in _files(home) if not f.startswith(".local/share/memlane/")] == []
    assert (home / ".local/share/memlane/memlane.db").is_file()
