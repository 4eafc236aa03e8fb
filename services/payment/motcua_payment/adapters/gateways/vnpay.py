"""Adapter for VNPay-style gateways (and the sandbox, which speaks the same protocol).

Redirect URLs are built and signed locally, as VNPay does; queries, cancels and refunds are
signed JSON POSTs to the gateway's API, whose answers are verified before they are believed.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from motcua_payment.adapters.gateways import signing
from motcua_payment.adapters.gateways import vnpay_protocol as vp
from motcua_payment.adapters.gateways.base import GatewayUnavailable, HttpAnswer, RefundOutcome
from motcua_payment.domain.callbacks import CallbackRejected, Notice, Outcome, RejectionReason
from motcua_payment.domain.payment import CURRENCY, Payment, Refund

log = logging.getLogger(__name__)
_DIGITS = re.compile(r"[0-9]{1,18}")

_STATUS_OUTCOME = {
    vp.STATUS_PAID: Outcome.PAID,
    vp.STATUS_PENDING: Outcome.PENDING,
    vp.STATUS_FAILED: Outcome.FAILED,
    vp.STATUS_CANCELLED: Outcome.CANCELLED,
}

_IPN_ANSWER = {
    None: vp.IPN_CONFIRMED,
    RejectionReason.REPLAY: vp.IPN_ALREADY_CONFIRMED,
    RejectionReason.STATE_CONFLICT: vp.IPN_ALREADY_CONFIRMED,
    RejectionReason.UNKNOWN_REFERENCE: vp.IPN_NOT_FOUND,
    RejectionReason.AMOUNT_MISMATCH: vp.IPN_INVALID_AMOUNT,
    RejectionReason.CURRENCY_MISMATCH: vp.IPN_INVALID_AMOUNT,
    RejectionReason.BAD_SIGNATURE: vp.IPN_BAD_SIGNATURE,
}


def _now() -> datetime:
    return datetime.now(UTC)


class VnpayStyleGateway:
    """One merchant account at a VNPay-style gateway."""

    def __init__(
        self,
        name: str,
        base_url: str,
        merchant_code: str,
        secret: Callable[[], bytes],
        *,
        timeout: float = 5.0,
        client_ip: str = "127.0.0.1",
        clock: Callable[[], datetime] = _now,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._name = name
        self._base = base_url.rstrip("/")
        self._merchant = merchant_code
        self._secret = secret
        self._ip = client_ip
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport)

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        self._http.close()

    # -- payer's way -------------------------------------------------------------------------
    def redirect_url(self, payment: Payment, return_url: str) -> str:
        params = {
            "vnp_Version": vp.VERSION,
            "vnp_Command": vp.PAY,
            "vnp_TmnCode": self._merchant,
            "vnp_Amount": str(payment.amount_vnd * vp.AMOUNT_FACTOR),
            "vnp_CurrCode": payment.currency,
            "vnp_TxnRef": payment.id,
            "vnp_OrderInfo": vp.ascii_text(payment.description),
            "vnp_OrderType": "billpayment",
            "vnp_Locale": "vn",
            "vnp_ReturnUrl": return_url,
            "vnp_IpAddr": self._ip,
            "vnp_CreateDate": vp.format_time(payment.created_at),
            "vnp_ExpireDate": vp.format_time(payment.expires_at),
        }
        return f"{self._base}{vp.PAY_PATH}?{signing.signed_query(params, self._secret())}"

    # -- callbacks ---------------------------------------------------------------------------
    def parse_notification(self, params: Sequence[tuple[str, str]]) -> Notice:
        fields: dict[str, str] = {}
        for name, value in params:
            if name in fields:
                # Parameter pollution: which copy was signed? Refuse rather than guess.
                raise CallbackRejected(RejectionReason.MALFORMED, f"parameter {name} repeated")
            fields[name] = value
        if not signing.verify(fields, self._secret()):
            raise CallbackRejected(
                RejectionReason.BAD_SIGNATURE,
                "the signature is missing or wrong",
                fields.get("vnp_TxnRef", "")[:64],
            )
        reference = fields.get("vnp_TxnRef", "")
        try:
            if fields.get("vnp_TmnCode") != self._merchant:
                raise ValueError("vnp_TmnCode is not this merchant")
            transaction_id = _required(fields, "vnp_TransactionNo")
            amount = _amount(_required(fields, "vnp_Amount"))
            occurred_at = vp.parse_time(_required(fields, "vnp_PayDate"))
            currency = _required(fields, "vnp_CurrCode")
            response = _required(fields, "vnp_ResponseCode")
            status = _required(fields, "vnp_TransactionStatus")
            _required(fields, "vnp_TxnRef")
        except ValueError as exc:
            raise CallbackRejected(RejectionReason.MALFORMED, str(exc), reference[:64]) from None
        paid = response == vp.RESPONSE_OK and status == vp.STATUS_PAID
        return Notice(
            reference=reference,
            outcome=Outcome.PAID if paid else Outcome.FAILED,
            transaction_id=transaction_id,
            amount_vnd=amount,
            currency=currency,
            occurred_at=occurred_at,
            code=response if response != vp.RESPONSE_OK else status,
        )

    def acknowledge(self, rejection: RejectionReason | None) -> HttpAnswer:
        code, message = _IPN_ANSWER.get(rejection, vp.IPN_OTHER)
        body = json.dumps({"RspCode": code, "Message": message}).encode()
        # VNPay expects HTTP 200 whatever the RspCode; it retries on anything but 00 and 02.
        return HttpAnswer(200, "application/json", body)

    # -- server to server --------------------------------------------------------------------
    def _call(self, command: str, extra: Mapping[str, str]) -> dict[str, str]:
        body = {
            "vnp_RequestId": extra.get("vnp_RequestId") or uuid.uuid4().hex,
            "vnp_Version": vp.VERSION,
            "vnp_Command": command,
            "vnp_TmnCode": self._merchant,
            "vnp_CreateDate": vp.format_time(self._clock()),
            "vnp_IpAddr": self._ip,
            **extra,
        }
        secret = self._secret()
        try:
            response = self._http.post(self._base + vp.API_PATH, json=signing.signed(body, secret))
            response.raise_for_status()
            answer: Any = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise GatewayUnavailable(f"{command}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(answer, dict) or not all(isinstance(v, str) for v in answer.values()):
            raise GatewayUnavailable(f"{command}: the answer is not a flat JSON object")
        if not signing.verify(answer, secret):
            log.error("the gateway's %s answer has a bad signature; not believed", command)
            raise GatewayUnavailable(f"{command}: the answer's signature is wrong")
        if answer.get("vnp_ResponseCode") == vp.API_BAD_SIGNATURE:
            raise GatewayUnavailable(f"{command}: the gateway refused our signature")
        return answer

    def _status_notice(self, payment: Payment, answer: Mapping[str, str]) -> Notice:
        code = answer.get("vnp_ResponseCode", "")
        if code == vp.API_NOT_FOUND:
            return Notice(reference=payment.id, outcome=Outcome.NOT_FOUND, code=code)
        if code != vp.API_OK:
            raise GatewayUnavailable(f"gateway answered {code}: {answer.get('vnp_Message', '')}")
        if answer.get("vnp_TxnRef") != payment.id:
            raise GatewayUnavailable("the gateway answered about another payment")
        status = answer.get("vnp_TransactionStatus", "")
        outcome = _STATUS_OUTCOME.get(status)
        if outcome is None:
            raise GatewayUnavailable(f"unknown transaction status {status!r}")
        try:
            amount = _amount(answer["vnp_Amount"]) if answer.get("vnp_Amount") else None
            pay_date = answer.get("vnp_PayDate", "")
            occurred_at = vp.parse_time(pay_date) if pay_date else None
        except ValueError as exc:
            raise GatewayUnavailable(f"unreadable answer: {exc}") from None
        return Notice(
            reference=payment.id,
            outcome=outcome,
            transaction_id=answer.get("vnp_TransactionNo", ""),
            amount_vnd=amount,
            currency=answer.get("vnp_CurrCode", CURRENCY),
            occurred_at=occurred_at,
            code=answer.get("vnp_TransactionResponseCode") or status,
        )

    def _payment_fields(self, payment: Payment) -> dict[str, str]:
        return {
            "vnp_TxnRef": payment.id,
            "vnp_OrderInfo": vp.ascii_text(f"Tra cuu {payment.id}"),
            "vnp_TransactionDate": vp.format_time(payment.created_at),
        }

    def query(self, payment: Payment) -> Notice:
        return self._status_notice(payment, self._call(vp.QUERY, self._payment_fields(payment)))

    def cancel(self, payment: Payment) -> Notice:
        return self._status_notice(payment, self._call(vp.CANCEL, self._payment_fields(payment)))

    def refund(self, payment: Payment, refund: Refund) -> RefundOutcome:
        full = refund.amount_vnd == payment.amount_vnd
        answer = self._call(
            vp.REFUND,
            {
                **self._payment_fields(payment),
                "vnp_RequestId": refund.id,  # the gateway answers a repeat with the first result
                "vnp_TransactionType": "02" if full else "03",
                "vnp_Amount": str(refund.amount_vnd * vp.AMOUNT_FACTOR),
                "vnp_TransactionNo": payment.gateway_transaction_id,
                "vnp_CreateBy": refund.requested_by.subject[:64],
            },
        )
        code = answer.get("vnp_ResponseCode", "")
        if code == vp.API_ERROR:
            raise GatewayUnavailable(f"refund: {answer.get('vnp_Message', 'gateway error')}")
        return RefundOutcome(
            succeeded=code == vp.API_OK,
            transaction_id=answer.get("vnp_TransactionNo", ""),
            code=code,
            message=answer.get("vnp_Message", ""),
        )


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise ValueError(f"{name} is missing")
    return value


def _amount(raw: str) -> int:
    """``vnp_Amount`` (đồng × 100) → đồng; whole đồng only."""
    if not _DIGITS.fullmatch(raw):
        raise ValueError("vnp_Amount is not a whole number")
    value = int(raw)
    if value % vp.AMOUNT_FACTOR:
        raise ValueError("vnp_Amount is not a whole number of đồng")
    return value // vp.AMOUNT_FACTOR
