"""Inbound events (protobuf) → domain: what a dossier or payment event tells notify."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from google.protobuf.message import Message

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua.payment.v1 import events_pb2 as payment_events
from motcua.payment.v1 import payment_pb2
from motcua_notify.domain.notification import Contact, format_date, format_vnd
from motcua_notify.domain.occurrence import DossierSnapshot


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
    if isinstance(message, events_pb2.DossierStatusChanged):
        return {"comment": message.comment}
    if isinstance(message, events_pb2.DossierDeadline):
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


def event_time(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def payment_message_types() -> dict[str, type[Message]]:
    """The payment events notify takes, and their payload class."""
    from motcua_notify import events

    return {
        events.PAYMENT_REQUESTED: payment_events.PaymentEvent,
        events.PAYMENT_SUCCEEDED: payment_events.PaymentEvent,
    }
