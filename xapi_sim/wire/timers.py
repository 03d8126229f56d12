"""The front's timers: connection deadlines and one-shot callbacks on one heap, run by the
loop thread between selector passes (no timer thread).

A connection's deadline changes often (every read moves it), so moving it never searches
the heap: each new deadline is pushed, and an entry counts only while it is current --
for a callable always, for anything else while ``current(obj, when)`` holds (the
connection's deadline is still ``when`` and it is open). Stale entries are dropped when
they reach the top, and the heap is rebuilt from its current entries whenever it has grown
past four times what was current at the last rebuild, plus 1024.
"""

from __future__ import annotations

import heapq
import itertools
import time


class Timers:
    """Not thread-safe: used by the loop thread only."""

    def __init__(self, current):
        self._heap = []
        self._seq = itertools.count()
        self._current = current
        self._limit = 1024

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when, obj):
        """``obj`` falls due at ``when`` (``time.monotonic``): a callable is called then,
        anything else is handed back by ``due`` if still current."""
        heapq.heappush(self._heap, (when, next(self._seq), obj))
        if len(self._heap) > self._limit:
            self._compact()

    def _live(self, entry) -> bool:
        when, _, obj = entry
        return callable(obj) or self._current(obj, when)

    def _compact(self):
        live = [e for e in self._heap if self._live(e)]
        heapq.heapify(live)
        self._heap = live
        self._limit = 4 * len(live) + 1024

    def next_timeout(self):
        """Seconds until the first current entry falls due (0 if it has), None if none."""
        heap = self._heap
        while heap:
            if self._live(heap[0]):
                return max(0.0, heap[0][0] - time.monotonic())
            heapq.heappop(heap)
        return None

    def due(self, now):
        """Pop the current entries due by ``now``, earliest first, and yield their objects.
        Entries pushed meanwhile (by whatever handles one) are seen if due by ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._live(entry):
                yield entry[2]
