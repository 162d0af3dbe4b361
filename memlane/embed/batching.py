"""Model calls for texts sorted by length: which neighbours share a call. Pure functions.

A call pads every text to the longest one in it, and the model's cost grows with the padded
tokens; each call also costs about as much as ``RUN_TOKENS`` tokens on its own (a few
hundred operators to start). Fixed groups of eight sorted texts padded LoCoMo sessions by a
quarter; the plan here picks, among all ways to cut the sorted texts into consecutive
calls, the one with the least estimated cost (usually a few percent of padding).
"""

from __future__ import annotations

from collections.abc import Sequence

RUN_TOKENS = 12
"""What one model call costs on top of its tokens, counted in tokens (measured on MiniLM,
one thread: about 3.5 ms a call, 0.33 ms a token)."""
CALL_TOKENS = 2_048
"""The most padded tokens one call takes (larger calls cost more per token: the
activations no longer fit the caches)."""
CALL_TEXTS = 64
"""The most texts one call takes."""


def plan(lengths: Sequence[int]) -> list[range]:
    """Consecutive calls, as ranges of positions, for token ``lengths`` sorted ascending:
    the cut with the least ``RUN_TOKENS`` per call plus padded tokens."""
    best = [0] * (len(lengths) + 1)  # best[j]: the least cost of the first j texts
    start = [0] * (len(lengths) + 1)  # the first text of the last call in that cut
    for end in range(1, len(lengths) + 1):
        width = lengths[end - 1]
        best[end], start[end] = best[end - 1] + RUN_TOKENS + width, end - 1
        for first in range(end - 2, max(-1, end - 1 - CALL_TEXTS), -1):
            size = end - first
            if size * width > CALL_TOKENS:
                break
            cost = best[first] + RUN_TOKENS + size * width
            if cost < best[end]:
                best[end], start[end] = cost, first
    return _calls(start)


def _calls(start: list[int]) -> list[range]:
    calls = []
    end = len(start) - 1
    while end > 0:
        calls.append(range(start[end], end))
        end = start[end]
    return calls[::-1]


def cost(lengths: Sequence[int], calls: Sequence[range]) -> int:
    """The estimated cost of ``calls`` over ``lengths`` (sorted ascending), in tokens."""
    return sum(RUN_TOKENS + len(call) * lengths[call[-1]] for call in calls)
