"""Pacing: token-bucket rate limits per channel and quiet hours for SMS."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_WINDOW = re.compile(r"([0-9]{2}:[0-9]{2}(?::[0-9]{2})?)\s*-\s*([0-9]{2}:[0-9]{2}(?::[0-9]{2})?)")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a send takes one token.

    Time comes from the caller (the service's injectable clock), so tests control it. A
    clock that steps backwards adds nothing.
    """

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now

    def try_take(self, now: float) -> bool:
        with self._lock:
            self._refill(now)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def give_back(self) -> None:
        """Return a token taken for a send that did not happen after all."""
        with self._lock:
            self._tokens = min(float(self.burst), self._tokens + 1.0)

    def available(self, now: float) -> float:
        with self._lock:
            self._refill(now)
            return self._tokens


@dataclass(frozen=True)
class QuietHours:
    """A daily window (local time) in which SMS are held; they go out when it ends.

    The window may cross midnight (21:00–07:00). ``start == end`` means no window.
    """

    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, spec: str, tz: str) -> QuietHours | None:
        """``"21:00-07:00"`` → a window; ``""`` → None (no quiet hours)."""
        spec = spec.strip()
        if not spec:
            return None
        match = _WINDOW.fullmatch(spec)
        try:
            if match is None:
                raise ValueError
            start, end = time.fromisoformat(match[1]), time.fromisoformat(match[2])
        except ValueError:
            raise ValueError(f"quiet hours must look like 21:00-07:00, not {spec!r}") from None
        if start == end:
            return None
        return cls(start, end, ZoneInfo(tz))

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def hold_until(self, moment: datetime) -> datetime | None:
        """When a message due at ``moment`` may go out; None when it may go now."""
        if not self.contains(moment):
            return None
        local = moment.astimezone(self.tz)
        end = datetime.combine(local.date(), self.end, tzinfo=self.tz)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=self.tz)
        return end
