"""Imports in which a bad message costs only itself.

An import of conversations adds their messages in batches (a LoCoMo session, a BEAM batch).
A message that ``add`` refuses (longer than the limit, not valid Unicode, empty) would fail
its whole batch; here the batch is added again one message at a time, so that the bad
message is left out and reported, with where it was and why, and the others are stored.
With ``on_error="stop"`` the import ends at the first bad message instead, keeping what was
stored before it (the messages of its batch before it included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..memory import Memory

OnError = Literal["skip", "stop"]
ON_ERROR: tuple[OnError, ...] = ("skip", "stop")
_POSITION = re.compile(r"^message 0 ")


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message an import left out: where it was (file, sample, session, message id, or
    an export's line) and why."""

    where: dict[str, str]
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {**self.where, "reason": self.reason}

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.where.items()) + f": {self.reason}"


@dataclass(slots=True)
class Importer:
    """Adds batches of messages to ``memory``, leaving out (and noting) those it refuses."""

    memory: Memory
    on_error: OnError = "skip"
    rejected: list[Rejected] = field(default_factory=list)
    stopped: bool = False
    """Set by the first bad message when ``on_error`` is "stop": nothing more is added."""

    def add(self, messages: Sequence[Mapping[str, Any]], where: Mapping[str, str],
            **options: Any) -> int:
        """Add ``messages`` (each with an ``id``) with ``options`` (scope, time, infer), as
        ``Memory.add`` does; return how many memories were stored."""
        if self.stopped or not messages:
            return 0
        try:
            return len(self.memory.add(list(messages), **options))
        except InvalidInputError as exc:
            if len(messages) == 1:
                self._reject(messages[0], where, exc)
                return 0
        stored = 0
        for message in messages:  # the batch again, one message at a time
            if self.stopped:
                break
            try:
                stored += len(self.memory.add([message], **options))
            except InvalidInputError as exc:
                self._reject(message, where, exc)
        return stored

    def _reject(self, message: Mapping[str, Any], where: Mapping[str, str],
                exc: InvalidInputError) -> None:
        place = {**where, "message": str(message.get("id"))}
        self.rejected.append(Rejected(place, _POSITION.sub("", str(exc))))
        self.stopped = self.on_error == "stop"

    def summary(self) -> dict[str, Any]:
        """What to add to an import's counts: the messages left out and whether it stopped."""
        return {"rejected": [r.to_dict() for r in self.rejected], "stopped": self.stopped}
