"""A small in-memory rate limit per key (the client's address) for public pages.

Each worker process keeps its own counts (``outreach serve --workers N`` lets a client make up
to N times the limit). The staff login's limit is another thing: it counts failed logins in
the store, shared by every worker (:func:`outreach.accounts.begin_login`).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable

MAX_KEYS = 10_000  # clients remembered at once; the idle ones are forgotten first


class RateLimit:
    """At most ``limit`` hits per key in any ``window`` seconds of ``clock``."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> int | None:
        """Count a hit for ``key``: None if it is allowed, else the seconds to wait
        (``Retry-After``) before the next one is; a refused hit is not counted."""
        now = self.clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= MAX_KEYS:
                    self._forget(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return None

    def _forget(self, now: float) -> None:
        """Drop the keys without a hit in the window; if none is idle, the oldest half."""
        idle = [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]
        if not idle:
            by_age = sorted(self._hits, key=lambda k: self._hits[k][-1])
            idle = by_age[: len(by_age) // 2 or 1]
        for k in idle:
            del self._hits[k]
