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

This module wires and delegates: use cases in ``usecases/``, decisions in ``domain/`` (plan,
claim, access), protobuf in ``adapters/messages.py``, construction in ``adapters/wiring.py``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from motcua.notify.v1 import notify_pb2, notify_pb2_grpc
from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument, NotFound
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler, timer
from motcua_kit.tracing import current_traceparent
from motcua_notify import events
from motcua_notify.adapters import db, wiring
from motcua_notify.adapters.channels.base import ChannelAdapter
from motcua_notify.adapters.grpc_api import NotifyApi
from motcua_notify.adapters.messages import DOSSIER_MESSAGES, PAYMENT_MESSAGES
from motcua_notify.adapters.receipts import Receipt, ReceiptServer
from motcua_notify.domain.access import list_scope, may_see, opt_out_subject, page_of
from motcua_notify.domain.notification import HistoryEntry, Notification, Occurrence
from motcua_notify.domain.states import Channel
from motcua_notify.domain.subscriptions import WebhookSubscription
from motcua_notify.domain.templates import TemplateCatalogue
from motcua_notify.sender import ChannelSender
from motcua_notify.settings import NotifySettings
from motcua_notify.usecases.outcomes import Outcomes
from motcua_notify.usecases.recording import Recording
from motcua_notify.usecases.sending import Sending

log = logging.getLogger(__name__)


def _channels(ctx: ServiceContext[NotifySettings]) -> dict[Channel, ChannelAdapter]:
    s = ctx.settings
    return wiring.build_channels(s, wiring.subscriptions(s))


def _handles(
    topic: str, types: Mapping[str, type[Message]]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        for event_type, message in types.items():
            fn = event_handler(topic, event_type, message, batch="on_events")(fn)
        return fn

    return mark


class NotifyService(Service[NotifySettings]):
    """Tells citizens and subscribing systems what happened to their dossiers (thông báo)."""

    name = "notify"
    metadata = db.metadata
    outbox_table = db.outbox
    inbox_table = db.inbox
    migrations = "motcua_notify:migrations"
    publishes = (events.TOPIC,)

    catalogue: Dependency[TemplateCatalogue] = Dependency(
        lambda ctx: wiring.catalogue(ctx.settings)
    )
    subscriptions: Dependency[list[WebhookSubscription]] = Dependency(
        lambda ctx: wiring.subscriptions(ctx.settings)
    )
    channels: Dependency[dict[Channel, ChannelAdapter]] = Dependency(_channels)
    repository: Dependency[db.NotificationRepository] = Dependency(
        lambda ctx: db.NotificationRepository()
    )
    rng: Dependency[random.Random] = Dependency(lambda ctx: random.Random())

    def setup(self) -> None:
        s = self.settings
        self.tz = ZoneInfo(s.timezone)
        self.policy = s.retry_policy()
        self.enabled = frozenset(self.channels)
        pacing = wiring.pacing(s, self.clock().timestamp())
        repo = self.repository
        self.outcomes = Outcomes(
            self.context, repo, self.clock, self.rng, self.policy, self.publish_events
        )
        self.sending = Sending(
            self.context,
            repo,
            self.clock,
            self.channels,
            pacing,
            lease_seconds=s.send_lease_seconds,
            batch_size=s.dispatch_batch_size,
        )
        self.recording = Recording(
            repo,
            self.outcomes,
            catalogue=self.catalogue,
            subscriptions=self.subscriptions,
            enabled=self.enabled,
            sms_encoding=s.sms_encoding,
            tz=self.tz,
            clock=self.clock,
            documents=wiring.document_notices(s),
        )
        # One sender per configured channel, each with its own workers (ADR 0037).
        self.senders = {
            channel: ChannelSender(
                channel,
                s.sender_workers(channel),
                claim=self.sending.claim,
                send=self.sending.send,
                settle=self.outcomes.settle,
                release=self.sending.release,
                stopping=lambda: self.stopping,
                poll_seconds=s.dispatch_interval_seconds,
            )
            for channel in self.channels
        }
        self._receipts: ReceiptServer | None = None
        self._last_gauges = 0.0

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
    @_handles(events.DOSSIER_TOPIC, DOSSIER_MESSAGES)
    def on_dossier_event(self, event: Event, message: Message, session: Session) -> None:
        """A dossier event: remember the dossier, record the notices it calls for."""
        self.on_events([(event, message)], session)

    @_handles(events.PAYMENT_TOPIC, PAYMENT_MESSAGES)
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
        return self.recording.on_events(records, session)

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
        return self.recording.record_many(session, occurrences, now)

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
        return self.outcomes.time_out_receipts(self.settings.receipt_timeout_hours)

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
        return self.outcomes.fail_unconfigured(self.channels, self.settings.dispatch_batch_size)

    def update_queue_gauges(self) -> None:
        self.sending.update_queue_gauges()

    # -- delivery receipts ---------------------------------------------------------------------
    def receipt_secrets(self) -> dict[str, str]:
        return wiring.receipt_secrets(self.settings)

    def on_start(self) -> None:
        """Open the delivery-receipts endpoint before anything is sent."""
        self.start_receipts()

    def on_stop(self) -> None:
        self.close()

    def start_receipts(self) -> ReceiptServer:
        if self._receipts is None:
            s = self.settings
            server = ReceiptServer(
                s.bind_host,
                s.receipts_port,
                self.receipt_secrets(),
                self.apply_receipt,
                s.public_http_options(),
            )
            server.start()
            self._receipts = server
            log.info("delivery receipts endpoint started", extra={"receipts_port": server.port})
        return self._receipts

    def apply_receipt(self, receipt: Receipt) -> str:
        """Apply one provider's delivery receipt; "applied" or "ignored" (late, repeated)."""
        return self.outcomes.apply_receipt(receipt)

    # -- queries and opt-outs (gRPC) -------------------------------------------------------------
    def list_notifications(
        self, principal: Principal, dossier_code: str, page_size: int, page_token: str
    ) -> tuple[list[Notification], str]:
        code = dossier_code.strip()
        if not code:
            raise InvalidArgument("dossier_code", "is required")
        size, after = page_of(page_size, page_token)
        scope = list_scope(principal)
        with self.context.sessions() as session:
            rows = self.repository.list_by_dossier(
                session,
                code,
                after,
                size + 1,
                agency_code=scope.agency_code,
                citizen_id=scope.citizen_id,
                everything=scope.everything,
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
            if n is None or not may_see(principal, n):
                raise NotFound(f"notification {nid} not found")
            return n, self.repository.history(session, nid)

    def set_opt_out(
        self, principal: Principal, citizen_id: str, channel: Channel, opted_out: bool
    ) -> dict[Channel, datetime]:
        cid = opt_out_subject(principal, citizen_id)
        if not channel.addresses_citizens:
            raise InvalidArgument("channel", "webhooks are not addressed to citizens")
        with transaction(self.context.sessions) as session:
            self.repository.set_opt_out(session, cid, channel, opted_out, self.clock())
            return self.repository.opted_out(session, cid)

    def list_opt_outs(self, principal: Principal, citizen_id: str) -> dict[Channel, datetime]:
        cid = opt_out_subject(principal, citizen_id)
        with self.context.sessions() as session:
            return self.repository.opted_out(session, cid)

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
