"""Reader for BEAM chats: a directory holding ``chat.json`` (and, for the evaluation,
``probing_questions.json``), or a directory of such directories (``1/``, ``2/``, ...).

``chat.json`` is a list of batches ``{batch_number, time_anchor, turns}``; ``turns`` is a
list of exchanges, each a list of messages ``{role, id, content}``. Each chat becomes one
scope (user id ``beam-<its directory's name>``), each batch, in order, one ``add`` (session
``batch-<number>``), each message one message whose id is ``str(id)``, so that evidence
(``source_chat_ids``) can be cited. Times keep the chat's order strictly: a message is at
the latest time anchor seen so far (the data puts a batch's anchor, such as
"March-15-2024", on its first message, or on the batch), or one second after the message
before it if that is later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..timeutil import parse_with_formats
from .rejects import Importer, OnError

if TYPE_CHECKING:
    from ..memory import Memory

CHAT_FILE = "chat.json"
QUESTIONS_FILE = "probing_questions.json"
ANCHOR_FORMATS = ("%B-%d-%Y", "%b-%d-%Y", "%B %d, %Y", "%b %d, %Y", "%Y-%m-%d")
STEP = timedelta(seconds=1)
"""How far apart the messages of one anchor are placed, in the chat's order."""
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Batch:
    number: int
    messages: list[dict[str, Any]]
    """memlane messages: role, id, content and timestamp."""


@dataclass(frozen=True, slots=True)
class Chat:
    name: str
    """The name of the chat's directory."""
    file: Path
    batches: list[Batch]
    questions: dict[str, list[dict[str, Any]]]
    """The probing questions by ability (empty when the chat has none)."""

    @property
    def user_id(self) -> str:
        return f"beam-{self.name}"

    @property
    def message_count(self) -> int:
        return sum(len(b.messages) for b in self.batches)

    def message_ids(self) -> set[str]:
        return {m["id"] for b in self.batches for m in b.messages}

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """Every probing question with its ability, in the file's order."""
        return [(ability, item) for ability, items in self.questions.items() for item in items]


def load(path: str | Path, *, questions: bool = False) -> list[Chat]:
    """Read and validate the chats at ``path`` (a chat directory, its ``chat.json``, or a
    directory of chat directories); with ``questions``, each needs its probing questions.
    Raise InvalidInputError for anything that is not BEAM."""
    return [_chat(d, questions) for d in chat_dirs(Path(path))]


def chat_dirs(path: Path) -> list[Path]:
    """The chat directories at ``path``, numbered ones in their numbers' order."""
    if path.is_file():
        return [path.parent]
    if (path / CHAT_FILE).is_file():
        return [path]
    found = sorted((d for d in path.iterdir() if (d / CHAT_FILE).is_file()),
                   key=_order) if path.is_dir() else []
    if not found:
        raise InvalidInputError(f"{path} holds no BEAM chat (a {CHAT_FILE}, or directories "
                                f"that each hold one)")
    return found


def _order(directory: Path) -> tuple[int, int, str]:
    name = directory.name
    return (0, int(name), "") if _NUMBER.fullmatch(name) else (1, 0, name)


def looks_like(path: Path) -> bool:
    """Whether ``path`` names BEAM chats by its layout (not yet read)."""
    return path.name == CHAT_FILE or path.is_dir()


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path} is not a readable JSON file: {exc}") from exc


def _chat(directory: Path, questions: bool) -> Chat:
    file = directory / CHAT_FILE
    data = _read(file)
    if not (isinstance(data, list) and data and all(
            isinstance(b, dict) and isinstance(b.get("turns"), list) for b in data)):
        raise InvalidInputError(f"{file} is not a BEAM chat (a list of batches, each with "
                                "'batch_number', 'time_anchor' and 'turns')")
    found = _questions(directory / QUESTIONS_FILE) if questions else {}
    return Chat(directory.name, file, _batches(file, data), found)


def _batches(file: Path, data: list[dict[str, Any]]) -> list[Batch]:
    batches, seen = [], set()
    last: datetime | None = None
    for position, raw in enumerate(data, 1):
        number = raw.get("batch_number", position)
        where = f"{file} batch {number}"
        messages: list[dict[str, Any]] = []
        for exchange, message in _messages(where, raw["turns"]):
            anchor = message.get("time_anchor") or (raw.get("time_anchor") if not messages
                                                    else None)
            last = _time(f"{where} exchange {exchange}", anchor, last)
            out = _message(f"{where} exchange {exchange}", message, last)
            if out["id"] in seen:
                raise InvalidInputError(f"{where}: message id {out['id']} appears twice in "
                                        "the chat")
            seen.add(out["id"])
            messages.append(out)
        batches.append(Batch(number if isinstance(number, int) else position, messages))
    return batches


def _messages(where: str, turns: list[Any]) -> Iterator[tuple[int, Any]]:
    for exchange, messages in enumerate(turns, 1):
        if not isinstance(messages, list):
            raise InvalidInputError(f"{where} exchange {exchange} is not a list of messages")
        yield from ((exchange, m) for m in messages)


def _time(where: str, anchor: Any, last: datetime | None) -> datetime:
    """A message's time: its anchor, or one step after the message before if that is
    later (or if there is no anchor)."""
    if anchor is not None and not isinstance(anchor, str):
        raise InvalidInputError(f"{where}: time_anchor {anchor!r} is not a date")
    at = parse_with_formats(anchor, ANCHOR_FORMATS, f"{where} time anchor") if anchor else None
    if last is None:
        if at is None:
            raise InvalidInputError(f"{where}: the chat's first message has no time anchor "
                                    "(on its batch or on itself), so it cannot be dated")
        return at
    return max(at, last + STEP) if at else last + STEP


def _message(where: str, message: Any, when: datetime) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise InvalidInputError(f"{where}: a message is not a mapping with 'role', 'id' and "
                                "'content'")
    ident = message.get("id")
    if isinstance(ident, bool) or not isinstance(ident, int | str):
        raise InvalidInputError(f"{where}: a message has no 'id' (a number or a string)")
    for name in ("role", "content"):
        if not isinstance(message.get(name), str):
            raise InvalidInputError(f"{where}: message {ident} has no {name!r} string")
    return {"role": message["role"], "id": str(ident), "content": message["content"],
            "timestamp": when.isoformat()}


def _questions(path: Path) -> dict[str, list[dict[str, Any]]]:
    data = _read(path)
    if not isinstance(data, dict) or not all(
            isinstance(items, list) and all(isinstance(i, dict) and "question" in i
                                            for i in items)
            for items in data.values()):
        raise InvalidInputError(f"{path} is not BEAM probing questions (a mapping of each "
                                "ability to a list of questions with 'question')")
    return data


def evidence(item: dict[str, Any]) -> list[str]:
    """A question's evidence message ids as strings, in order, once each: its
    ``source_chat_ids`` as a list (nested lists flattened) or, for some, a mapping of lists
    (their union)."""
    return list(dict.fromkeys(_ids(item.get("source_chat_ids"))))


def _ids(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for inner in value:
            yield from _ids(inner)
    elif isinstance(value, int | str) and not isinstance(value, bool):
        yield str(value)


def ingest(memory: Memory, chats: list[Chat], *, user_prefix: str = "",
           progress: bool = False, infer: bool = False,
           on_error: OnError = "skip") -> dict[str, Any]:
    """Add every batch of every chat, in order; return counts, with the messages ``add``
    refused (see ``rejects``)."""
    from tqdm import tqdm

    importer = Importer(memory, on_error)
    stored = 0
    total = sum(c.message_count for c in chats)
    with tqdm(total=total, desc="import", unit="message", disable=not progress) as bar:
        for chat in chats:
            for batch in chat.batches:
                session = f"batch-{batch.number}"
                where = {"file": str(chat.file), "sample": chat.user_id, "session": session}
                stored += importer.add(batch.messages, where,
                                       user_id=user_prefix + chat.user_id,
                                       session_id=session, infer=infer)
                bar.update(len(batch.messages))
    return {"chats": len(chats), "messages": total, "memories": stored,
            **importer.summary()}
