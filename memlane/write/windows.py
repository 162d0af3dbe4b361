"""Windows: each turn together with the turns just before it, as one retrieval unit.

A question is often answered by a turn and the one it replies to, or by a few turns in a
row; a unit holding a turn with its two predecessors in the same conversation finds them
together and cites all of them. Windows are derived memories (``kind="window"``): built at
``add`` time, rebuilt when one of their turns changes, and their vector is the normalized
mean of their turns' vectors, so they cost no extra model call. A long message shows in a
window as its first passage only. Pure functions here.

"Before" is the conversation's order, the order stores keep messages in: event time, then
insertion. An add whose messages are older than stored ones places them back in time: their
windows reach back from there, and the windows of the turns just after them are rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from .. import kinds
from ..ids import new_id
from ..types import MemoryRecord, Message, content_hash
from . import passages

WINDOW_TURNS = 3

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Line:
    """One turn as a window sees it."""

    source_id: str
    text: str
    vector: Vector


def _text(lines: Sequence[Line]) -> str:
    """A window's text: its turns, a long message cut to its first passage (the rest is
    found by the message's passages), so that a window stays small enough for a prompt."""
    return "\n".join(passages.head(line.text) for line in lines)


def mean_vector(vectors: Sequence[Vector]) -> Vector:
    total = np.sum(np.stack(vectors), axis=0)
    norm = float(np.linalg.norm(total))
    result: Vector = (total / norm if norm > 0 else total).astype(np.float32)
    return result


def build(lines: Sequence[Line], newest: MemoryRecord, now: datetime) -> tuple[MemoryRecord,
                                                                              Vector]:
    """The window ending at ``newest`` (the last of ``lines``)."""
    text = _text(lines)
    record = MemoryRecord(
        id=new_id(), tenant=newest.tenant, user_id=newest.user_id, agent_id=newest.agent_id,
        session_id=newest.session_id, kind=kinds.WINDOW, text=text, role=None, speaker=None,
        hash=content_hash(text), source_ids=tuple(line.source_id for line in lines),
        event_time=newest.event_time, valid_from=newest.valid_from, created_at=now,
        updated_at=now, metadata=dict(newest.metadata),
    )
    return record, mean_vector([line.vector for line in lines])


def spans(existing: Sequence[Message], new: Sequence[Message]) -> list[tuple[str, ...]]:
    """The source ids of every window that ``new`` messages create or change, in the
    conversation's order: each new message's window, and the windows of the stored messages
    that have a new one among the ``WINDOW_TURNS - 1`` messages before them.

    ``existing`` are stored messages in the conversation's order, all that any of these
    windows shows (``store.base.depended``); ``new`` follow every stored message of the
    same event time, in the order of the add.
    """
    placed = sorted([(m.event_time, 0, i, m.id) for i, m in enumerate(existing)]
                    + [(m.event_time, 1, i, m.id) for i, m in enumerate(new)])
    order = [(source_id, is_new == 1) for _, is_new, _, source_id in placed]
    out = []
    for end in range(len(order)):
        span = order[max(0, end - WINDOW_TURNS + 1):end + 1]
        if any(is_new for _, is_new in span):
            out.append(tuple(source_id for source_id, _ in span))
    return out


def for_new_turns(previous: Sequence[Line], turns: Sequence[MemoryRecord],
                  vectors: Sequence[Vector], now: datetime) -> list[tuple[MemoryRecord, Vector]]:
    """One window per new turn, reaching back into ``previous`` (oldest first)."""
    lines = list(previous)
    out = []
    for turn, vector in zip(turns, vectors, strict=True):
        lines.append(Line(turn.source_ids[0], turn.index_text, vector))
        out.append(build(lines[-WINDOW_TURNS:], turn, now))
    return out


def rebuilt(window: MemoryRecord, lines: Sequence[Line],
            now: datetime) -> tuple[MemoryRecord, Vector]:
    """A new version of ``window`` over ``lines`` (its turns as they are now)."""
    text = _text(lines)
    record = replace(window, text=text, hash=content_hash(text),
                     source_ids=tuple(line.source_id for line in lines),
                     version=window.version + 1, updated_at=now)
    return record, mean_vector([line.vector for line in lines])
