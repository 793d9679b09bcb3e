"""A token bucket per client. Pure: no I/O library; the clock is injected.

Each key (an AEMP client, or the caller behind a product token) has a bucket of `burst`
requests that refills at `rate_per_s`. A request takes one; an empty bucket answers how long
until the next one is there (the `Retry-After`). The buckets live in the memory of one process:
behind a load balancer with N workers a client gets up to N times the rate (docs/aemp.md).
Memory is bounded: past `max_keys` buckets, the full ones (idle long enough to have refilled)
are dropped, and if none is full the oldest half goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    """Token buckets by key."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        """Buckets of `burst` requests refilled at `rate_per_s`."""
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take one request for `key`: 0.0 if allowed, else the seconds until one is available."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self._max_keys:
                self._evict(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def _evict(self, now: float) -> None:
        full_after_s = self._burst / self._rate
        self._buckets = {
            key: (tokens, at)
            for key, (tokens, at) in self._buckets.items()
            if now - at < full_after_s
        }
        if len(self._buckets) > self._max_keys:
            keep = sorted(self._buckets.items(), key=lambda item: item[1][1])
            self._buckets = dict(keep[len(keep) // 2 :])
