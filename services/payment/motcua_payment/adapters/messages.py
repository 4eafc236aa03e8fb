"""The one mapping between the payment domain and protobuf: API responses and published events
alike, and the dossier events this service consumes. No rules live here.
"""

from __future__ import annotations

from datetime import datetime

from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import dossier_pb2
from motcua.payment.v1 import events_pb2, payment_pb2
from motcua_kit.actors import actor_to_proto, role_from_proto
from motcua_kit.consumer import PermanentError
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument
from motcua_kit.proto import timestamp
from motcua_payment import events
from motcua_payment.domain.fees import DossierFee
from motcua_payment.domain.payment import (
    SYSTEM,
    Actor,
    Origin,
    Payer,
    Payment,
    Refund,
    validate_agency_code,
    validate_dossier_code,
)
from motcua_payment.domain.states import PaymentState

ORIGIN_TO_PROTO = {
    Origin.API: events_pb2.ORIGIN_API,
    Origin.DOSSIER_EVENT: events_pb2.ORIGIN_DOSSIER_EVENT,
    Origin.GATEWAY_NOTIFICATION: events_pb2.ORIGIN_GATEWAY_NOTIFICATION,
    Origin.RECONCILIATION: events_pb2.ORIGIN_RECONCILIATION,
    Origin.EXPIRY: events_pb2.ORIGIN_EXPIRY,
}


def refund_to_proto(r: Refund) -> payment_pb2.Refund:
    msg = payment_pb2.Refund(
        id=r.id,
        payment_id=r.payment_id,
        amount_vnd=r.amount_vnd,
        state=r.state.proto,
        reason=r.reason,
        gateway_transaction_id=r.gateway_transaction_id,
        failure_code=r.failure_code,
        requested_at=timestamp(r.requested_at),
        requested_by=actor_to_proto(r.requested_by),
    )
    if r.settled_at is not None:
        msg.settled_at.CopyFrom(timestamp(r.settled_at))
    return msg


def payment_to_proto(p: Payment) -> payment_pb2.Payment:
    """The one mapping from the domain payment to its contract (API and events alike)."""
    msg = payment_pb2.Payment(
        id=p.id,
        dossier_code=p.dossier_code,
        agency_code=p.agency_code,
        amount_vnd=p.amount_vnd,
        pay_url=p.pay_url,
        currency=p.currency,
        description=p.description,
        state=p.state.proto,
        payer=payment_pb2.Payer(
            full_name=p.payer.full_name,
            citizen_id=p.payer.citizen_id,
            phone=p.payer.phone,
            email=p.payer.email,
        ),
        gateway=p.gateway,
        redirect_url=p.redirect_url,
        gateway_transaction_id=p.gateway_transaction_id,
        failure_code=p.failure_code,
        refunded_vnd=p.refunded_vnd,
        refunds=[refund_to_proto(r) for r in p.refunds],
        created_at=timestamp(p.created_at),
        expires_at=timestamp(p.expires_at),
        created_by=actor_to_proto(p.created_by),
    )
    if p.receipt is not None:
        msg.receipt.CopyFrom(
            payment_pb2.Receipt(number=p.receipt.number, issued_at=timestamp(p.receipt.issued_at))
        )
    if p.settled_at is not None:
        msg.settled_at.CopyFrom(timestamp(p.settled_at))
    return msg


def payer_from_proto(payer: payment_pb2.Payer) -> Payer:
    return Payer.validated(payer.full_name, payer.citizen_id, payer.phone, payer.email)


def actor_from_proto(a: common_pb2.Actor) -> Actor:
    """Who, in the dossier service, asked for the fee (the dossier service itself if unsaid)."""
    return Actor(a.subject or "motcua-dossier", role_from_proto(a.role, "service"), a.agency_code)


def fee_of(dossier: dossier_pb2.Dossier) -> DossierFee:
    """The fact a dossier event states: the dossier, its agency and its applicant."""
    applicant = dossier.applicant
    try:
        return DossierFee(
            dossier_code=validate_dossier_code("dossier.code", dossier.code),
            agency_code=validate_agency_code("dossier.agency_code", dossier.agency_code),
            procedure_code=dossier.procedure_code,
            payer=Payer.validated(
                applicant.full_name, applicant.citizen_id, applicant.phone, applicant.email
            ),
        )
    except InvalidArgument as exc:
        raise PermanentError(f"unusable dossier event: {exc.message}") from exc


def payment_event(
    payment: Payment,
    event_type: str,
    previous: PaymentState,
    origin: Origin,
    actor: Actor,
    now: datetime,
    *,
    reason: str = "",
    refund: Refund | None = None,
) -> Event:
    """The payment event of a state change (the payment as it is after it)."""
    message = events_pb2.PaymentEvent(
        payment=payment_to_proto(payment),
        previous_state=previous.proto,
        origin=ORIGIN_TO_PROTO[origin],
        reason=reason,
        occurred_at=timestamp(now),
    )
    if actor is not SYSTEM:
        message.actor.CopyFrom(actor_to_proto(actor))
    if refund is not None:
        message.refund.CopyFrom(refund_to_proto(refund))
    return Event.new(
        source=events.SOURCE,
        type=event_type,
        subject=payment.dossier_code,
        message=message,
        time=now,
    )
