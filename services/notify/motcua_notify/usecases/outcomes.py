"""What came of a notification, written: its new state and history, its notify event in the
outbox (same transaction), and the metrics once that transaction commits.

Outcomes come from a send's answer (:meth:`Outcomes.settle`), a provider's delivery receipt
(:meth:`Outcomes.apply_receipt`), a receipt that never came (:meth:`Outcomes.time_out_receipts`)
and a channel no longer configured (:meth:`Outcomes.fail_unconfigured`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Container, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from motcua_kit.clock import Clock
from motcua_kit.db import on_commit, transaction
from motcua_kit.envelope import Event
from motcua_kit.service import ServiceContext
from motcua_notify.adapters import db
from motcua_notify.adapters.messages import notify_event
from motcua_notify.adapters.receipts import Receipt, ReceiptRefused
from motcua_notify.adapters.wiring import RECEIPT_CHANNEL
from motcua_notify.domain.notification import (
    RECEIPT_WORDS,
    Change,
    Notification,
    SendResult,
    after_receipt_timeout,
    after_send,
    receipt_change,
)
from motcua_notify.domain.retry import RetryPolicy
from motcua_notify.domain.states import Channel, Published, State
from motcua_notify.metrics import MESSAGES, RETRIES

log = logging.getLogger(__name__)


class Outcomes:
    """Writes each notification's outcome, with its event and its metrics."""

    def __init__(
        self,
        context: ServiceContext,
        repository: db.NotificationRepository,
        clock: Clock,
        rng: random.Random,
        policy: RetryPolicy,
        publish_events: Callable[[Session, Sequence[Event]], None],
    ) -> None:
        """``publish_events``: the service's :meth:`~motcua_kit.service.Service.publish_events`
        (each event on its type's topic, keeping the trace of the notification's cause)."""
        self.context = context
        self.repository = repository
        self.clock = clock
        self.rng = rng
        self.policy = policy
        self.publish_events = publish_events

    def publish(
        self, session: Session, n: Notification, kind: Published, at: datetime, reason: str
    ) -> None:
        """Put ``n``'s notify event ``kind`` in the outbox, in ``session``'s transaction."""
        self.publish_events(session, [notify_event(n, kind, at, reason)])

    def settle(self, sent: Notification, result: SendResult) -> None:
        """Write what the provider answered to a send (a sender's call)."""
        now = self.clock()
        with transaction(self.context.sessions) as session:
            current = self.repository.get(session, sent.id)
            if (
                current is None
                or current.state is not State.SENDING
                or current.reference != sent.reference
            ):
                # A receipt overtook the answer, or another sender retook it: the row says more
                # than this late answer does.
                if current is not None:
                    self.repository.add_history(
                        session,
                        current.id,
                        current.state,
                        now,
                        sent.attempts,
                        result.provider,
                        f"late answer ignored: {result.verdict.value} ({result.detail})",
                    )
                return
            change = after_send(current, result, self.policy, now, self.rng)
            self.apply(session, current, change, now, result.provider, result.provider_ref)

    def apply(
        self,
        session: Session,
        current: Notification,
        change: Change,
        now: datetime,
        provider: str,
        provider_ref: str,
    ) -> None:
        """Write ``change`` to ``current`` unless another writer changed it first."""
        written = self.repository.record(
            session,
            current,
            state=change.state,
            now=now,
            detail=change.detail,
            provider=provider or current.provider,
            provider_ref=provider_ref or current.provider_ref,
            next_attempt_at=change.next_attempt_at,
            expect_reference=current.reference,
        )
        if not written:
            return
        after = replace(
            current,
            state=change.state,
            provider=provider or current.provider,
            provider_ref=provider_ref or current.provider_ref,
            updated_at=now,
            next_attempt_at=change.next_attempt_at,
        )
        for kind in change.publish:
            self.publish(session, after, kind, now, change.detail)
        channel = current.channel.value

        def count() -> None:
            if change.retry_delay is not None:
                RETRIES.labels(channel).inc()
            if change.state is not State.SENDING:
                MESSAGES.labels(channel, change.state.value).inc()
            elif Published.SENT in change.publish:
                MESSAGES.labels(channel, "sent").inc()

        on_commit(session, count)
        if change.state in (State.PERMANENT_FAILURE, State.TECHNICAL_FAILURE):
            log.warning(
                "notification %s failed: %s",
                current.id,
                change.detail,
                extra={"dossier_code": current.dossier_code, "channel": channel},
            )

    def fail_technically(self, session: Session, n: Notification, now: datetime, why: str) -> None:
        if self.repository.record(session, n, state=State.TECHNICAL_FAILURE, now=now, detail=why):
            failed = replace(n, state=State.TECHNICAL_FAILURE)
            self.publish(session, failed, Published.FAILED, now, why)
            channel = n.channel.value
            on_commit(
                session, lambda: MESSAGES.labels(channel, State.TECHNICAL_FAILURE.value).inc()
            )

    def fail_unconfigured(self, configured: Container[Channel], most: int) -> int:
        """Due messages of a channel no longer configured fail technically; returns how many."""
        unconfigured = [c for c in Channel if c not in configured]
        if not unconfigured:
            return 0
        now = self.clock()
        with transaction(self.context.sessions) as session:
            orphans = self.repository.due(session, now, most, unconfigured)
            for orphan in orphans:
                self.fail_technically(
                    session, orphan, now, f"channel {orphan.channel.value} is not configured"
                )
        return len(orphans)

    def time_out_receipts(self, hours: float) -> int:
        """Give up messages whose delivery receipt never came; returns how many."""
        now = self.clock()
        done = 0
        for _ in range(100):  # bounded: a row another replica just changed is not retaken
            with transaction(self.context.sessions) as session:
                stale = self.repository.awaiting_receipt(session, now - timedelta(hours=hours), 500)
                for current in stale:
                    change = after_receipt_timeout(current, hours)
                    if change is not None:
                        self.apply(session, current, change, now, "", "")
            done += len(stale)
            if len(stale) < 500:
                break
        return done

    def apply_receipt(self, receipt: Receipt) -> str:
        """Apply one provider's delivery receipt; "applied" or "ignored" (late, repeated)."""
        status = RECEIPT_WORDS.get(receipt.status)
        if status is None:
            raise ReceiptRefused(400, f"unknown status {receipt.status!r}")
        now = self.clock()
        with transaction(self.context.sessions) as session:
            current = None
            if receipt.reference:
                current = self.repository.get(session, receipt.reference.rpartition(".")[0])
            if current is None and receipt.provider_ref:
                current = self.repository.by_provider_ref(
                    session, receipt.provider, receipt.provider_ref
                )
            if current is None or current.channel is not RECEIPT_CHANNEL.get(receipt.provider):
                raise ReceiptRefused(404, "no such message from this provider")
            note = f"receipt from {receipt.provider}: {receipt.status}"
            if receipt.detail:
                note += f" ({receipt.detail})"
            change = receipt_change(
                current,
                provider=receipt.provider,
                reference=receipt.reference,
                status=status,
                detail=note,
                policy=self.policy,
                now=now,
                rng=self.rng,
            )
            if change is None:
                self.repository.add_history(
                    session,
                    current.id,
                    current.state,
                    now,
                    current.attempts,
                    receipt.provider,
                    f"ignored {note}",
                )
                return "ignored"
            self.apply(session, current, change, now, receipt.provider, receipt.provider_ref)
        return "applied"
