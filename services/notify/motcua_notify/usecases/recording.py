"""Recording: each consumed dossier or payment event becomes intents, one per (event, channel,
recipient), written in the consumer's transaction. What to send to whom is
:func:`motcua_notify.domain.notification.plan`'s; this module reads the events and the opt-outs
and writes the intents, with one statement each for a whole batch (ADR 0012).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from motcua.payment.v1 import payment_pb2
from motcua_kit.clock import Clock, aware
from motcua_kit.consumer import PermanentError
from motcua_kit.db import on_commit
from motcua_kit.envelope import Event
from motcua_kit.tracing import current_traceparent
from motcua_notify import events
from motcua_notify.adapters import db
from motcua_notify.adapters.messages import (
    PAYMENT_MESSAGES,
    document_of,
    dossier_extra,
    dossier_of,
    payment_extra,
    payment_of,
    payment_snapshot,
    snapshot_of,
)
from motcua_notify.domain.documents import DocumentNotice, DocumentNotices
from motcua_notify.domain.notification import Intent, Occurrence, addresses_citizen, plan
from motcua_notify.domain.occurrence import DossierSnapshot
from motcua_notify.domain.sms import Encoding
from motcua_notify.domain.states import Channel, Published, State
from motcua_notify.domain.subscriptions import WebhookSubscription
from motcua_notify.domain.templates import TemplateCatalogue
from motcua_notify.metrics import DOCUMENTS, MESSAGES
from motcua_notify.usecases.outcomes import Outcomes

log = logging.getLogger(__name__)


class Recording:
    """Turns consumed events into recorded intents (the consumer's side of notify)."""

    def __init__(
        self,
        repository: db.NotificationRepository,
        outcomes: Outcomes,
        *,
        catalogue: TemplateCatalogue,
        subscriptions: list[WebhookSubscription],
        enabled: Collection[Channel],
        sms_encoding: Encoding,
        tz: ZoneInfo,
        clock: Clock,
        documents: DocumentNotices | None = None,
    ) -> None:
        """``documents``: how issued documents become notices; None when documents are not
        configured (their events are then recorded as skipped)."""
        self.repository = repository
        self.documents = documents
        self.outcomes = outcomes
        self.catalogue = catalogue
        self.subscriptions = subscriptions
        self.enabled = enabled
        self.sms_encoding = sms_encoding
        self.tz = tz
        self.clock = clock

    def on_events(
        self, records: Sequence[tuple[Event, Message | None]], session: Session
    ) -> list[str]:
        """Dossier and payment events, in order, with the effect of one call each (see
        :meth:`motcua_notify.service.NotifyService.on_events`)."""
        now = self.clock()
        occurrences: list[tuple[Occurrence, Mapping[str, str]]] = []
        latest: dict[str, DossierSnapshot] = {}  # of this call's dossier events
        payments: list[tuple[Event, payment_pb2.Payment]] = []
        for event, message in records:
            if event.type in PAYMENT_MESSAGES:
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
            if event.type in PAYMENT_MESSAGES:
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
            attachment = None
            if event.type == events.DOSSIER_DOCUMENT_ISSUED:
                assert message is not None
                notice = self.document_notice(session, event, message, snapshot)
                if notice is None:
                    continue  # skipped or not a notice of its own: the inbox keeps the event
                extra, attachment = notice.values, notice.attachment
            occurrence = snapshot.occurrence(
                event.id, event.type, aware(event.time), extra, attachment
            )
            occurrences.append((occurrence, trace_headers or current_traceparent()))
        # The last snapshot of each dossier: what one-by-one upserts would leave.
        self.repository.save_snapshots(session, latest.values(), now)
        return self.record_many(session, occurrences, now)

    def document_notice(
        self, session: Session, event: Event, message: Message, snapshot: DossierSnapshot
    ) -> DocumentNotice | None:
        """The notice a ``document_issued`` event calls for (docs/adr/0088); None when
        documents are not configured or its kind is not a notice of its own."""
        try:
            ref = document_of(message)
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        if ref.dossier_code != snapshot.dossier_code:
            raise PermanentError(
                f"{event.type} {event.id}: document {ref.id} is of dossier {ref.dossier_code}, "
                f"the event's dossier is {snapshot.dossier_code}"
            )
        notice = self.documents.notice(ref) if self.documents is not None else None
        if self.documents is None:
            outcome = "skipped"
        elif notice is None:
            outcome = "not_notified"
        else:
            outcome = "attached" if notice.attachment.get("attach") else "link_only"
        on_commit(session, DOCUMENTS.labels(ref.kind, outcome).inc)
        return notice

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
                sms_encoding=self.sms_encoding,
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
                self.outcomes.publish(session, failed, Published.FAILED, now, intent.detail)
                counts.append((intent.channel.value, State.TECHNICAL_FAILURE.value))
                log.error("notification %s: %s", intent.id, intent.detail)

        def count() -> None:
            for channel, outcome in counts:
                MESSAGES.labels(channel, outcome).inc()

        on_commit(session, count)
        return sorted(inserted)
