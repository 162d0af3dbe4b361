"""History events: the one way the write stages record a change to a memory."""

from __future__ import annotations

from ..ids import new_id
from ..types import HistoryEvent, MemoryRecord, check_unicode


def check_note(actor: str, reason: str | None) -> None:
    """Who made a change and why, as a caller gave them: text that can be stored."""
    if reason is not None:
        check_unicode(reason, "reason")
    check_unicode(actor, "actor")


def event(record: MemoryRecord, op: str, old: str | None, new: str | None, actor: str,
          reason: str | None) -> HistoryEvent:
    """The history entry of a change that left ``record`` as it is (its version, its time)."""
    return HistoryEvent(id=new_id(), memory_id=record.id, tenant=record.tenant, op=op,
                        version=record.version, old_text=old, new_text=new, actor=actor,
                        reason=reason, at=record.updated_at)
