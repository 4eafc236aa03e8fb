"""Retries: exponential backoff with jitter, up to a bound after which a failure is permanent."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``delay(n)`` = min(cap, base·2ⁿ⁻¹) shortened by up to ``jitter`` of itself.

    Jitter spreads the retries of many messages that failed together (a provider outage) so
    they do not hit the provider again in one burst. With ``jitter`` ≤ 0.5 each delay is at
    least as long as the one before it while the ceiling doubles, so delays grow up to the cap
    (and then stay between cap·(1 − jitter) and the cap).
    """

    max_attempts: int = 48
    base_seconds: float = 5.0
    max_delay_seconds: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_seconds <= 0 or self.max_delay_seconds < self.base_seconds:
            raise ValueError("need 0 < base_seconds <= max_delay_seconds")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def ceiling(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based) before jitter."""
        return min(self.max_delay_seconds, self.base_seconds * 2 ** max(attempt - 1, 0))

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter * rng.random())

    def exhausted(self, attempts: int) -> bool:
        """True when ``attempts`` failed attempts are all the policy allows."""
        return attempts >= self.max_attempts
