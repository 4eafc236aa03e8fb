"""The sandbox gateway as a real HTTP server, driven through the adapter and its test API.

A small merchant endpoint (a real HTTP server too) records the notifications it receives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from motcua_payment.adapters.gateways import signing
from motcua_payment.adapters.gateways.base import GatewayUnavailable
from motcua_payment.adapters.gateways.vnpay import VnpayStyleGateway
from motcua_payment.domain.callbacks import Outcome
from motcua_payment.domain.payment import Actor, Payer, Payment, PaymentRequest, new_id
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.sandbox.client import SandboxClient

SECRET = b"sandbox-test-secret-0123456789"
MERCHANT = "MOTCUA01"


class MerchantEndpoint:
    """The merchant's IPN URL: records each notification, answers RspCode 00."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.received.append(dict(parse_qsl(urlsplit(self.path).query)))
                body = json.dumps({"RspCode": "00", "Message": "Confirm Success"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/payment/sandbox/ipn"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def merchant() -> Iterator[MerchantEndpoint]:
    endpoint = MerchantEndpoint()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def sandbox(merchant: MerchantEndpoint) -> Iterator[SandboxGateway]:
    with SandboxGateway(merchants=[Merchant(MERCHANT, SECRET, merchant.url)]) as gw:
        yield gw


@pytest.fixture
def adapter(sandbox: SandboxGateway) -> Iterator[VnpayStyleGateway]:
    gw = VnpayStyleGateway("sandbox", sandbox.url, MERCHANT, lambda: SECRET, timeout=5)
    yield gw
    gw.close()


@pytest.fixture
def client(sandbox: SandboxGateway) -> Iterator[SandboxClient]:
    with SandboxClient(sandbox.url) as c:
        yield c


def a_payment(amount: int = 150_000, age: timedelta = timedelta(0)) -> Payment:
    now = datetime.now(UTC) - age
    request = PaymentRequest.validated(
        dossier_code="SXD-260316-0001",
        agency_code="SXD",
        amount_vnd=amount,
        description="Lệ phí",
        payer=Payer.validated("Nguyễn Thị Thu Hà", "079203004567"),
    )
    payment = Payment.new(
        request,
        payment_id=new_id(),
        gateway="sandbox",
        created_by=Actor("svc", "service"),
        now=now,
        expires_at=now + timedelta(minutes=15),
    )
    return payment


def started(adapter: VnpayStyleGateway, payment: Payment) -> Payment:
    return payment.started(adapter.redirect_url(payment, "http://127.0.0.1:1/return?x=1"))


def test_opening_the_redirect_shows_the_payment_page(adapter, sandbox) -> None:
    payment = started(adapter, a_payment())
    page = httpx.get(payment.redirect_url)
    assert page.status_code == 200
    assert "150.000 VND" in page.text and "Thanh toán" in page.text
    tampered = payment.redirect_url.replace("vnp_Amount=15000000", "vnp_Amount=100")
    refused = httpx.get(tampered)
    assert refused.status_code == 400 and "checksum" in refused.json()["error"]


def test_paying_sends_a_signed_ipn_and_returns_a_signed_return_url(
    adapter, client, merchant
) -> None:
    payment = started(adapter, a_payment())
    result = client.pay(payment.redirect_url)
    assert result["ipn"] == {
        "status_code": 200,
        "body": {"RspCode": "00", "Message": "Confirm Success"},
    }
    assert len(merchant.received) == 1
    ipn = merchant.received[0]
    assert signing.verify(ipn, SECRET)
    notice = adapter.parse_notification(list(ipn.items()))
    assert notice.outcome is Outcome.PAID
    assert notice.reference == payment.id and notice.amount_vnd == 150_000
    assert notice.transaction_id == result["transaction_no"]
    back = urlsplit(result["return_url"])
    assert back.path == "/return"
    returned = parse_qsl(back.query)
    assert ("x", "1") in returned
    assert adapter.parse_notification([p for p in returned if p[0] != "x"]) == notice
    # The gateway can send the same notification again (as VNPay retries).
    client.notify(MERCHANT, payment.id)
    assert merchant.received[1] == ipn


def test_a_lost_ipn_is_still_known_to_the_query_api(adapter, client, merchant) -> None:
    payment = started(adapter, a_payment())
    assert adapter.query(payment).outcome is Outcome.NOT_FOUND
    httpx.get(payment.redirect_url)
    assert adapter.query(payment).outcome is Outcome.PENDING
    result = client.pay(payment.redirect_url, deliver_ipn=False)
    assert merchant.received == [] and result["ipn"] is None
    notice = adapter.query(payment)
    assert notice.outcome is Outcome.PAID
    assert notice.transaction_id == result["transaction_no"] and notice.amount_vnd == 150_000


def test_a_failed_payment(adapter, client, merchant) -> None:
    payment = started(adapter, a_payment())
    client.pay(payment.redirect_url, "cancel")
    notice = adapter.parse_notification(list(merchant.received[0].items()))
    assert notice.outcome is Outcome.FAILED and notice.code == "24"
    assert adapter.query(payment).outcome is Outcome.FAILED


def test_cancelled_or_expired_orders_cannot_be_paid(adapter, client) -> None:
    payment = started(adapter, a_payment())
    httpx.get(payment.redirect_url)
    assert adapter.cancel(payment).outcome is Outcome.CANCELLED
    assert client.try_pay(payment.redirect_url).status_code == 409
    never_opened = started(adapter, a_payment())
    assert adapter.cancel(never_opened).outcome is Outcome.CANCELLED
    assert client.try_pay(never_opened.redirect_url).status_code == 409
    expired = started(adapter, a_payment(age=timedelta(minutes=16)))
    response = client.try_pay(expired.redirect_url)
    assert response.status_code == 409
    assert adapter.query(expired).outcome is Outcome.CANCELLED


def test_cancel_after_payment_reports_paid(adapter, client) -> None:
    payment = started(adapter, a_payment())
    client.pay(payment.redirect_url)
    assert adapter.cancel(payment).outcome is Outcome.PAID


def paid(adapter: VnpayStyleGateway, client: SandboxClient, amount: int = 150_000) -> Payment:
    payment = started(adapter, a_payment(amount))
    result = client.pay(payment.redirect_url)
    notice = adapter.query(payment)
    assert notice.transaction_id == result["transaction_no"]
    from motcua_payment.domain.payment import Receipt

    return payment.succeeded(
        notice.transaction_id, Receipt("SXD-2026-000001", payment.created_at), payment.created_at
    )


def test_refunds_partial_rest_then_over_refund_refused(adapter, client) -> None:
    payment = paid(adapter, client)
    actor = Actor("officer-1", "officer", "SXD")
    now = datetime.now(UTC)
    first = payment.request_refund(
        refund_id=new_id(), amount_vnd=40_000, reason="r", actor=actor, now=now
    )
    outcome = adapter.refund(payment, first)
    assert outcome.succeeded and outcome.transaction_id
    assert adapter.refund(payment, first) == outcome  # the same refund id: the first answer
    rest = payment.with_refund(first.succeeded(outcome.transaction_id, now)).request_refund(
        refund_id=new_id(), amount_vnd=110_000, reason="r", actor=actor, now=now
    )
    assert adapter.refund(payment, rest).succeeded
    # Our side refuses first; the gateway refuses too if asked (defence in depth).
    from dataclasses import replace

    over = replace(rest, id=new_id(), amount_vnd=1)
    refused = adapter.refund(payment, over)
    assert not refused.succeeded and refused.code == "03"


def test_refund_faults(adapter, client) -> None:
    payment = paid(adapter, client)
    actor = Actor("officer-1", "officer", "SXD")
    now = datetime.now(UTC)
    refund = payment.request_refund(
        refund_id=new_id(), amount_vnd=1_000, reason="r", actor=actor, now=now
    )
    client.set_faults(refund="error")
    with pytest.raises(GatewayUnavailable):
        adapter.refund(payment, refund)
    client.set_faults(refund="decline")
    declined = adapter.refund(payment, refund)
    assert not declined.succeeded and declined.code == "09"
    client.set_faults(query="error")
    with pytest.raises(GatewayUnavailable):
        adapter.query(payment)


def test_api_calls_signed_with_another_secret_are_refused(sandbox) -> None:
    wrong = VnpayStyleGateway("sandbox", sandbox.url, MERCHANT, lambda: b"x" * 32)
    with pytest.raises(GatewayUnavailable, match="signature"):
        wrong.query(a_payment())
    unreachable = VnpayStyleGateway(
        "sandbox", "http://127.0.0.1:9", MERCHANT, lambda: SECRET, timeout=1
    )
    with pytest.raises(GatewayUnavailable):
        unreachable.query(a_payment())


def test_browser_checkout_redirects_to_the_return_url(adapter, sandbox, merchant) -> None:
    payment = started(adapter, a_payment())
    httpx.get(payment.redirect_url)
    response = httpx.post(
        f"{sandbox.url}/sandbox/checkout",
        data={"merchant": MERCHANT, "txn_ref": payment.id, "outcome": "success"},
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    params = dict(parse_qsl(location.query))
    assert params["vnp_TxnRef"] == payment.id and params["vnp_ResponseCode"] == "00"
    assert len(merchant.received) == 1


def test_merchants_can_be_registered_at_runtime(client, sandbox, merchant) -> None:
    client.register_merchant("OTHER01", "another-secret-0123456789", merchant.url)
    other = VnpayStyleGateway(
        "sandbox", sandbox.url, "OTHER01", lambda: b"another-secret-0123456789"
    )
    payment = other.redirect_url(a_payment(), "http://127.0.0.1:1/r")
    assert httpx.get(payment).status_code == 200
    with pytest.raises(httpx.HTTPStatusError):
        client.register_merchant("BAD", "short", merchant.url)
