"""The claim's decisions: whether a channel's due messages wait (quiet hours, rate limit), how
many may go now, and what each claimed message's attempt is (number, reference, provider).

The pacing state (token buckets) lives here; the database work is the service's. A channel
that picks among several providers hands in its choice as ``provider_for``, so no adapter is
needed to decide.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from motcua_notify.domain.notification import Notification
from motcua_notify.domain.pacing import QuietHours, TokenBucket
from motcua_notify.domain.states import Channel, State

# Where an attempt goes first, given the provider of the attempt it resends ("" for a new one).
ProviderFor = Callable[[str], str]


class Pacing:
    """Quiet hours and token buckets, per channel, applied when claiming.

    Without ``quiet`` (no quiet hours configured) nothing is held for the time of day; a
    channel without a bucket is not rate limited.
    """

    def __init__(
        self,
        quiet: QuietHours | None,
        quiet_channels: Collection[Channel],
        buckets: Mapping[Channel, TokenBucket],
        tz: ZoneInfo,
    ) -> None:
        self.quiet = quiet
        self.quiet_channels = quiet_channels
        self.buckets = dict(buckets)
        self.tz = tz

    def hold_until(self, channel: Channel, now: datetime) -> datetime | None:
        """When ``channel``'s messages due now may go, if quiet hours hold them; else None."""
        if channel in self.quiet_channels and self.quiet is not None:
            return self.quiet.hold_until(now)
        return None

    def hold_note(self, until: datetime) -> str:
        """What a message held for quiet hours says in its history (local time)."""
        return f"held for quiet hours until {until.astimezone(self.tz).strftime('%H:%M')}"

    def rate_limited(self, channel: Channel) -> bool:
        return channel in self.buckets

    def limit(self, channel: Channel, most: int, now: datetime) -> int:
        """How many of ``channel``'s messages may be claimed now (0: the rate limit holds)."""
        bucket = self.buckets.get(channel)
        if bucket is None:
            return most
        return min(most, int(bucket.available(now.timestamp())))

    def take(self, channel: Channel, now: datetime) -> bool:
        """Take the token one claimed message needs; False when the bucket ran dry."""
        bucket = self.buckets.get(channel)
        return bucket is None or bucket.try_take(now.timestamp())


@dataclass(frozen=True)
class Attempt:
    """The attempt a claimed message is sent as."""

    number: int
    reference: str  # the idempotency reference: the same when an interrupted attempt resends
    detail: str
    provider: str
    queue_wait: float | None = None  # seconds a first attempt waited since the intent


def next_attempt(n: Notification, now: datetime, provider_for: ProviderFor | None) -> Attempt:
    """The attempt ``n`` is claimed for.

    A message still ``sending`` lost its sender mid-send: the same attempt goes again with
    the same reference, to the provider it went to (that one knows the reference). Otherwise
    a new attempt, with a new reference, to the provider the channel puts first.
    """
    if n.state is State.SENDING:
        detail = f"resending attempt {n.attempts} (same reference): its sender stopped"
        provider = provider_for(n.provider) if provider_for is not None else n.provider
        return Attempt(n.attempts, n.reference, detail, provider)
    number = n.attempts + 1
    provider = provider_for("") if provider_for is not None else n.provider
    wait = max((now - n.created_at).total_seconds(), 0.0) if number == 1 else None
    return Attempt(number, n.attempt_reference(number), f"attempt {number}", provider, wait)
