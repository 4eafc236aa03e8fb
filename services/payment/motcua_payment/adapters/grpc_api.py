"""gRPC adapter: protobuf requests → use cases → protobuf responses. No rules live here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from motcua.common.v1 import common_pb2
from motcua.payment.v1 import events_pb2, payment_pb2, payment_pb2_grpc
from motcua_kit.auth import current_principal
from motcua_kit.proto import timestamp
from motcua_payment.domain.fees import PaymentOrder
from motcua_payment.domain.payment import (
    Actor,
    Origin,
    Payer,
    Payment,
    Refund,
)
from motcua_payment.domain.states import PaymentState, RefundState

if TYPE_CHECKING:
    from motcua_payment.service import PaymentService

ROLE_TO_PROTO = {
    "citizen": common_pb2.ROLE_CITIZEN,
    "officer": common_pb2.ROLE_OFFICER,
    "admin": common_pb2.ROLE_ADMIN,
    "service": common_pb2.ROLE_SERVICE,
}
ROLE_FROM_PROTO = {v: k for k, v in ROLE_TO_PROTO.items()}

PAYMENT_STATE_TO_PROTO = {
    PaymentState.CREATED: payment_pb2.PAYMENT_STATE_CREATED,
    PaymentState.PENDING: payment_pb2.PAYMENT_STATE_PENDING,
    PaymentState.SUCCEEDED: payment_pb2.PAYMENT_STATE_SUCCEEDED,
    PaymentState.FAILED: payment_pb2.PAYMENT_STATE_FAILED,
    PaymentState.EXPIRED: payment_pb2.PAYMENT_STATE_EXPIRED,
    PaymentState.CANCELLED: payment_pb2.PAYMENT_STATE_CANCELLED,
}
REFUND_STATE_TO_PROTO = {
    RefundState.REQUESTED: payment_pb2.REFUND_STATE_REQUESTED,
    RefundState.SUCCEEDED: payment_pb2.REFUND_STATE_SUCCEEDED,
    RefundState.FAILED: payment_pb2.REFUND_STATE_FAILED,
}
ORIGIN_TO_PROTO = {
    Origin.API: events_pb2.ORIGIN_API,
    Origin.DOSSIER_EVENT: events_pb2.ORIGIN_DOSSIER_EVENT,
    Origin.GATEWAY_NOTIFICATION: events_pb2.ORIGIN_GATEWAY_NOTIFICATION,
    Origin.RECONCILIATION: events_pb2.ORIGIN_RECONCILIATION,
    Origin.EXPIRY: events_pb2.ORIGIN_EXPIRY,
}


def actor_to_proto(actor: Actor) -> common_pb2.Actor:
    return common_pb2.Actor(
        subject=actor.subject,
        role=ROLE_TO_PROTO.get(actor.role, common_pb2.ROLE_UNSPECIFIED),
        agency_code=actor.agency_code,
    )


def refund_to_proto(r: Refund) -> payment_pb2.Refund:
    msg = payment_pb2.Refund(
        id=r.id,
        payment_id=r.payment_id,
        amount_vnd=r.amount_vnd,
        state=REFUND_STATE_TO_PROTO[r.state],
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
        state=PAYMENT_STATE_TO_PROTO[p.state],
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


class PaymentApi(payment_pb2_grpc.PaymentServiceServicer):
    """The PaymentService gRPC API."""

    def __init__(self, service: PaymentService) -> None:
        self._service = service

    def CreatePayment(
        self, request: payment_pb2.CreatePaymentRequest, context: grpc.ServicerContext
    ) -> payment_pb2.CreatePaymentResponse:
        order = PaymentOrder.validated(
            dossier_code=request.dossier_code,
            agency_code=request.agency_code,
            amount_vnd=request.amount_vnd,
            description=request.description,
            payer_citizen_id=request.payer.citizen_id,
        )
        payment, replayed = self._service.create_payment(
            current_principal(), order, request.idempotency_key
        )
        return payment_pb2.CreatePaymentResponse(
            payment=payment_to_proto(payment), replayed=replayed
        )

    def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: grpc.ServicerContext
    ) -> payment_pb2.GetPaymentResponse:
        payment = self._service.get_payment(current_principal(), request.payment_id)
        return payment_pb2.GetPaymentResponse(payment=payment_to_proto(payment))

    def ListPayments(
        self, request: payment_pb2.ListPaymentsRequest, context: grpc.ServicerContext
    ) -> payment_pb2.ListPaymentsResponse:
        found = self._service.list_payments(current_principal(), request.dossier_code)
        return payment_pb2.ListPaymentsResponse(payments=[payment_to_proto(p) for p in found])

    def CancelPayment(
        self, request: payment_pb2.CancelPaymentRequest, context: grpc.ServicerContext
    ) -> payment_pb2.CancelPaymentResponse:
        payment = self._service.cancel_payment(
            current_principal(), request.payment_id, request.reason
        )
        return payment_pb2.CancelPaymentResponse(payment=payment_to_proto(payment))

    def RefundPayment(
        self, request: payment_pb2.RefundPaymentRequest, context: grpc.ServicerContext
    ) -> payment_pb2.RefundPaymentResponse:
        refund, payment, replayed = self._service.refund_payment(
            current_principal(),
            request.payment_id,
            request.amount_vnd,
            request.reason,
            request.idempotency_key,
        )
        return payment_pb2.RefundPaymentResponse(
            refund=refund_to_proto(refund), payment=payment_to_proto(payment), replayed=replayed
        )
