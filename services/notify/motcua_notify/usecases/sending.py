"""Claiming and sending: what a channel's sender (:class:`~motcua_notify.sender.ChannelSender`)
calls to take due messages, hand one to its channel's adapter, and give back what it did not
send. The claim's decisions (quiet hours, rate limit, which attempt, which provider) are
:mod:`motcua_notify.domain.claim`'s; this module does the database work around them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

from opentelemetry import trace
from sqlalchemy.orm import Session

from motcua_kit.clock import Clock
from motcua_kit.db import on_commit, transaction
from motcua_kit.service import ServiceContext
from motcua_kit.tracing import context_from_headers
from motcua_notify.adapters import db
from motcua_notify.adapters.channels.base import ChannelAdapter
from motcua_notify.domain.claim import Pacing, next_attempt
from motcua_notify.domain.notification import Notification, SendResult, Verdict
from motcua_notify.domain.states import Channel, State
from motcua_notify.metrics import HELD, QUEUE_AGE, QUEUE_WAIT

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer("motcua.notify.sender")


class Sending:
    """Claims a channel's due messages under its pacing, sends them, releases the unsent."""

    def __init__(
        self,
        context: ServiceContext,
        repository: db.NotificationRepository,
        clock: Clock,
        channels: Mapping[Channel, ChannelAdapter],
        pacing: Pacing,
        *,
        lease_seconds: float,
        batch_size: int,
    ) -> None:
        self.context = context
        self.repository = repository
        self.clock = clock
        self.channels = channels
        self.pacing = pacing
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size
        for adapter in channels.values():
            if adapter.routing is not None:  # it picks providers: it tells before it switches
                adapter.routing.on_failover = self.fail_over

    def claim(self, channel: Channel, most: int) -> list[Notification]:
        """Take up to ``most`` of ``channel``'s due messages for sending (its sender's call)."""
        now = self.clock()
        lease_until = now + timedelta(seconds=self.lease_seconds)
        limit = min(most, self.batch_size)
        with transaction(self.context.sessions) as session:
            return self._claim(session, channel, now, lease_until, limit)

    def _claim(
        self, session: Session, channel: Channel, now: datetime, lease_until: datetime, most: int
    ) -> list[Notification]:
        until = self.pacing.hold_until(channel, now)
        if until is not None:
            held = self.repository.due(session, now, self.batch_size, [channel])
            for n in held:
                self.repository.hold(session, n, until, now, self.pacing.hold_note(until))
            if held:
                count = len(held)
                label = HELD.labels(channel.value, "quiet_hours")
                on_commit(session, lambda: label.inc(count))
            return []
        limit = self.pacing.limit(channel, most, now)
        if limit == 0 and self.pacing.rate_limited(channel):
            if self.repository.due(session, now, 1, [channel]):  # held, not just idle
                limited = HELD.labels(channel.value, "rate_limit")
                on_commit(session, limited.inc)
            return []
        claimed = []
        for n in self.repository.due(session, now, limit, [channel]):
            if not self.pacing.take(channel, now):
                break
            routing = self.channels[channel].routing
            attempt = next_attempt(n, now, routing.provider_for if routing is not None else None)
            if attempt.queue_wait is not None:
                observe = QUEUE_WAIT.labels(channel.value).observe
                on_commit(session, partial(observe, attempt.queue_wait))
            self.repository.claim(
                session,
                n,
                attempts=attempt.number,
                reference=attempt.reference,
                lease_until=lease_until,
                now=now,
                detail=attempt.detail,
                provider=attempt.provider,
            )
            claimed.append(
                replace(
                    n,
                    state=State.SENDING,
                    attempts=attempt.number,
                    reference=attempt.reference,
                    provider=attempt.provider,
                )
            )
        return claimed

    def release(self, unsent: list[Notification]) -> None:
        """Hand back claimed messages that were not sent (a stop came): due again at once."""
        with transaction(self.context.sessions) as session:
            for n in unsent:
                self.repository.release(session, n, self.clock())

    def fail_over(self, notification: Notification, reference: str, provider: str) -> None:
        """Write down where this attempt goes next before it goes (see ``ProviderRouting``)."""
        now = self.clock()
        with transaction(self.context.sessions) as session:
            self.repository.switch_provider(
                session, notification, reference, provider, now, f"failing over to {provider}"
            )

    def send(self, notification: Notification) -> SendResult:
        """Hand one claimed message to its channel's adapter, in a span on its event's trace."""
        adapter = self.channels[notification.channel]
        with _TRACER.start_as_current_span(
            f"notify send {notification.channel.value}",
            context=context_from_headers(notification.trace_headers),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "motcua.notification.id": notification.id,
                "motcua.dossier.code": notification.dossier_code,
                "motcua.attempt": notification.attempts,
            },
        ) as span:
            try:
                result = adapter.send(notification, notification.reference)
            except Exception as exc:  # an adapter bug must not stop the sender
                log.exception("channel %s failed on %s", notification.channel, notification.id)
                span.record_exception(exc)
                result = SendResult(
                    Verdict.TECHNICAL, detail=f"channel error: {type(exc).__name__}"
                )
            span.set_attribute("motcua.notification.verdict", result.verdict.value)
            span.set_attribute("motcua.notification.provider", result.provider)
            return result

    def update_queue_gauges(self) -> None:
        """How long the oldest due message of each channel has waited (0: none due)."""
        now = self.clock()
        with self.context.sessions() as session:
            oldest = self.repository.oldest_due(session, now)
        for channel in Channel:
            at = oldest.get(channel)
            QUEUE_AGE.labels(channel.value).set(max((now - at).total_seconds(), 0) if at else 0)
