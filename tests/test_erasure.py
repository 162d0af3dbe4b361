"""Forgetting is complete: erased text is gone from the database file and its journal."""

from __future__ import annotations

from pathlib import Path

from memlane import FakeEmbedder, Memory

SECRET = "zebracorn-passphrase-7731"


def _bytes_on_disk(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_forget_leaves_no_trace_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "erase.db"
    with Memory(path, embedder=FakeEmbedder()) as mem:
        r = mem.add(f"my secret is {SECRET}", user_id="alice")[0]
        mem.update(r.id, f"my secret is still {SECRET}", user_id="alice")
        for i in range(50):
            mem.add(f"bob's unrelated note {i}", user_id="bob")
        assert SECRET.encode() in _bytes_on_disk(path)
        mem.forget(user_id="alice")
        assert mem.search(SECRET, user_id="alice") == []
    assert SECRET.encode() not in _bytes_on_disk(path)
    with Memory(path, embedder=FakeEmbedder()) as mem:
        assert len(mem.get_all(user_id="bob")) == 50
