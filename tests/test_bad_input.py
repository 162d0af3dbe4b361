"""Bad input to the library: a clear ``UsageError`` subclass, never a driver's traceback,
and nothing changed. Runs on every store where a store is involved."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memlane import FakeEmbedder, Memory, filters
from memlane.errors import (
    ConfigurationError,
    FilterError,
    InvalidInputError,
    ReadOnlyError,
    UsageError,
)
from memlane.exchange import locomo
from memlane.filters import MAX_CONDITIONS, MAX_DEPTH
from memlane.store import SQLiteStore

Call = Callable[[Memory], Any]
SURROGATE = "\ud800"
ESCAPED_BYTE = "\udcff"  # how Python hands over a byte that is not UTF-8 (argv, file names)
LATE = "9999-12-31T23:59:59-05:00"  # a valid ISO time whose UTC form is in year 10000


@pytest.fixture
def front() -> Iterator[Memory]:
    """For checks made before any store is asked (``mem`` runs on every store)."""
    with Memory(":memory:", embedder=FakeEmbedder()) as memory:
        yield memory


@pytest.mark.parametrize("call", [
    lambda m: m.add(SURROGATE, user_id="alice"),
    lambda m: m.add(f"caf{ESCAPED_BYTE}", user_id="alice"),
    lambda m: m.add([{"content": "x", "name": SURROGATE}], user_id="alice"),
    lambda m: m.add([{"content": "x", "id": SURROGATE}], user_id="alice"),
    lambda m: m.add([{"content": "x", "role": SURROGATE}], user_id="alice"),
    lambda m: m.add("x", user_id=SURROGATE),
    lambda m: m.add("x", user_id="alice", session_id=ESCAPED_BYTE),
    lambda m: m.add("x", user_id="alice", metadata={"k": SURROGATE}),
    lambda m: m.add("x", user_id="alice", metadata={SURROGATE: 1}),
    lambda m: m.add("x", user_id="alice", metadata={"k": [{"deep": ESCAPED_BYTE}]}),
    lambda m: m.add("x", user_id="alice", idempotency_key=SURROGATE),
    lambda m: m.search(SURROGATE, user_id="alice"),
    lambda m: m.search("x", user_id="alice", filters={"speaker": SURROGATE}),
    lambda m: m.get_all(user_id="alice", filters={"metadata.k": {"in": ["a", ESCAPED_BYTE]}}),
    lambda m: m.get_all(user_id="alice", kinds=[SURROGATE]),
    lambda m: m.context(SURROGATE, user_id="alice"),
    lambda m: m.get(SURROGATE),
    lambda m: m.update(m.get_all(user_id="bob")[0].id, SURROGATE, user_id="bob"),
    lambda m: m.delete(m.get_all(user_id="bob")[0].id, user_id="bob", reason=SURROGATE),
])
def test_lone_surrogates_are_invalid_input(front: Memory, call: Call) -> None:
    front.add("bob's note", user_id="bob")
    with pytest.raises(UsageError, match="not valid Unicode") as info:
        call(front)
    assert isinstance(info.value, InvalidInputError | FilterError)
    assert front.messages(user_id="alice") == []
    assert [r.version for r in front.get_all(user_id="bob")] == [1]


def test_a_tenant_with_a_surrogate_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="tenant"):
        Memory(":memory:", embedder=FakeEmbedder(), tenant=SURROGATE)


def test_integers_past_64_bits_in_filters_are_filter_errors(mem: Memory) -> None:
    mem.add("x", user_id="alice", metadata={"x": 2**63 - 1})
    for spec in ({"importance": {"gt": 2**70}}, {"version": {"lt": -(2**63) - 1}},
                 {"access_count": 2**64}, {"metadata.x": 2**64},
                 {"metadata.x": {"gte": -(2**100)}}, {"metadata.x": {"in": [1, 2**63]}}):
        with pytest.raises(FilterError, match="64-bit"):
            mem.get_all(user_id="alice", filters=spec)
        with pytest.raises(FilterError, match="64-bit"):
            mem.search("x", user_id="alice", filters=spec)
    for spec in ({"importance": {"lt": float("nan")}}, {"metadata.x": float("inf")}):
        with pytest.raises(FilterError, match="finite number"):
            mem.get_all(user_id="alice", filters=spec)


def test_the_largest_64_bit_integers_still_filter(mem: Memory) -> None:
    mem.add("x", user_id="alice", metadata={"x": 2**63 - 1, "y": -(2**63)})
    assert len(mem.get_all(user_id="alice", filters={"metadata.x": 2**63 - 1})) == 1
    assert len(mem.get_all(user_id="alice", filters={"metadata.y": {"lte": -(2**63)}})) == 1
    assert mem.get_all(user_id="alice", filters={"version": {"gt": 2**63 - 1}}) == []


@pytest.mark.parametrize("call", [
    lambda m: m.get_all(user_id="alice", offset=2**64),
    lambda m: m.get_all(user_id="alice", offset=-1),
    lambda m: m.get_all(user_id="alice", limit=2**64),
    lambda m: m.messages(user_id="alice", offset=2**63),
    lambda m: m.messages(user_id="alice", limit=2**70),
    lambda m: m.messages(user_id="alice", limit=-1),
])
def test_offsets_and_limits_out_of_range_are_invalid_input(front: Memory, call: Call) -> None:
    front.add("x", user_id="alice")
    with pytest.raises(InvalidInputError, match=r"offset|limit"):
        call(front)


@pytest.mark.parametrize("call", [
    lambda m: m.add("x", user_id="alice", timestamp=LATE),
    lambda m: m.add("x", user_id="alice", timestamp="0001-01-01T00:00:00+01:00"),
    lambda m: m.add([{"content": "x", "timestamp": LATE}], user_id="alice"),
    lambda m: m.search("x", user_id="alice", as_of=LATE),
    lambda m: m.get_all(user_id="alice", as_of=LATE),
])
def test_times_that_overflow_in_utc_are_invalid_input(front: Memory, call: Call) -> None:
    with pytest.raises(InvalidInputError, match="out of range"):
        call(front)
    assert front.messages(user_id="alice") == []


def test_a_filter_time_that_overflows_in_utc_is_a_filter_error(front: Memory) -> None:
    with pytest.raises(FilterError, match="out of range"):
        front.get_all(user_id="alice", filters={"event_time": {"lt": LATE}})


def test_the_earliest_and_latest_times_in_utc_are_kept_in_order(mem: Memory) -> None:
    mem.add("late", user_id="alice", timestamp="9999-12-31T23:59:59Z")
    mem.add("early", user_id="alice", timestamp="0999-06-01T00:00:00+00:00")
    mem.add("now", user_id="alice", timestamp="2026-03-14T10:00:00Z")
    assert [r.text for r in mem.get_all(user_id="alice")] == ["early", "now", "late"]
    assert [r.event_time.year for r in mem.get_all(user_id="alice")] == [999, 2026, 9999]
    assert len(mem.get_all(user_id="alice", as_of="9999-12-31T23:59:59+00:00")) == 3
    before_1000 = {"event_time": {"lt": "1000-01-01T00:00:00Z"}}
    assert [r.text for r in mem.get_all(user_id="alice", filters=before_1000)] == ["early"]


def _nested(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": "turn"}
    for i in range(depth):
        spec = {"not": spec} if i % 2 else {"or": [spec, {"kind": "fact"}]}
    return spec


def test_filters_nested_deeper_than_the_limit_are_filter_errors(front: Memory) -> None:
    front.add("x", user_id="alice")
    for depth in (MAX_DEPTH + 1, 300, 5_000):
        with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH}"):
            front.search("x", user_id="alice", filters=_nested(depth))
        with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH}"):
            front.get_all(user_id="alice", filters=_nested(depth))
        with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH}"):
            front.context("x", user_id="alice", filters=_nested(depth))


def test_filters_at_the_depth_limit_run_on_every_store(mem: Memory) -> None:
    mem.add("x", user_id="alice")
    mem.add("y", user_id="alice", metadata={"k": 1})
    spec = _nested(MAX_DEPTH)
    node = filters.parse(spec)
    expected = [r for r in mem.get_all(user_id="alice") if filters.matches(node, r)]
    assert mem.get_all(user_id="alice", filters=spec) == expected
    mem.search("x", user_id="alice", filters=spec)


def test_a_filter_of_many_conditions_runs_on_every_store(mem: Memory) -> None:
    mem.add("x", user_id="alice", metadata={"k": 1})
    wide = {"or": [{"kind": f"kind-{i}"} for i in range(MAX_CONDITIONS - 1)] + [{"kind": "turn"}]}
    assert [r.text for r in mem.get_all(user_id="alice", filters=wide)] == ["x"]
    keys = {f"metadata.k{i}": {"ne": 1} for i in range(MAX_CONDITIONS)}
    assert [r.text for r in mem.get_all(user_id="alice", filters=keys)] == ["x"]
    contains = {"or": [{"metadata.k": {"contains": f"w{i}"}} for i in range(MAX_CONDITIONS)]}
    assert mem.get_all(user_id="alice", filters=contains) == []
    hits = mem.search("x", user_id="alice", filters={"not": wide})
    assert hits and all(h.memory.kind != "turn" for h in hits)


def test_a_filter_of_too_many_conditions_is_a_filter_error(front: Memory) -> None:
    wide = {"or": [{"kind": f"kind-{i}"} for i in range(MAX_CONDITIONS + 1)]}
    with pytest.raises(FilterError, match=f"more than {MAX_CONDITIONS} comparisons"):
        front.get_all(user_id="alice", filters=wide)
    with pytest.raises(FilterError, match=f"more than {MAX_CONDITIONS}"):
        front.search("x", user_id="alice", filters={f"metadata.k{i}": 1 for i in range(5_000)})


def test_a_single_kind_may_be_given_as_a_string(mem: Memory) -> None:
    mem.add("Lisbon trams", user_id="alice")
    as_list = mem.search("Lisbon", user_id="alice", kinds=["turn"])
    assert as_list and mem.search("Lisbon", user_id="alice", kinds="turn") == as_list
    assert mem.get_all(user_id="alice", kinds="turn") == mem.get_all(user_id="alice",
                                                                      kinds=["turn"])


@pytest.mark.parametrize("kinds", [[1], ["turn", None], 5, {"turn": 1}])
def test_kinds_must_be_strings(front: Memory, kinds: Any) -> None:
    with pytest.raises(InvalidInputError, match="kinds"):
        front.get_all(user_id="alice", kinds=kinds)
    with pytest.raises(InvalidInputError, match="kinds"):
        front.search("x", user_id="alice", kinds=kinds)


def test_an_empty_tenant_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    for tenant in ("", "  "):
        with pytest.raises(InvalidInputError, match="tenant"):
            Memory(path, embedder=FakeEmbedder(), tenant=tenant)
    assert not path.exists()


@pytest.mark.parametrize("location", [123, 0, 1.5, b"x.db", ["x.db"], "", " "])
def test_a_location_of_another_type_names_the_accepted_forms(
        location: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="postgresql://") as info:
        Memory(location, embedder=FakeEmbedder())
    assert ":memory:" in str(info.value) and "path" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --- database files ------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-"))


def _empty_journal(path: Path) -> bool:
    """A reader of a WAL database leaves an empty journal (and its index) where it may."""
    wal = path.parent / (path.name + "-wal")
    return not wal.exists() or wal.stat().st_size == 0


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes, not a database\n")
    before = _digest(path)
    with pytest.raises(InvalidInputError, match="not a SQLite database"):
        Memory(path, embedder=FakeEmbedder())
    assert _digest(path) == before and _siblings(path) == []


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is a directory"):
        SQLiteStore(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_device_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="not a regular file"):
        SQLiteStore("/dev/null")


def test_a_path_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "x.db"
    with pytest.raises(InvalidInputError, match=f"{tmp_path / 'no' / 'such'}.*does not exist"):
        Memory(path, embedder=FakeEmbedder())
    assert list(tmp_path.iterdir()) == []


def test_the_default_location_is_created_in_the_user_data_directory() -> None:
    data = Path(os.environ["XDG_DATA_HOME"])
    assert not (data / "memlane").exists()
    with Memory(embedder=FakeEmbedder()) as mem:
        mem.add("x", user_id="alice")
    assert (data / "memlane" / "memlane.db").is_file()


def test_a_store_that_must_exist_is_not_created(tmp_path: Path) -> None:
    from memlane.store import open_store

    with pytest.raises(InvalidInputError, match="does not exist"):
        open_store(tmp_path / "missing.db", read_only=True)
    assert list(tmp_path.iterdir()) == []


# --- read-only stores ----------------------------------------------------------------------


def _filled(path: Path) -> str:
    with Memory(path, embedder=FakeEmbedder()) as mem:
        kept = mem.add("I moved to Lisbon in March.", user_id="alice")[0]
        mem.update(kept.id, "I live in Lisbon.", user_id="alice")
    return kept.id


READS: list[Call] = [
    lambda m: m.get_all(user_id="alice"),
    lambda m: m.search("Lisbon", user_id="alice"),
    lambda m: m.context("Lisbon", user_id="alice"),
    lambda m: m.stats(),
    lambda m: m.messages(user_id="alice"),
    lambda m: m.jobs(),
]
WRITES: list[Call] = [
    lambda m: m.add("new", user_id="alice"),
    lambda m: m.update(m.get_all(user_id="alice")[0].id, "changed", user_id="alice"),
    lambda m: m.delete(m.get_all(user_id="alice")[0].id, user_id="alice"),
    lambda m: m.delete_all(user_id="alice"),
    lambda m: m.forget(user_id="alice"),
    lambda m: m.reset(),
]


def _check_read_only(mem: Memory, kept: str) -> None:
    assert mem.get(kept).text == "I live in Lisbon."
    assert [e.op for e in mem.history(kept)] == ["add", "update"]
    for read in READS:
        assert read(mem) is not None
    assert mem.search("Lisbon", user_id="alice")[0].memory.text.endswith("Lisbon.")
    for write in WRITES:
        with pytest.raises(ReadOnlyError, match="read-only"):
            write(mem)
    assert mem.get(kept).text == "I live in Lisbon."


def test_a_store_opened_read_only_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    kept = _filled(path)
    before = _digest(path)
    with Memory(path, embedder=FakeEmbedder(), read_only=True) as mem:
        _check_read_only(mem, kept)
    assert _digest(path) == before and _empty_journal(path)
    assert issubclass(ReadOnlyError, UsageError)


def test_read_only_needs_an_existing_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="read-only"):
        Memory(":memory:", embedder=FakeEmbedder(), read_only=True)
    with pytest.raises(InvalidInputError, match="does not exist"):
        Memory(tmp_path / "none.db", embedder=FakeEmbedder(), read_only=True)
    assert list(tmp_path.iterdir()) == []


def _immutable(path: Path, on: bool) -> bool:
    """``chattr +i``: even root cannot write the file (or create files in the directory)."""
    done = os.system(f"chattr {'+' if on else '-'}i '{path}' 2>/dev/null")
    return done == 0


@pytest.fixture
def frozen(tmp_path: Path) -> Callable[[Path], None]:
    frozen_paths: list[Path] = []

    def freeze(path: Path) -> None:
        if not _immutable(path, True):
            pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE)")
        frozen_paths.append(path)

    yield freeze  # type: ignore[misc]
    for path in frozen_paths:
        _immutable(path, False)


def test_a_file_that_cannot_be_written_opens_read_only(tmp_path: Path,
                                                       frozen: Callable[[Path], None]) -> None:
    path = tmp_path / "frozen.db"
    kept = _filled(path)
    before = _digest(path)
    frozen(path)
    with Memory(path, embedder=FakeEmbedder()) as mem:
        _check_read_only(mem, kept)
    assert _digest(path) == before


def test_a_file_in_a_directory_that_cannot_be_written_opens_read_only(
        tmp_path: Path, frozen: Callable[[Path], None]) -> None:
    folder = tmp_path / "frozen"
    folder.mkdir()
    path = folder / "x.db"
    kept = _filled(path)
    before = _digest(path)
    frozen(folder)
    with Memory(path, embedder=FakeEmbedder()) as mem:
        _check_read_only(mem, kept)
    assert _digest(path) == before and _siblings(path) == []


# --- LoCoMo files --------------------------------------------------------------------------


def _sample(sample_id: str = "conv-1", **turn: Any) -> dict[str, Any]:
    first = {"speaker": "Ann", "dia_id": "D1:1", "text": "hi"}
    second = {"speaker": "Bob", "dia_id": "D1:2", "text": "hello", **turn}
    return {"sample_id": sample_id, "conversation": {
        "speaker_a": "Ann", "speaker_b": "Bob",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [first, {k: v for k, v in second.items() if v is not None}]}}


@pytest.mark.parametrize("data, message", [
    ([_sample(speaker=None)], r"sample 'conv-1' session 1 turn 2 \(D1:2\).*'speaker'"),
    ([_sample(dia_id=None)], r"sample 'conv-1' session 1 turn 2.*'dia_id'"),
    ([_sample(), {"sample_id": "conv-2"}], r"sample 'conv-2'.*'conversation'"),
    ([_sample(), {"conversation": {}}], r"sample 2.*'sample_id'"),
    ([_sample(), "text"], r"sample 2 .*mapping"),
    ([{**_sample(), "conversation": {"session_1_date_time": "1:56 pm on 8 May, 2023",
                                      "session_1": ["hi"]}}], r"session 1 turn 1.*mapping"),
])
def test_a_locomo_file_with_missing_fields_names_the_sample_and_turn(
        tmp_path: Path, data: list[Any], message: str) -> None:
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=message):
        locomo.load(path)


def test_nul_characters_are_refused_alike_on_every_store(mem: Memory) -> None:
    # PostgreSQL keeps no NUL in text or JSON: every store refuses it before writing
    for call in (lambda: mem.add("text with nul \x00 byte", user_id="a"),
                 lambda: mem.add("fine", user_id="a", metadata={"s": "nul\x00byte"}),
                 lambda: mem.search("query \x00", user_id="a")):
        with pytest.raises(InvalidInputError, match="NUL"):
            call()
    assert mem.get_all(user_id="a") == []


@pytest.mark.parametrize("wait", [1e308, 3600.5, 10**30])
def test_a_forget_wait_past_an_hour_is_refused_before_anything_is_erased(mem: Memory,
                                                                         wait: float) -> None:
    mem.add("keep me", user_id="alice")
    with pytest.raises(InvalidInputError, match="wait"):
        mem.forget(user_id="alice", wait=wait)
    assert [r.text for r in mem.get_all(user_id="alice")] == ["keep me"]


def test_a_forget_wait_of_an_hour_is_accepted(mem: Memory) -> None:
    mem.add("erase me", user_id="alice")
    assert mem.forget(user_id="alice", wait=3600).messages == 1
