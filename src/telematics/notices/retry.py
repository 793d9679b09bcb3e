"""When a failed delivery is tried again: exponential backoff with jitter. Pure.

Attempt n (1-based) that failed waits `base * 2**(n-1)`, capped at `cap`, then scaled by a random
factor in [0.5, 1.0] ("equal jitter"), so receivers that come back are not hit by every sender
at once, and never sooner than half the nominal delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, and how far apart.

    Attributes:
        base_s: Nominal wait after the first failed attempt.
        cap_s: Longest nominal wait.
        max_attempts: Attempts in all; after the last failure the delivery is `failed`.
    """

    base_s: float = 5.0
    cap_s: float = 3600.0
    max_attempts: int = 8

    def delay_s(self, attempts: int, rng: random.Random | None = None) -> float:
        """The wait after `attempts` attempts have failed (jittered)."""
        exponent = min(max(attempts - 1, 0), 60)
        nominal = min(self.cap_s, self.base_s * 2.0**exponent)
        factor = (rng or random).uniform(0.5, 1.0)  # jitter, not a secret
        return nominal * factor

    def gives_up(self, attempts: int) -> bool:
        """Whether no attempt follows `attempts` failed ones."""
        return attempts >= self.max_attempts
