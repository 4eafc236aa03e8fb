"""One-line test doubles for whoever tests against the payment service.

* :func:`dossier_event` — any dossier event the payment service consumes (submitted, paid,
  withdrawn, stopped);
* :func:`payment_requested_event` — the dossier service's ``payment_requested`` event, as the
  payment service consumes it (encode it with ``motcua_kit.envelope.encode`` and send it to
  ``motcua.dossier.v1``);
* :func:`signed_notification` — an IPN query string signed with a secret (to forge one, pass
  the wrong secret or change a field);
* :class:`~motcua_payment.sandbox.client.SandboxClient` — to make the sandbox pay.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from motcua import topics
from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import dossier_pb2
from motcua.dossier.v1 import events_pb2 as dossier_events_pb2
from motcua_kit.envelope import Event
from motcua_payment import events
from motcua_payment.adapters.gateways import signing
from motcua_payment.adapters.gateways import vnpay_protocol as vp
from motcua_payment.sandbox.client import SandboxClient

__all__ = ["SandboxClient", "dossier_event", "payment_requested_event", "signed_notification"]

CITIZEN_ID = "079203004567"


def dossier_event(
    event_type: str,
    code: str,
    agency_code: str,
    fee_vnd: int | None = None,
    *,
    status: int = dossier_pb2.DOSSIER_STATUS_PAYMENT_REQUIRED,
    citizen_id: str = CITIZEN_ID,
    full_name: str = "Nguyễn Thị Thu Hà",
    phone: str = "0905123456",
    email: str = "thuha@example.vn",
) -> Event:
    """A dossier event as the payment service consumes it: ``submitted`` carries
    ``DossierSubmitted``, every other type ``DossierStatusChanged``."""
    dossier = dossier_pb2.Dossier(
        code=code,
        procedure_code="TEST-1",
        agency_code=agency_code,
        applicant=dossier_pb2.Applicant(
            full_name=full_name,
            citizen_id=citizen_id,
            phone=phone,
            email=email,
            address="12 Trần Phú, Hội An, Đà Nẵng",
        ),
        status=status,
        version=2,
    )
    if fee_vnd is not None:
        dossier.fee_vnd = fee_vnd
    message: dossier_events_pb2.DossierSubmitted | dossier_events_pb2.DossierStatusChanged
    if event_type == events.DOSSIER_SUBMITTED:
        dossier.status = dossier_pb2.DOSSIER_STATUS_NEW
        message = dossier_events_pb2.DossierSubmitted(dossier=dossier)
    else:
        message = dossier_events_pb2.DossierStatusChanged(
            dossier=dossier,
            previous_status=dossier_pb2.DOSSIER_STATUS_RECEIVED,
            action="request_payment",
            actor=common_pb2.Actor(
                subject="officer-1", role=common_pb2.ROLE_OFFICER, agency_code=agency_code
            ),
        )
    return Event.new(source=topics.DOSSIER_SOURCE, type=event_type, subject=code, message=message)


def payment_requested_event(
    code: str,
    agency_code: str,
    fee_vnd: int | None,
    *,
    citizen_id: str = CITIZEN_ID,
    full_name: str = "Nguyễn Thị Thu Hà",
    phone: str = "0905123456",
    email: str = "thuha@example.vn",
) -> Event:
    """``vn.motcua.dossier.payment_requested.v1`` for a dossier (``fee_vnd`` None: no fee)."""
    return dossier_event(
        events.DOSSIER_PAYMENT_REQUESTED,
        code,
        agency_code,
        fee_vnd,
        citizen_id=citizen_id,
        full_name=full_name,
        phone=phone,
        email=email,
    )


def signed_notification(
    *,
    secret: bytes,
    merchant: str,
    payment_id: str,
    amount_vnd: int,
    transaction_no: str,
    paid: bool = True,
    currency: str = "VND",
    pay_date: datetime | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """An IPN query string as the sandbox would send it, signed with ``secret``."""
    params = {
        "vnp_TmnCode": merchant,
        "vnp_Amount": str(amount_vnd * vp.AMOUNT_FACTOR),
        "vnp_CurrCode": currency,
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": f"VNP{transaction_no}",
        "vnp_CardType": "ATM",
        "vnp_PayDate": vp.format_time(pay_date or datetime.now(UTC)),
        "vnp_OrderInfo": "Le phi ho so",
        "vnp_TransactionNo": transaction_no,
        "vnp_ResponseCode": vp.RESPONSE_OK if paid else vp.RESPONSE_CUSTOMER_CANCELLED,
        "vnp_TransactionStatus": vp.STATUS_PAID if paid else vp.STATUS_FAILED,
        "vnp_TxnRef": payment_id,
        **(extra or {}),
    }
    return signing.signed_query(params, secret)
