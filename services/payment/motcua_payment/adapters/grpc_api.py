"""gRPC adapter: protobuf requests → use cases → protobuf responses. No rules live here;
the protobuf mapping is :mod:`motcua_payment.adapters.messages`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_kit.auth import current_principal
from motcua_payment.adapters.messages import payment_to_proto, refund_to_proto
from motcua_payment.domain.fees import PaymentOrder

if TYPE_CHECKING:
    from motcua_payment.service import PaymentService


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
