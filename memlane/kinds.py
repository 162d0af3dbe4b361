"""The kinds of memory the library itself writes and reads (``MemoryRecord.kind``).

A caller may store other kinds of its own; these are the ones the stages give a meaning.
"""

from __future__ import annotations

TURN = "turn"
"""One message, verbatim: what ``add`` stores."""
WINDOW = "window"
"""A turn together with the turns just before it in its conversation (``write.windows``)."""
PASSAGE = "passage"
"""A span of a long message, small enough for the embedder (``write.passages``)."""
FACT = "fact"
"""A fact the LLM write path extracted from turns and reconciled with the stored ones."""
SUMMARY = "summary"
"""The rolling summary of one conversation, kept by the LLM write path."""
ENTITY = "entity"
"""A named thing the facts of a user (or agent) mention (``write.graph``)."""
RELATION = "relation"
"""A subject-predicate-object link between two entities, read from a fact."""

ALL_KINDS = (TURN, WINDOW, PASSAGE, FACT, SUMMARY, ENTITY, RELATION)
"""Every kind the library writes: the kinds a read may ask for."""
GRAPH_KINDS = (ENTITY, RELATION)
DERIVED_KINDS = (WINDOW, PASSAGE, *GRAPH_KINDS)
"""Kinds derived from other memories (windows of turns, passages of long messages, the
entity graph of facts); hidden from listings and the whole-history context unless asked for
by kind."""
