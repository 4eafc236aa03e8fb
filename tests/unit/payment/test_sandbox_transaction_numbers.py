"""The sandbox's transaction numbers never repeat across restarts.

The payment service remembers every gateway transaction number it applied and refuses a
repeat as a replay; a sandbox that counted from the same constant at every start made the
second `make run` fail (issue 14, point 2). The orders are signed here as a merchant would
sign them, so the test depends on the sandbox and the wire protocol only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from motcua_payment.adapters.gateways import signing
from motcua_payment.adapters.gateways import vnpay_protocol as vp
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.sandbox.client import SandboxClient

SECRET = b"sandbox-test-secret-0123456789"
MERCHANT = "MOTCUA01"
FROZEN = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)


def _pay_once(first_number: int | None = None) -> str:
    """Start a sandbox (with a frozen clock), pay one order without its IPN, stop it."""
    merchant = Merchant(MERCHANT, SECRET, "http://127.0.0.1:1/payment/sandbox/ipn")
    with SandboxGateway(
        merchants=[merchant], clock=lambda: FROZEN, first_number=first_number
    ) as sandbox:
        order = {
            "vnp_Version": vp.VERSION,
            "vnp_Command": vp.PAY,
            "vnp_TmnCode": MERCHANT,
            "vnp_Amount": str(8_000 * vp.AMOUNT_FACTOR),
            "vnp_CurrCode": "VND",
            "vnp_TxnRef": uuid.uuid4().hex,
            "vnp_OrderInfo": "Le phi STP-260316-0001",
            "vnp_ReturnUrl": "http://127.0.0.1:1/return",
            "vnp_CreateDate": vp.format_time(FROZEN),
            "vnp_ExpireDate": vp.format_time(FROZEN + timedelta(minutes=15)),
        }
        url = f"{sandbox.url}{vp.PAY_PATH}?{signing.signed_query(order, SECRET)}"
        with SandboxClient(sandbox.url) as client:
            return str(client.pay(url, deliver_ipn=False)["transaction_no"])


def test_a_restarted_sandbox_issues_numbers_it_never_issued_before() -> None:
    first = _pay_once()
    second = _pay_once()  # the same frozen gateway clock: only the numbering can differ
    assert first != second
    assert first.isdigit() and second.isdigit() and len(second) <= 64
    assert int(second) > int(first)


def test_a_test_can_still_choose_where_the_numbers_start() -> None:
    assert _pay_once(first_number=14_000_001) == "14000001"
