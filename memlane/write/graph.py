"""Entities and relations, kept as memories of kinds ``entity`` and ``relation``.

The graph lives in the same table as every other memory, so it shares scopes, history,
bi-temporal validity, export and erasure. An entity's text is its name; ``metadata.norm``
holds the normalized name that merges spellings. A relation's text reads as a sentence;
its metadata names the subject and object entity ids, the predicate and the fact it came
from. Facts list the entities they mention in ``metadata.entities``. Pure functions here.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

from .. import kinds
from ..ids import new_id
from ..types import MemoryRecord, Scope, content_hash

MERGE_SIMILARITY = 0.95
"""Dense score (cosine mapped to [0, 1]) above which two differently spelled names merge."""

_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(name: str) -> str:
    """Case, punctuation and spacing folded: "Dr. Ana  Silva" and "dr ana silva" match."""
    return " ".join(_NON_WORD.sub(" ", name.lower()).split())


def owner_scope(record: MemoryRecord) -> Scope:
    """Where a person's facts and entities are shared: the user (or agent) across sessions."""
    if record.user_id is None and record.agent_id is None:
        return record.scope
    return Scope(record.tenant, record.user_id, record.agent_id)


def entity(name: str, fact: MemoryRecord, now: datetime) -> MemoryRecord:
    owner = owner_scope(fact)
    return replace(fact, id=new_id(), kind=kinds.ENTITY, text=name, speaker=None,
                   hash=content_hash(name), user_id=owner.user_id, agent_id=owner.agent_id,
                   session_id=owner.session_id, created_at=now, updated_at=now,
                   metadata={"norm": normalize(name)}, version=1, status="active",
                   valid_to=None, superseded_by=None)


def relation(subject: MemoryRecord, predicate: str, obj: MemoryRecord, fact: MemoryRecord,
             now: datetime) -> MemoryRecord:
    text = f"{subject.text} {predicate} {obj.text}"
    return replace(fact, id=new_id(), kind=kinds.RELATION, text=text, speaker=None,
                   hash=content_hash(text), created_at=now, updated_at=now, version=1,
                   status="active", valid_to=None, superseded_by=None,
                   metadata={"subject": subject.id, "predicate": predicate,
                             "object": obj.id, "fact": fact.id})
