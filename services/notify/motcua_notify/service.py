"""The notify service: records who to tell (in the consumer's transaction), then sends.

Two halves, joined by the ``notifications`` table:

* **Recording** — each dossier or payment event becomes intents, one per (event, channel,
  recipient), inserted in the consumer's transaction with the inbox entry. The table's UNIQUE
  key makes a redelivered event a no-op even without the inbox.
* **Sending** — each configured channel has its own sender (:mod:`motcua_notify.sender`, run
  by its own timer ``send_<channel>``) with its own bounded workers: it claims only its
  channel's due rows (state sending, with a lease), sends them outside any transaction through
  the channel's adapter, and records each outcome with its notify event in the outbox as soon
  as it is known. A slow provider keeps its own channel's workers busy, never the others
  (ADR 0037). A sender that dies mid-send leaves rows whose lease runs out; they are sent
  again with the same idempotency reference, so providers that honour it send once.

Rate limits (token buckets per channel) and quiet hours (SMS) are applied when claiming;
retries follow :class:`~motcua_notify.domain.retry.RetryPolicy`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from opentelemetry import trace
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua.notify.v1 import events_pb2, notify_pb2, notify_pb2_grpc
from motcua.payment.v1 import payment_pb2
from motcua_kit.auth import Principal
from motcua_kit.consumer import PermanentError
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument, NotFound, PermissionDenied
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.proto import timestamp
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler, timer
from motcua_kit.text import citizen_id as valid_citizen_id
from motcua_kit.text import is_ascii_number
from motcua_kit.tracing import context_from_headers, current_traceparent
from motcua_notify import events
from motcua_notify.adapters import db
from motcua_notify.adapters.channels.base import ChannelAdapter
from motcua_notify.adapters.channels.email import SmtpEmail
from motcua_notify.adapters.channels.sms import FailoverSms, HttpSmsProvider, SmsProvider
from motcua_notify.adapters.channels.webhook import SignedWebhooks
from motcua_notify.adapters.channels.zalo import ZaloApi
from motcua_notify.adapters.grpc_api import NotifyApi, summary_of
from motcua_notify.adapters.inbound import (
    dossier_extra,
    dossier_of,
    event_time,
    payment_extra,
    payment_message_types,
    payment_of,
    payment_snapshot,
    snapshot_of,
)
from motcua_notify.adapters.receipts import Receipt, ReceiptRefused, ReceiptServer
from motcua_notify.domain.notification import (
    RECEIPT_WORDS,
    Change,
    HistoryEntry,
    Intent,
    Notification,
    Occurrence,
    Published,
    SendResult,
    Verdict,
    addresses_citizen,
    after_receipt,
    after_receipt_timeout,
    after_send,
    plan,
)
from motcua_notify.domain.occurrence import PROVIDED_VARIABLES, DossierSnapshot
from motcua_notify.domain.pacing import QuietHours, TokenBucket
from motcua_notify.domain.states import Channel, State
from motcua_notify.domain.subscriptions import (
    SubscriptionError,
    WebhookSubscription,
    load_subscriptions,
)
from motcua_notify.domain.templates import TemplateCatalogue, TemplateCatalogueError
from motcua_notify.metrics import HELD, MESSAGES, QUEUE_AGE, QUEUE_WAIT, RETRIES
from motcua_notify.sender import ChannelSender
from motcua_notify.settings import NotifySettings

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer("motcua.notify.sender")

Clock = Callable[[], datetime]
MAX_PAGE = 100
DEFAULT_PAGE = 50
# Which receipt endpoint may speak for which channel.
_RECEIPT_CHANNEL = {"sms-a": Channel.SMS, "sms-b": Channel.SMS, "zalo": Channel.ZALO}


def system_clock() -> datetime:
    return datetime.now(UTC)


def _settings(ctx: ServiceContext) -> NotifySettings:
    assert isinstance(ctx.settings, NotifySettings)
    return ctx.settings


def _catalogue(ctx: ServiceContext) -> TemplateCatalogue:
    s = _settings(ctx)
    try:
        return TemplateCatalogue.load(
            s.templates_file,
            segment_limit=s.sms_segment_limit,
            encoding=s.sms_encoding,
            provided=PROVIDED_VARIABLES,
        )
    except TemplateCatalogueError as exc:
        log.critical("notice templates refused: %s", exc)  # one line, before any traceback
        raise


def _subscriptions(ctx: ServiceContext) -> list[WebhookSubscription]:
    try:
        return load_subscriptions(
            _settings(ctx).webhook_subscriptions_file, known_types=PROVIDED_VARIABLES
        )
    except SubscriptionError as exc:
        log.critical("webhook subscriptions refused: %s", exc)
        raise


def build_channels(
    s: NotifySettings, subscriptions: list[WebhookSubscription]
) -> dict[Channel, ChannelAdapter]:
    """The configured channels' adapters (an unconfigured channel is absent)."""
    out: dict[Channel, ChannelAdapter] = {}
    if s.smtp_host:
        out[Channel.EMAIL] = SmtpEmail(
            s.smtp_host,
            s.smtp_port,
            s.smtp_sender,
            s.smtp_sender_name,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value(),
            starttls=s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
        )
    providers = [
        HttpSmsProvider(
            SmsProvider(name, url, key.get_secret_value()), s.sms_sender_id, s.sms_timeout_seconds
        )
        for name, url, key in (
            ("sms-a", s.sms_provider_a_url, s.sms_provider_a_api_key),
            ("sms-b", s.sms_provider_b_url, s.sms_provider_b_api_key),
        )
        if url
    ]
    if providers:
        out[Channel.SMS] = FailoverSms(providers, s.sms_failover_cooldown_seconds)
    if s.zalo_api_url:
        out[Channel.ZALO] = ZaloApi(
            s.zalo_api_url, s.zalo_access_token.get_secret_value(), s.zalo_timeout_seconds
        )
    if s.webhook_subscriptions_file is not None:
        out[Channel.WEBHOOK] = SignedWebhooks(subscriptions, s.webhook_timeout_seconds)
    return out


def _channels(ctx: ServiceContext) -> dict[Channel, ChannelAdapter]:
    return build_channels(_settings(ctx), _subscriptions(ctx))


def _after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the transaction commits (metrics must not count rolled-back work)."""
    sa_event.listen(session, "after_commit", lambda _s: fn(), once=True)


def _handles(
    topic: str, types: Mapping[str, type[Message]]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        for event_type, message in types.items():
            fn = event_handler(topic, event_type, message, batch="on_events")(fn)
        return fn

    return mark


_DOSSIER_MESSAGES: dict[str, type[Message]] = {
    events.DOSSIER_SUBMITTED: dossier_events.DossierSubmitted,
    events.DOSSIER_OVERDUE: dossier_events.DossierDeadline,
    **dict.fromkeys(events.DOSSIER_STATUS_CHANGES, dossier_events.DossierStatusChanged),
}
_PAYMENT_MESSAGES = payment_message_types()

_PUBLISHED = {
    Published.SENT: (events.SENT, events_pb2.NotificationSent, "sent_at"),
    Published.DELIVERED: (events.DELIVERED, events_pb2.NotificationDelivered, "delivered_at"),
    Published.FAILED: (events.FAILED, events_pb2.NotificationFailed, "failed_at"),
}


class NotifyService(Service):
    """Tells citizens and subscribing systems what happened to their dossiers (thông báo)."""

    name = "notify"
    settings_class = NotifySettings
    metadata = db.metadata
    outbox_table = db.outbox
    inbox_table = db.inbox
    migrations = "motcua_notify:migrations"
    publishes: ClassVar[tuple[str, ...]] = (events.TOPIC,)

    context: Dependency[ServiceContext] = Dependency(lambda ctx: ctx)
    catalogue: Dependency[TemplateCatalogue] = Dependency(_catalogue)
    subscriptions: Dependency[list[WebhookSubscription]] = Dependency(_subscriptions)
    channels: Dependency[dict[Channel, ChannelAdapter]] = Dependency(_channels)
    repository: Dependency[db.NotificationRepository] = Dependency(
        lambda ctx: db.NotificationRepository()
    )
    clock: Dependency[Clock] = Dependency(lambda ctx: system_clock)
    rng: Dependency[random.Random] = Dependency(lambda ctx: random.Random())

    def setup(self) -> None:
        s = self.settings
        self.tz = ZoneInfo(s.timezone)
        self.policy = s.retry_policy()
        self.quiet: QuietHours | None = s.quiet_window()
        self.enabled = frozenset(self.channels)
        now = self.clock().timestamp()
        self.buckets = {
            channel: TokenBucket(limit.per_second, limit.burst, now)
            for channel, limit in s.rate_limits.items()
        }
        # One sender per configured channel, each with its own workers (ADR 0037).
        self.senders = {
            channel: ChannelSender(
                channel,
                s.sender_workers(channel),
                claim=self._claim,
                send=self._send_one,
                settle=self._settle,
                release=self._release,
                stopping=lambda: self.stopping,
                poll_seconds=s.dispatch_interval_seconds,
            )
            for channel in self.channels
        }
        self._receipts: ReceiptServer | None = None
        self._last_gauges = 0.0
        sms = self.channels.get(Channel.SMS)
        if isinstance(sms, FailoverSms):
            sms.on_failover = self._fail_over

    @property
    def settings(self) -> NotifySettings:
        s = self.context.settings
        assert isinstance(s, NotifySettings)
        return s

    def timers(self) -> list[tuple[str, float | str, Callable[[], object]]]:
        """The class's timers, and one per configured channel running that channel's sender:
        each in its own thread, so one channel's slow sends never delay another's."""
        own: list[tuple[str, float | str, Callable[[], object]]] = [
            (f"send_{channel.value}", "dispatch_interval_seconds", sender.run)
            for channel, sender in self.senders.items()
        ]
        return [*super().timers(), *own]

    def grpc_services(self) -> list[tuple[str, Registration]]:
        api = NotifyApi(self)
        return [
            registration(
                notify_pb2,
                "NotifyService",
                notify_pb2_grpc.add_NotifyServiceServicer_to_server,
                api,
            )
        ]

    # -- recording (consumer side) -------------------------------------------------------------
    @_handles(events.DOSSIER_TOPIC, _DOSSIER_MESSAGES)
    def on_dossier_event(self, event: Event, message: Message, session: Session) -> None:
        """A dossier event: remember the dossier, record the notices it calls for."""
        self.on_events([(event, message)], session)

    @_handles(events.PAYMENT_TOPIC, _PAYMENT_MESSAGES)
    def on_payment_event(self, event: Event, message: Message, session: Session) -> None:
        """A payment event (fee requested with its pay link, fee received with its receipt)."""
        self.on_events([(event, message)], session)

    def on_events(
        self, records: Sequence[tuple[Event, Message | None]], session: Session
    ) -> list[str]:
        """Dossier and payment events, in order, with the effect of one call each: the
        dossiers' snapshots, the citizens' opt-outs and the new intents are read or written
        with one statement each (ADR 0012). A payment event sees the snapshot of a dossier
        event before it in the same call. Returns the ids of the intents that were new.

        Each intent carries its own event's trace: the first event's under this call's
        consumer span (parented by that event's producer), the others under their producer's
        span, which the consumer span links to.
        """
        now = self.clock()
        occurrences: list[tuple[Occurrence, Mapping[str, str]]] = []
        latest: dict[str, DossierSnapshot] = {}  # of this call's dossier events
        payments: list[tuple[Event, payment_pb2.Payment]] = []
        for event, message in records:
            if event.type in _PAYMENT_MESSAGES:
                try:
                    payments.append((event, payment_of(message)))
                except ValueError as exc:
                    raise PermanentError(str(exc)) from exc
        known = self.repository.snapshots(
            session, sorted({p.dossier_code or e.subject for e, p in payments} - {""})
        )
        facts = iter(payments)
        for i, (event, message) in enumerate(records):
            trace_headers = current_traceparent() if i == 0 else dict(event.trace_headers)
            if event.type in _PAYMENT_MESSAGES:
                _, payment = next(facts)
                code = payment.dossier_code or event.subject
                if not code:
                    raise PermanentError(f"{event.type} {event.id} names no dossier")
                base = latest.get(code) or known.get(code)
                snapshot = payment_snapshot(payment, base)
                extra = payment_extra(payment)
            else:
                if message is None:
                    raise PermanentError(f"{event.type} {event.id} has no payload")
                try:
                    snapshot = snapshot_of(dossier_of(message), self.tz)
                except ValueError as exc:
                    raise PermanentError(str(exc)) from exc
                if not snapshot.dossier_code:
                    raise PermanentError(f"{event.type} {event.id} names no dossier")
                latest[snapshot.dossier_code] = snapshot
                extra = dossier_extra(message)
            occurrence = snapshot.occurrence(event.id, event.type, event_time(event.time), extra)
            occurrences.append((occurrence, trace_headers or current_traceparent()))
        # The last snapshot of each dossier: what one-by-one upserts would leave.
        self.repository.save_snapshots(session, latest.values(), now)
        return self.record_many(session, occurrences, now)

    def record(self, session: Session, occurrence: Occurrence) -> list[str]:
        """Record the intents for one occurrence; returns the ids that were new."""
        return self.record_many(session, [(occurrence, current_traceparent())], self.clock())

    def record_many(
        self,
        session: Session,
        occurrences: Sequence[tuple[Occurrence, Mapping[str, str]]],
        now: datetime,
    ) -> list[str]:
        """Record the intents of many occurrences, each with its trace headers, in one insert;
        returns the ids that were new."""
        citizens = sorted(
            {
                o.contact.citizen_id
                for o, _h in occurrences
                if o.contact is not None
                and o.contact.citizen_id
                and addresses_citizen(o, self.catalogue, self.enabled)
            }
        )
        opted_out = self.repository.opted_out_many(session, citizens)
        intents: list[Intent] = []
        headers: dict[str, Mapping[str, str]] = {}
        counts: list[tuple[str, str]] = []
        for occurrence, trace_headers in occurrences:
            contact = occurrence.contact
            opted: Mapping[Channel, datetime] = {}
            if contact is not None and addresses_citizen(occurrence, self.catalogue, self.enabled):
                opted = opted_out.get(contact.citizen_id, {})
            the_plan = plan(
                occurrence,
                self.catalogue,
                enabled=self.enabled,
                opted_out=opted,
                subscriptions=self.subscriptions,
                sms_encoding=self.settings.sms_encoding,
            )
            intents += the_plan.intents
            headers.setdefault(occurrence.event_id, trace_headers)  # a repeat changes nothing
            counts += [(c.value, "opted_out") for c in the_plan.opted_out]
            counts += [(c.value, "no_address") for c in the_plan.no_address]
        inserted = set(self.repository.add_intents(session, intents, now, by_event=headers))
        for intent in intents:
            if intent.id not in inserted:
                continue
            counts.append((intent.channel.value, State.CREATED.value))
            if intent.state is State.TECHNICAL_FAILURE:
                created = self.repository.get(session, intent.id)
                assert created is not None
                self.repository.record(
                    session, created, state=State.TECHNICAL_FAILURE, now=now, detail=intent.detail
                )
                failed = replace(created, state=State.TECHNICAL_FAILURE)
                self._publish(session, failed, Published.FAILED, now, intent.detail)
                counts.append((intent.channel.value, State.TECHNICAL_FAILURE.value))
                log.error("notification %s: %s", intent.id, intent.detail)

        def count() -> None:
            for channel, outcome in counts:
                MESSAGES.labels(channel, outcome).inc()

        _after_commit(session, count)
        return sorted(inserted)

    # -- sending -------------------------------------------------------------------------------
    @timer("dispatch_interval_seconds")
    def _tick(self) -> None:
        """The senders' heartbeat: fails what no channel can send, refreshes the queue gauges.

        The sending itself is each channel's own timer (``send_<channel>``, see ``timers``).
        """
        now = time.monotonic()
        self.fail_unconfigured()
        if now - self._last_gauges >= 2.0:
            self._last_gauges = now
            self.update_queue_gauges()

    @timer("receipt_timeout_check_seconds")
    def time_out_receipts(self) -> int:
        """Give up messages whose delivery receipt never came; returns how many."""
        hours = self.settings.receipt_timeout_hours
        now = self.clock()
        done = 0
        for _ in range(100):  # bounded: a row another replica just changed is not retaken
            with transaction(self.context.sessions) as session:
                stale = self.repository.awaiting_receipt(session, now - timedelta(hours=hours), 500)
                for current in stale:
                    change = after_receipt_timeout(current, hours)
                    if change is not None:
                        self._apply(session, current, change, now, "", "")
            done += len(stale)
            if len(stale) < 500:
                break
        return done

    def dispatch(self) -> int:
        """Send what is due on every channel, each channel on its own sender and all channels at
        once; returns how many messages were claimed. Returns when nothing more is due and no
        send is in flight (tests and tools; a running service's channel timers do the same
        continuously)."""
        self.fail_unconfigured()
        senders = list(self.senders.values())
        if len(senders) <= 1:
            return sum(sender.run() for sender in senders)
        with ThreadPoolExecutor(len(senders), thread_name_prefix="notify-dispatch") as pool:
            return sum(pool.map(lambda sender: sender.run(), senders))

    def fail_unconfigured(self) -> int:
        """Due messages of a channel no longer configured fail technically; returns how many."""
        unconfigured = [c for c in Channel if c not in self.channels]
        if not unconfigured:
            return 0
        now = self.clock()
        with transaction(self.context.sessions) as session:
            orphans = self.repository.due(
                session, now, self.settings.dispatch_batch_size, unconfigured
            )
            for orphan in orphans:
                self._fail_technically(
                    session, orphan, now, f"channel {orphan.channel.value} is not configured"
                )
        return len(orphans)

    def _claim(self, channel: Channel, most: int) -> list[Notification]:
        """Take up to ``most`` of ``channel``'s due messages for sending (its sender's call)."""
        s = self.settings
        now = self.clock()
        lease_until = now + timedelta(seconds=s.send_lease_seconds)
        limit = min(most, s.dispatch_batch_size)
        with transaction(self.context.sessions) as session:
            return self._claim_channel(session, channel, now, lease_until, limit)

    def _release(self, unsent: list[Notification]) -> None:
        """Hand back claimed messages that were not sent (a stop came): due again at once."""
        with transaction(self.context.sessions) as session:
            for n in unsent:
                self.repository.release(session, n, self.clock())

    def _claim_channel(
        self, session: Session, channel: Channel, now: datetime, lease_until: datetime, most: int
    ) -> list[Notification]:
        s = self.settings
        if channel in self.settings.quiet_hours_channels and self.quiet is not None:
            until = self.quiet.hold_until(now)
            if until is not None:
                held = self.repository.due(session, now, s.dispatch_batch_size, [channel])
                for n in held:
                    local = until.astimezone(self.tz).strftime("%H:%M")
                    self.repository.hold(
                        session, n, until, now, f"held for quiet hours until {local}"
                    )
                if held:
                    count = len(held)
                    label = HELD.labels(channel.value, "quiet_hours")
                    _after_commit(session, lambda: label.inc(count))
                return []
        bucket = self.buckets.get(channel)
        limit = most
        if bucket is not None:
            limit = min(limit, int(bucket.available(now.timestamp())))
            if limit == 0:
                if self.repository.due(session, now, 1, [channel]):  # held, not just idle
                    limited = HELD.labels(channel.value, "rate_limit")
                    _after_commit(session, limited.inc)
                return []
        claimed = []
        for n in self.repository.due(session, now, limit, [channel]):
            if bucket is not None and not bucket.try_take(now.timestamp()):
                break
            adapter = self.channels[channel]
            provider = n.provider
            if n.state is State.SENDING:  # its sender died mid-send: same attempt, same ref
                attempts, reference = n.attempts, n.reference
                detail = f"resending attempt {attempts} (same reference): its sender stopped"
                if isinstance(adapter, FailoverSms):  # to where it went: that one knows the ref
                    provider = adapter.provider_for(n.provider)
            else:
                attempts = n.attempts + 1
                reference = n.attempt_reference(attempts)
                detail = f"attempt {attempts}"
                if isinstance(adapter, FailoverSms):
                    provider = adapter.provider_for()
                if attempts == 1:
                    wait = max((now - n.created_at).total_seconds(), 0.0)
                    _after_commit(session, partial(QUEUE_WAIT.labels(channel.value).observe, wait))
            self.repository.claim(
                session,
                n,
                attempts=attempts,
                reference=reference,
                lease_until=lease_until,
                now=now,
                detail=detail,
                provider=provider,
            )
            claimed.append(
                replace(
                    n,
                    state=State.SENDING,
                    attempts=attempts,
                    reference=reference,
                    provider=provider,
                )
            )
        return claimed

    def _fail_over(self, notification: Notification, reference: str, provider: str) -> None:
        """Write down where this attempt goes next before it goes (see ``FailoverSms``)."""
        now = self.clock()
        with transaction(self.context.sessions) as session:
            self.repository.switch_provider(
                session, notification, reference, provider, now, f"failing over to {provider}"
            )

    def _send_one(self, notification: Notification) -> SendResult:
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

    def _settle(self, sent: Notification, result: SendResult) -> None:
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
            self._apply(session, current, change, now, result.provider, result.provider_ref)

    def _apply(
        self,
        session: Session,
        current: Notification,
        change: Change,
        now: datetime,
        provider: str,
        provider_ref: str,
    ) -> None:
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
            self._publish(session, after, kind, now, change.detail)
        channel = current.channel.value

        def count() -> None:
            if change.retry_delay is not None:
                RETRIES.labels(channel).inc()
            if change.state is not State.SENDING:
                MESSAGES.labels(channel, change.state.value).inc()
            elif Published.SENT in change.publish:
                MESSAGES.labels(channel, "sent").inc()

        _after_commit(session, count)
        if change.state in (State.PERMANENT_FAILURE, State.TECHNICAL_FAILURE):
            log.warning(
                "notification %s failed: %s",
                current.id,
                change.detail,
                extra={"dossier_code": current.dossier_code, "channel": channel},
            )

    def _fail_technically(self, session: Session, n: Notification, now: datetime, why: str) -> None:
        if self.repository.record(session, n, state=State.TECHNICAL_FAILURE, now=now, detail=why):
            failed = replace(n, state=State.TECHNICAL_FAILURE)
            self._publish(session, failed, Published.FAILED, now, why)
            channel = n.channel.value
            _after_commit(
                session, lambda: MESSAGES.labels(channel, State.TECHNICAL_FAILURE.value).inc()
            )

    def _publish(
        self, session: Session, n: Notification, kind: Published, at: datetime, reason: str
    ) -> None:
        event_type, message_cls, time_field = _PUBLISHED[kind]
        fields: dict[str, Any] = {"notification": summary_of(n), time_field: timestamp(at)}
        if kind is Published.FAILED:
            fields["reason"] = reason[:500]
        outbox = self.context.outbox
        assert outbox is not None
        outbox.add(
            session,
            events.TOPIC,
            Event.new(
                source=events.SOURCE,
                type=event_type,
                subject=n.dossier_code,
                message=message_cls(**fields),
                time=at,
                trace_headers=n.trace_headers,
            ),
        )

    def update_queue_gauges(self) -> None:
        now = self.clock()
        with self.context.sessions() as session:
            oldest = self.repository.oldest_due(session, now)
        for channel in Channel:
            at = oldest.get(channel)
            QUEUE_AGE.labels(channel.value).set(max((now - at).total_seconds(), 0) if at else 0)

    # -- delivery receipts ---------------------------------------------------------------------
    def receipt_secrets(self) -> dict[str, str]:
        s = self.settings
        secrets = {}
        if s.sms_provider_a_url:
            secrets["sms-a"] = s.sms_provider_a_api_key.get_secret_value()
        if s.sms_provider_b_url:
            secrets["sms-b"] = s.sms_provider_b_api_key.get_secret_value()
        if s.zalo_api_url:
            secrets["zalo"] = s.zalo_access_token.get_secret_value()
        return {k: v for k, v in secrets.items() if v}

    def on_start(self) -> None:
        """Open the delivery-receipts endpoint before anything is sent."""
        self.start_receipts()

    def on_stop(self) -> None:
        self.close()

    def start_receipts(self) -> ReceiptServer:
        if self._receipts is None:
            s = self.settings
            server = ReceiptServer(
                s.bind_host, s.receipts_port, self.receipt_secrets(), self.apply_receipt
            )
            server.start()
            self._receipts = server
            log.info("delivery receipts endpoint started", extra={"receipts_port": server.port})
        return self._receipts

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
            if current is None or current.channel is not _RECEIPT_CHANNEL.get(receipt.provider):
                raise ReceiptRefused(404, "no such message from this provider")
            note = f"receipt from {receipt.provider}: {receipt.status}"
            if receipt.detail:
                note += f" ({receipt.detail})"
            other_provider = current.provider and current.provider != receipt.provider
            stale = bool(receipt.reference) and receipt.reference != current.reference
            change = None
            if not other_provider and not (stale and status.value != State.DELIVERED.value):
                change = after_receipt(current, status, note, self.policy, now, self.rng)
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
            self._apply(session, current, change, now, receipt.provider, receipt.provider_ref)
        return "applied"

    # -- queries and opt-outs (gRPC) -------------------------------------------------------------
    def list_notifications(
        self, principal: Principal, dossier_code: str, page_size: int, page_token: str
    ) -> tuple[list[Notification], str]:
        code = dossier_code.strip()
        if not code:
            raise InvalidArgument("dossier_code", "is required")
        if page_size < 0 or page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
        size = page_size or DEFAULT_PAGE
        after = 0
        if page_token:
            if not is_ascii_number(page_token):
                raise InvalidArgument("page_token", "is not a token this API returned")
            after = int(page_token)
        admin = principal.has_any("admin", "service")
        with self.context.sessions() as session:
            rows = self.repository.list_by_dossier(
                session,
                code,
                after,
                size + 1,
                agency_code=principal.agency_code if "officer" in principal.roles else None,
                citizen_id=principal.citizen_id if "citizen" in principal.roles else None,
                everything=admin,
            )
        more = len(rows) > size
        rows = rows[:size]
        return [n for _, n in rows], (str(rows[-1][0]) if more else "")

    def get_notification(
        self, principal: Principal, notification_id: str
    ) -> tuple[Notification, list[HistoryEntry]]:
        nid = notification_id.strip()
        if not nid:
            raise InvalidArgument("id", "is required")
        with self.context.sessions() as session:
            n = self.repository.get(session, nid)
            if n is None or not self._may_see(principal, n):
                raise NotFound(f"notification {nid} not found")
            return n, self.repository.history(session, nid)

    def set_opt_out(
        self, principal: Principal, citizen_id: str, channel: Channel, opted_out: bool
    ) -> dict[Channel, datetime]:
        cid = self._opt_out_subject(principal, citizen_id)
        if not channel.addresses_citizens:
            raise InvalidArgument("channel", "webhooks are not addressed to citizens")
        with transaction(self.context.sessions) as session:
            self.repository.set_opt_out(session, cid, channel, opted_out, self.clock())
            return self.repository.opted_out(session, cid)

    def list_opt_outs(self, principal: Principal, citizen_id: str) -> dict[Channel, datetime]:
        cid = self._opt_out_subject(principal, citizen_id)
        with self.context.sessions() as session:
            return self.repository.opted_out(session, cid)

    @staticmethod
    def _opt_out_subject(principal: Principal, citizen_id: str) -> str:
        cid = valid_citizen_id("citizen_id", citizen_id)
        if principal.has_any("admin", "service"):
            return cid
        if "citizen" in principal.roles and principal.citizen_id == cid:
            return cid
        raise PermissionDenied("a citizen may set only their own opt-outs")

    @staticmethod
    def _may_see(principal: Principal, n: Notification) -> bool:
        if principal.has_any("admin", "service"):
            return True
        if "officer" in principal.roles and principal.agency_code == n.agency_code:
            return True
        return (
            "citizen" in principal.roles
            and bool(n.citizen_id)
            and (principal.citizen_id == n.citizen_id)
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the receipts endpoint and the channels' workers, close provider clients."""
        if self._receipts is not None:
            self._receipts.stop()
            self._receipts = None
        for sender in self.senders.values():
            sender.close()
        for adapter in self.channels.values():
            adapter.close()
