"""Reader for conversation files in the LoCoMo format (a list of samples with sessions).

Each sample becomes one scope; each session, in order, one ``add`` with the session's date
as its time; each turn one message whose id is its ``dia_id`` (so evidence can be cited).
The turns of a few sessions are embedded together before those sessions are added (one
embedder call pads far less than one per session); each add then finds its vectors in the
embedder's cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..timeutil import parse_with_formats
from ..write.ingest import normalize
from ..write.vectors import embed_messages
from .rejects import Importer, OnError

if TYPE_CHECKING:
    from ..memory import Memory

_SESSION = re.compile(r"session_(\d+)")
_DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y")
AHEAD = 512
"""Turns embedded together ahead of their adds (far fewer than the embedder's cache holds)."""


@dataclass(frozen=True, slots=True)
class Session:
    number: int
    time: datetime
    messages: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Conversation:
    sample_id: str
    speakers: tuple[str, str]
    sessions: list[Session]
    qa: list[dict[str, Any]]

    @property
    def turn_count(self) -> int:
        return sum(len(s.messages) for s in self.sessions)


def turn_text(turn: dict[str, Any]) -> str:
    """A turn's text, with the caption of an image it shared (as the data README does)."""
    text = str(turn.get("text", ""))
    caption = turn.get("blip_caption")
    return f"{text} and shared {caption}." if caption else text


def parse_date(value: str) -> datetime:
    return parse_with_formats(value, _DATE_FORMATS, "LoCoMo session")


def load(path: str | Path) -> list[Conversation]:
    """Read and validate a LoCoMo-format file; raise InvalidInputError if it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path} is not a readable JSON file: {exc}") from exc
    if not looks_like(data):
        raise InvalidInputError(
            f"{path} is not in the LoCoMo format (a list of samples with 'sample_id' "
            "and 'conversation')"
        )
    return parse(data)


def parse(data: list[dict[str, Any]]) -> list[Conversation]:
    """Conversations from already-loaded LoCoMo-format samples."""
    return [_conversation(i, sample) for i, sample in enumerate(data, 1)]


def looks_like(data: Any) -> bool:
    return (isinstance(data, list) and bool(data) and isinstance(data[0], dict)
            and "sample_id" in data[0] and isinstance(data[0].get("conversation"), dict))


def _conversation(index: int, sample: Any) -> Conversation:
    if not isinstance(sample, dict):
        raise InvalidInputError(f"sample {index} is not a mapping with 'sample_id' and "
                                "'conversation'")
    if "sample_id" not in sample:
        raise InvalidInputError(f"sample {index} has no 'sample_id'")
    where = f"sample {str(sample['sample_id'])!r}"
    conv = sample.get("conversation")
    if not isinstance(conv, dict):
        raise InvalidInputError(f"{where} has no 'conversation' mapping")
    sessions = []
    for key, turns in conv.items():
        match = _SESSION.fullmatch(key)
        if not match or not isinstance(turns, list) or not turns:
            continue
        number = int(match.group(1))
        date = conv.get(f"session_{number}_date_time")
        if not isinstance(date, str):
            raise InvalidInputError(f"{where} session {number} has no date")
        messages = [_message(f"{where} session {number} turn {i}", t)
                    for i, t in enumerate(turns, 1)]
        sessions.append(Session(number, parse_date(date), [m for m in messages if m]))
    sessions.sort(key=lambda s: s.number)
    return Conversation(
        sample_id=str(sample["sample_id"]),
        speakers=(str(conv.get("speaker_a", "")), str(conv.get("speaker_b", ""))),
        sessions=sessions,
        qa=list(sample.get("qa", [])),
    )


def _message(where: str, turn: Any) -> dict[str, Any] | None:
    """One turn as a message (``None`` for a turn with neither text nor image)."""
    if not isinstance(turn, dict):
        raise InvalidInputError(f"{where} is not a mapping with 'speaker', 'dia_id' and 'text'")
    if "dia_id" in turn:
        where += f" ({turn['dia_id']})"
    for field in ("speaker", "dia_id"):
        if turn.get(field) is None:
            raise InvalidInputError(f"{where} has no {field!r}")
    if not (str(turn.get("text", "")).strip() or turn.get("blip_caption")):
        return None
    return {"role": "user", "name": str(turn["speaker"]), "id": str(turn["dia_id"]),
            "content": turn_text(turn)}


def ingest(memory: Memory, conversations: list[Conversation], *, user_prefix: str = "",
           progress: bool = False, infer: bool = False, on_error: OnError = "skip",
           file: str | None = None) -> dict[str, Any]:
    """Add every session of every conversation, in order; return counts, with the messages
    ``add`` refused (left out, or with ``on_error="stop"`` the first, where the import
    stopped; see ``rejects``). ``file`` names the file in those reports."""
    from tqdm import tqdm

    total = sum(c.turn_count for c in conversations)
    importer = Importer(memory, on_error)
    stored = 0
    with tqdm(total=total, desc="import", unit="turn", disable=not progress) as bar:
        for conv in conversations:
            for sessions in _ahead(conv.sessions):
                _embed_ahead(memory, sessions)
                for session in sessions:
                    name = f"session_{session.number}"
                    where = {**({"file": file} if file else {}), "sample": conv.sample_id,
                             "session": name}
                    stored += importer.add(session.messages, where,
                                           user_id=user_prefix + conv.sample_id,
                                           session_id=name, timestamp=session.time,
                                           infer=infer)
                    bar.update(len(session.messages))
    return {"conversations": len(conversations), "turns": total, "memories": stored,
            **importer.summary()}


def _ahead(sessions: list[Session]) -> list[list[Session]]:
    """Consecutive sessions in groups of at most ``AHEAD`` turns (a longer session alone)."""
    groups: list[list[Session]] = []
    size = 0
    for session in sessions:
        if groups and size + len(session.messages) <= AHEAD:
            groups[-1].append(session)
            size += len(session.messages)
        else:
            groups.append([session])
            size = len(session.messages)
    return groups


def _embed_ahead(memory: Memory, sessions: list[Session]) -> None:
    """The vectors that adding ``sessions`` will ask for, computed in one call (and kept
    in the embedder's cache); nothing for a remote memory, whose server embeds."""
    embedder = getattr(memory, "embedder", None)
    if embedder is None:
        return
    messages = []
    for session in sessions:
        try:
            messages += [(m.content, m.name) for m in normalize(session.messages)]
        except InvalidInputError:  # its add refuses it (or leaves out its bad message)
            continue
    embed_messages(embedder, messages)
