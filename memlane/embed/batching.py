"""Model calls for texts sorted by length: which neighbours share a call (``plan``, a pure
function), and the calls run side by side (``run_calls``).

A call pads every text to the longest one in it, and the model's cost grows with the padded
tokens; each call also costs about as much as ``RUN_TOKENS`` tokens on its own (a few
hundred operators to start). Fixed groups of eight sorted texts padded LoCoMo sessions by a
quarter; the plan here picks, among all ways to cut the sorted texts into consecutive
calls, the one with the least estimated cost (usually a few percent of padding).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

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


def run_calls(work: Callable[[range], None], calls: Sequence[range], at_once: int) -> None:
    """``work`` on every call, in order, by up to ``at_once`` threads (this one and helpers
    started for the purpose); the first error is raised once all have stopped."""
    pending = deque(calls)
    failed: list[Exception] = []

    def drain() -> None:
        while pending and not failed:
            try:
                positions = pending.popleft()
            except IndexError:  # another thread took the last one
                return
            try:
                work(positions)
            except Exception as exc:
                failed.append(exc)

    helpers = [threading.Thread(target=drain, name="memlane-embed", daemon=True)
               for _ in range(min(at_once, len(calls)) - 1)]
    for helper in helpers:
        helper.start()
    try:
        drain()
    finally:
        pending.clear()
        for helper in helpers:
            helper.join()
    if failed:
        raise failed[0]
