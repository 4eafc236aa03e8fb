"""Protobuf at notify's edges, both ways: what a consumed dossier or payment event tells notify,
the notify events it publishes, and the gRPC API's messages. No rules live here."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.message import Message

from motcua.dossier.v1 import dossier_pb2
from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua.notify.v1 import events_pb2, notify_pb2
from motcua.payment.v1 import events_pb2 as payment_events
from motcua.payment.v1 import payment_pb2
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument
from motcua_kit.proto import timestamp
from motcua_notify import events
from motcua_notify.domain.documents import (
    APOLOGY,
    CONTROL_SHEET,
    RECEIPT,
    REFUSAL,
    RESULT,
    SUPPLEMENT_REQUEST,
    DocumentRef,
)
from motcua_notify.domain.notification import (
    Contact,
    HistoryEntry,
    Notification,
    format_date,
    format_vnd,
)
from motcua_notify.domain.occurrence import DossierSnapshot
from motcua_notify.domain.states import Channel, Published, State


# -- consumed events -> domain ------------------------------------------------------------------
def snapshot_of(dossier: dossier_pb2.Dossier, tz: ZoneInfo) -> DossierSnapshot:
    """The snapshot a dossier event carries (every dossier event carries the dossier)."""
    a = dossier.applicant
    submitted = ""
    if dossier.HasField("submitted_at"):
        submitted = dossier.submitted_at.ToDatetime(UTC).astimezone(tz).date().isoformat()
    return DossierSnapshot(
        dossier_code=dossier.code,
        agency_code=dossier.agency_code,
        procedure_code=dossier.procedure_code,
        status=int(dossier.status),
        appointment_date=dossier.appointment_date,
        submitted_date=submitted,
        contact=Contact(a.citizen_id, a.full_name, a.phone, a.email),
        procedure_name=dossier.procedure_name,
    )


def dossier_extra(message: Message) -> dict[str, str]:
    """Template values beyond the snapshot's, by payload type."""
    if isinstance(message, dossier_events.DossierStatusChanged):
        return {"comment": message.comment}
    if isinstance(message, dossier_events.DossierDeadline):
        return {
            "due_date": format_date(message.due_date),
            "new_appointment_date": format_date(message.new_appointment_date),
            "days_late": str(message.working_days),
        }
    return {}


def dossier_of(message: Message) -> dossier_pb2.Dossier:
    dossier = getattr(message, "dossier", None)
    if not isinstance(dossier, dossier_pb2.Dossier):
        raise ValueError(f"{type(message).__name__} carries no dossier")
    return dossier


_SHA256 = re.compile(r"[0-9a-f]{64}")
DOCUMENT_KINDS = {
    dossier_pb2.DOCUMENT_KIND_RECEIPT: RECEIPT,
    dossier_pb2.DOCUMENT_KIND_SUPPLEMENT_REQUEST: SUPPLEMENT_REQUEST,
    dossier_pb2.DOCUMENT_KIND_REFUSAL: REFUSAL,
    dossier_pb2.DOCUMENT_KIND_APOLOGY: APOLOGY,
    dossier_pb2.DOCUMENT_KIND_CONTROL_SHEET: CONTROL_SHEET,
    dossier_pb2.DOCUMENT_KIND_RESULT: RESULT,
}


def document_of(message: Message) -> DocumentRef:
    """The issued document a ``document_issued`` event names (its dossier's code when the
    document leaves it out)."""
    if not isinstance(message, dossier_events.DocumentIssued):
        raise ValueError(f"{type(message).__name__} is not a DocumentIssued")
    d = message.document
    if not d.id:
        raise ValueError("DocumentIssued carries no document id")
    if not _SHA256.fullmatch(d.sha256.lower()):
        raise ValueError(f"DocumentIssued {d.id}: sha256 is not 64 hex digits")
    if d.size_bytes <= 0:
        raise ValueError(f"DocumentIssued {d.id}: size_bytes must be positive")
    return DocumentRef(
        id=d.id,
        dossier_code=d.dossier_code or message.dossier.code,
        kind=DOCUMENT_KINDS.get(d.kind, "unspecified"),  # type: ignore[call-overload,unused-ignore]
        filename=d.filename,
        media_type=d.media_type,
        size_bytes=int(d.size_bytes),
        sha256=d.sha256.lower(),
    )


def payment_of(message: Message | None) -> payment_pb2.Payment:
    if not isinstance(message, payment_events.PaymentEvent):
        raise ValueError(f"{type(message).__name__} is not a PaymentEvent")
    return message.payment


def payment_snapshot(
    payment: payment_pb2.Payment, known: DossierSnapshot | None
) -> DossierSnapshot:
    """Whom a payment event is for: its payer, completed by what the dossier events said.

    The payer is the dossier's applicant as the payment service recorded them; a field it
    lacks comes from the dossier snapshot (which also brings the appointment date).
    """
    base = known or DossierSnapshot(
        dossier_code=payment.dossier_code,
        agency_code=payment.agency_code,
        procedure_code="",
        status=0,
        appointment_date="",
        submitted_date="",
        contact=Contact("", "", "", ""),
    )
    payer, old = payment.payer, base.contact
    contact = Contact(
        citizen_id=payer.citizen_id or old.citizen_id,
        full_name=payer.full_name or old.full_name,
        phone=payer.phone or old.phone,
        email=payer.email or old.email,
    )
    return replace(
        base,
        dossier_code=payment.dossier_code or base.dossier_code,
        agency_code=payment.agency_code or base.agency_code,
        contact=contact,
    )


def payment_extra(payment: payment_pb2.Payment) -> dict[str, str]:
    """Amount (VND, 1.250.000), pay link and receipt number, as far as the payment has them."""
    out = {"amount": format_vnd(payment.amount_vnd)}
    # The short pay link (fits an SMS); the gateway's own URL only from a payment service
    # that does not issue one yet. Links are never cut (templates.yaml: link: true).
    if payment.pay_url or payment.redirect_url:
        out["payment_link"] = payment.pay_url or payment.redirect_url
    if payment.HasField("receipt") and payment.receipt.number:
        out["receipt_number"] = payment.receipt.number
    return out


# The events notify takes, and their payload class.
DOSSIER_MESSAGES: dict[str, type[Message]] = {
    events.DOSSIER_SUBMITTED: dossier_events.DossierSubmitted,
    events.DOSSIER_OVERDUE: dossier_events.DossierDeadline,
    **dict.fromkeys(events.DOSSIER_STATUS_CHANGES, dossier_events.DossierStatusChanged),
    events.DOSSIER_DOCUMENT_ISSUED: dossier_events.DocumentIssued,
}
PAYMENT_MESSAGES: dict[str, type[Message]] = {
    events.PAYMENT_REQUESTED: payment_events.PaymentEvent,
    events.PAYMENT_SUCCEEDED: payment_events.PaymentEvent,
}


# -- published events -------------------------------------------------------------------------
_PUBLISHED = {
    Published.SENT: (events.SENT, events_pb2.NotificationSent, "sent_at"),
    Published.DELIVERED: (events.DELIVERED, events_pb2.NotificationDelivered, "delivered_at"),
    Published.FAILED: (events.FAILED, events_pb2.NotificationFailed, "failed_at"),
}


def notify_event(n: Notification, kind: Published, at: datetime, reason: str) -> Event:
    """The notify event ``kind`` of ``n`` at ``at`` (a failure's reason cut to 500 characters),
    on the trace of the event that caused the notification."""
    event_type, message_cls, time_field = _PUBLISHED[kind]
    fields: dict[str, Any] = {"notification": summary_of(n), time_field: timestamp(at)}
    if kind is Published.FAILED:
        fields["reason"] = reason[:500]
    return Event.new(
        source=events.SOURCE,
        type=event_type,
        subject=n.dossier_code,
        message=message_cls(**fields),
        time=at,
        trace_headers=n.trace_headers,
    )


# -- gRPC messages ------------------------------------------------------------------------------
CHANNEL_TO_PROTO = {
    Channel.EMAIL: notify_pb2.CHANNEL_EMAIL,
    Channel.SMS: notify_pb2.CHANNEL_SMS,
    Channel.ZALO: notify_pb2.CHANNEL_ZALO,
    Channel.WEBHOOK: notify_pb2.CHANNEL_WEBHOOK,
}
CHANNEL_FROM_PROTO = {v: k for k, v in CHANNEL_TO_PROTO.items()}
STATE_TO_PROTO = {
    State.CREATED: notify_pb2.DELIVERY_STATUS_CREATED,
    State.SENDING: notify_pb2.DELIVERY_STATUS_SENDING,
    State.DELIVERED: notify_pb2.DELIVERY_STATUS_DELIVERED,
    State.TEMPORARY_FAILURE: notify_pb2.DELIVERY_STATUS_TEMPORARY_FAILURE,
    State.PERMANENT_FAILURE: notify_pb2.DELIVERY_STATUS_PERMANENT_FAILURE,
    State.TECHNICAL_FAILURE: notify_pb2.DELIVERY_STATUS_TECHNICAL_FAILURE,
}


def notification_to_proto(n: Notification) -> notify_pb2.Notification:
    msg = notify_pb2.Notification(
        id=n.id,
        dossier_code=n.dossier_code,
        agency_code=n.agency_code,
        source_event_id=n.event_id,
        source_event_type=n.event_type,
        template=n.template,
        channel=CHANNEL_TO_PROTO[n.channel],
        recipient=n.masked_recipient,
        status=STATE_TO_PROTO[n.state],
        attempts=n.attempts,
        provider=n.provider,
        provider_reference=n.provider_ref,
        subject=n.subject,
        body=n.body,
        sms_segments=n.sms_segments or 0,
        created_at=timestamp(n.created_at),
        updated_at=timestamp(n.updated_at),
    )
    if n.next_attempt_at is not None and n.state in (State.CREATED, State.TEMPORARY_FAILURE):
        msg.next_attempt_at.CopyFrom(timestamp(n.next_attempt_at))
    return msg


def summary_of(n: Notification) -> events_pb2.NotificationSummary:
    """What a notify event says of a notification: no full address, no message text."""
    return events_pb2.NotificationSummary(
        notification_id=n.id,
        dossier_code=n.dossier_code,
        agency_code=n.agency_code,
        source_event_id=n.event_id,
        source_event_type=n.event_type,
        template=n.template,
        channel=CHANNEL_TO_PROTO[n.channel],
        recipient=n.masked_recipient,
        status=STATE_TO_PROTO[n.state],
        attempts=n.attempts,
        provider=n.provider,
        provider_reference=n.provider_ref,
    )


def history_to_proto(h: HistoryEntry) -> notify_pb2.StatusChange:
    return notify_pb2.StatusChange(
        status=STATE_TO_PROTO[h.state],
        at=timestamp(h.at),
        attempt=h.attempt,
        provider=h.provider,
        detail=h.detail,
    )


def channel_from_proto(value: int) -> Channel:
    try:
        return CHANNEL_FROM_PROTO[value]  # type: ignore[index,unused-ignore]
    except KeyError:
        raise InvalidArgument(
            "channel", "must be CHANNEL_EMAIL, CHANNEL_SMS or CHANNEL_ZALO"
        ) from None


def opt_outs_to_proto(
    citizen_id: str, opt_outs: dict[Channel, datetime]
) -> list[notify_pb2.OptOut]:
    return [
        notify_pb2.OptOut(
            citizen_id=citizen_id.strip(),
            channel=CHANNEL_TO_PROTO[channel],
            updated_at=timestamp(at),
        )
        for channel, at in sorted(opt_outs.items())
    ]
