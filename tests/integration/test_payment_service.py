"""The payment service as a process, on the real broker and database (SQLite and PostgreSQL),
with the sandbox gateway as a real HTTP server: the acceptance points of issue 4.

The dossier side is played by the test: it produces ``payment_requested`` on
``motcua.dossier.v1`` exactly as the dossier service does.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from kafka import KafkaProducer
from sqlalchemy import create_engine, text

from harness import ROOT, Kafka, ServiceProcess, free_port, header, read_topic, wait_for
from motcua.payment.v1 import events_pb2, payment_pb2, payment_pb2_grpc
from motcua_kit.envelope import Event, encode
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.sandbox.client import SandboxClient
from motcua_payment.testing import CITIZEN_ID, payment_requested_event, signed_notification

pytestmark = pytest.mark.integration

TOPIC = "motcua.payment.v1"
DOSSIER_TOPIC = "motcua.dossier.v1"
MERCHANT = "MOTCUA01"
SECRET = "process-test-hash-secret-0123456789"
RECEIPT = re.compile(r"SXD-\d{4}-\d{6}")


def dossier_code(agency: str = "SXD") -> str:
    return f"{agency}-260316-{uuid.uuid4().hex[:8].upper()}"


def publish_dossier_events(kafka: Kafka, *events: Event) -> None:
    """Produce as the dossier service would; one partition, so they are handled in order."""
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    try:
        for event in events:
            record = encode(event)
            producer.send(
                DOSSIER_TOPIC,
                key=record.key,
                value=record.value,
                headers=record.headers,
                partition=0,
            ).get(30)
    finally:
        producer.close()


def ask_fee(
    kafka: Kafka, client: PaymentClient, code: str, amount: int = 150_000
) -> payment_pb2.Payment:
    """The dossier service's part, played by the test: ``payment_requested`` for ``code``.
    The payment service opens the fee request and creates its payment; this returns it."""
    publish_dossier_events(kafka, payment_requested_event(code, code.split("-")[0], amount))
    wait_for(lambda: client.list(code), 60, 0.2, f"the payment of {code}")
    return client.list(code)[0]


def payment_events(kafka: Kafka, code: str) -> list[tuple[str, events_pb2.PaymentEvent, Any]]:
    """(ce_type, payload, record) of the payment events of one dossier, in order."""
    out = []
    for record in read_topic(kafka.bootstrap, TOPIC):
        if record.key == code.encode():
            ce_type = (header(record, "ce_type") or b"").decode()
            out.append((ce_type, events_pb2.PaymentEvent.FromString(record.value), record))
    return out


def wait_event(
    kafka: Kafka, code: str, ce_type: str, timeout: float = 30
) -> events_pb2.PaymentEvent:
    def found() -> events_pb2.PaymentEvent | None:
        matching = [e for t, e, _ in payment_events(kafka, code) if t == ce_type]
        return matching[-1] if matching else None

    return wait_for(found, timeout, 0.2, f"{ce_type} for {code}")


def metric(service: ServiceProcess, name: str, **labels: str) -> float:
    body = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(\{{{re.escape(wanted)}\}})? (\S+)$", re.M)
    match = pattern.search(body)
    return float(match.group(2)) if match else 0.0


class PaymentClient:
    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = payment_pb2_grpc.PaymentServiceStub(self.channel)
        self.metadata = [("authorization", f"Bearer {token}")]

    def create(
        self, code: str, amount: int = 150_000, key: str = "", agency: str = "SXD", **changes: Any
    ) -> payment_pb2.CreatePaymentResponse:
        request = payment_pb2.CreatePaymentRequest(
            dossier_code=code,
            agency_code=agency,
            amount_vnd=amount,
            payer=payment_pb2.Payer(
                full_name="Nguyễn Thị Thu Hà",
                citizen_id=CITIZEN_ID,
                phone="0905123456",
                email="thuha@example.vn",
            ),
            idempotency_key=key or uuid.uuid4().hex,
            **changes,
        )
        return self.stub.CreatePayment(request, metadata=self.metadata, timeout=30)

    def get(self, payment_id: str) -> payment_pb2.Payment:
        request = payment_pb2.GetPaymentRequest(payment_id=payment_id)
        return self.stub.GetPayment(request, metadata=self.metadata, timeout=30).payment

    def list(self, code: str) -> list[payment_pb2.Payment]:
        request = payment_pb2.ListPaymentsRequest(dossier_code=code)
        return list(self.stub.ListPayments(request, metadata=self.metadata, timeout=30).payments)

    def cancel(self, payment_id: str, reason: str = "") -> payment_pb2.Payment:
        request = payment_pb2.CancelPaymentRequest(payment_id=payment_id, reason=reason)
        return self.stub.CancelPayment(request, metadata=self.metadata, timeout=30).payment

    def refund(
        self, payment_id: str, amount: int, key: str, reason: str = "hoàn lệ phí"
    ) -> payment_pb2.RefundPaymentResponse:
        request = payment_pb2.RefundPaymentRequest(
            payment_id=payment_id, amount_vnd=amount, reason=reason, idempotency_key=key
        )
        return self.stub.RefundPayment(request, metadata=self.metadata, timeout=30)

    def close(self) -> None:
        self.channel.close()


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


@dataclass
class Setup:
    """Everything a test needs to start the payment service against a sandbox."""

    secret_file: Path
    callback_port: int

    @property
    def callback_url(self) -> str:
        return f"http://127.0.0.1:{self.callback_port}"

    @property
    def ipn_url(self) -> str:
        return f"{self.callback_url}/payment/sandbox/ipn"

    def env(self, sandbox_url: str, **extra: str) -> dict[str, str]:
        return {
            "GATEWAY_BASE_URL": sandbox_url,
            "GATEWAY_MERCHANT_CODE": MERCHANT,
            "GATEWAY_HASH_SECRET_FILE": str(self.secret_file),
            "CALLBACK_PORT": str(self.callback_port),
            **extra,
        }


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    secret_file = tmp_path / "gateway.secret"
    secret_file.write_text(SECRET + "\n")
    return Setup(secret_file, free_port())


@pytest.fixture
def sandbox(setup: Setup) -> Iterator[SandboxGateway]:
    with SandboxGateway(merchants=[Merchant(MERCHANT, SECRET.encode(), setup.ipn_url)]) as gw:
        yield gw


# -- end to end (the dossier side played by the test) -------------------------------------------
def test_a_fee_bearing_dossier_is_requested_paid_and_receipted(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    setup: Setup,
) -> None:
    # The sandbox as `make run` starts it: its own process, configured from the command line.
    sandbox_port = free_port()
    sandbox_proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "motcua_payment.sandbox",
            "--port",
            str(sandbox_port),
            "--merchant",
            MERCHANT,
            "--secret-file",
            str(setup.secret_file),
            "--ipn-url",
            setup.ipn_url,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    try:
        wait_for(lambda: httpx.get(f"{sandbox_url}/healthz").status_code == 200, 30, 0.1, "sandbox")
        payment = service_factory("payment", database("payment"), **setup.env(sandbox_url)).start()
        fee, free, marker = dossier_code(), dossier_code(), dossier_code()
        publish_dossier_events(
            kafka,
            payment_requested_event(fee, "SXD", 150_000),
            payment_requested_event(free, "SXD", None),
            payment_requested_event(marker, "SXD", 8_000),
        )
        wait_event(kafka, marker, "vn.motcua.payment.requested.v1", 60)
        requested = wait_event(kafka, fee, "vn.motcua.payment.requested.v1")
        # Handled in order on one partition: the free dossier was seen, and got nothing.
        officer = PaymentClient(payment.target, token("officer", agency="SXD"))
        assert officer.list(free) == [] and payment_events(kafka, free) == []

        assert requested.payment.amount_vnd == 150_000 and requested.payment.currency == "VND"
        assert requested.payment.state == payment_pb2.PAYMENT_STATE_PENDING
        assert requested.payment.redirect_url.startswith(f"{sandbox_url}/paymentv2/vpcpay.html?")
        assert requested.origin == events_pb2.ORIGIN_DOSSIER_EVENT
        [(_, _, record)] = payment_events(kafka, fee)
        assert header(record, "ce_source") == b"/motcua/payment"
        assert header(record, "ce_subject") == fee.encode()
        assert header(record, "content-type") == b"application/protobuf"

        # The citizen pays at the gateway; the gateway notifies the service.
        with SandboxClient(sandbox_url) as gateway:
            result = gateway.pay(requested.payment.redirect_url)
        assert result["ipn"]["body"]["RspCode"] == "00"
        succeeded = wait_event(kafka, fee, "vn.motcua.payment.succeeded.v1")
        assert RECEIPT.fullmatch(succeeded.payment.receipt.number)
        assert succeeded.payment.gateway_transaction_id == result["transaction_no"]
        assert succeeded.previous_state == payment_pb2.PAYMENT_STATE_PENDING
        [ok] = [r for t, _, r in payment_events(kafka, fee) if t.endswith("succeeded.v1")]
        assert header(ok, "traceparent")  # the IPN's span

        citizen = PaymentClient(payment.target, token("citizen", citizen_id=CITIZEN_ID))
        stored = citizen.get(requested.payment.id)
        assert stored.state == payment_pb2.PAYMENT_STATE_SUCCEEDED
        assert stored.receipt.number == succeeded.payment.receipt.number
        assert metric(payment, "motcua_payment_payments_total", outcome="succeeded") == 1
        assert metric(payment, "motcua_payment_payments_total", outcome="requested") >= 2
        assert metric(payment, "motcua_payment_settlement_seconds_count", outcome="succeeded") == 1
        assert payment.terminate() == 0
    finally:
        sandbox_proc.terminate()
        assert sandbox_proc.wait(10) == 0


# -- callback defence ---------------------------------------------------------------------------
def test_forged_callbacks_are_refused_counted_logged_without_secrets(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    setup: Setup,
    sandbox: SandboxGateway,
) -> None:
    url = database("payment")
    service = service_factory("payment", url, **setup.env(sandbox.url)).start()
    client = PaymentClient(service.target, token("service"))
    code = dossier_code()
    payment = ask_fee(kafka, client, code)
    wait_event(kafka, code, "vn.motcua.payment.requested.v1")

    def notification(**changes: Any) -> str:
        fields: dict[str, Any] = {
            "secret": SECRET.encode(),
            "merchant": MERCHANT,
            "payment_id": payment.id,
            "amount_vnd": payment.amount_vnd,
            "transaction_no": "77" + uuid.uuid4().hex[:6],
        }
        fields.update(changes)
        return signed_notification(**fields)

    from datetime import UTC, datetime, timedelta

    forgeries = [
        ("bad_signature", notification(secret=b"guessed-secret-0123456789"), "97"),
        ("stale_timestamp", notification(pay_date=datetime.now(UTC) - timedelta(hours=2)), "99"),
        ("amount_mismatch", notification(amount_vnd=1_000), "04"),
        ("currency_mismatch", notification(currency="USD"), "04"),
        ("unknown_reference", notification(payment_id=uuid.uuid4().hex), "01"),
    ]
    for reason, query, rsp in forgeries:
        answer = httpx.get(f"{setup.ipn_url}?{query}").json()
        assert answer["RspCode"] == rsp, reason
        assert metric(service, "motcua_payment_callback_rejections_total", reason=reason) == 1
    assert client.get(payment.id).state == payment_pb2.PAYMENT_STATE_PENDING
    engine = create_engine(url)
    with engine.connect() as conn:
        # (The service also took the payment_requested events earlier tests left on the topic.)
        mine = {"code": code, "id": payment.id}
        assert (
            conn.execute(
                text("SELECT count(*) FROM outbox WHERE event_key = :code"), mine
            ).scalar_one()
            == 1
        )
        assert (
            conn.execute(
                text("SELECT count(*) FROM gateway_notices WHERE payment_id = :id"), mine
            ).scalar_one()
            == 0
        )
    engine.dispose()

    # A genuine notification, then the same one replayed.
    with SandboxClient(sandbox.url) as gateway:
        assert gateway.pay(payment.redirect_url)["ipn"]["body"]["RspCode"] == "00"
        assert gateway.notify(MERCHANT, payment.id)["body"]["RspCode"] == "02"
    assert metric(service, "motcua_payment_callback_rejections_total", reason="replay") == 1
    wait_event(kafka, code, "vn.motcua.payment.succeeded.v1")
    assert service.terminate() == 0
    types = [t for t, _, _ in payment_events(kafka, code)]
    assert types == ["vn.motcua.payment.requested.v1", "vn.motcua.payment.succeeded.v1"]
    log = service.log_path.read_text()
    assert "callback refused" in log
    assert SECRET not in log and "vnp_SecureHash" not in log
    assert not re.search(r"[0-9a-f]{128}", log)


def test_the_same_ipn_ten_times_concurrently_gives_one_success_event(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    setup: Setup,
    sandbox: SandboxGateway,
) -> None:
    url = database("payment")
    service = service_factory("payment", url, **setup.env(sandbox.url)).start()
    client = PaymentClient(service.target, token("service"))
    code = dossier_code()
    payment = ask_fee(kafka, client, code)
    with SandboxClient(sandbox.url) as gateway:
        query = gateway.pay(payment.redirect_url, deliver_ipn=False)["ipn_query"]
    barrier = threading.Barrier(10)

    def deliver(_: int) -> str:
        barrier.wait()
        return str(httpx.get(f"{setup.ipn_url}?{query}", timeout=30).json()["RspCode"])

    with ThreadPoolExecutor(10) as pool:
        answers = sorted(pool.map(deliver, range(10)))
    assert answers == ["00"] + ["02"] * 9
    wait_event(kafka, code, "vn.motcua.payment.succeeded.v1")
    engine = create_engine(url)
    with engine.connect() as conn:
        wait_for(
            lambda: (
                conn.execute(
                    text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                ).scalar_one()
                == 0
            ),
            30,
            0.1,
            "outbox drained",
        )
    engine.dispose()
    types = [t for t, _, _ in payment_events(kafka, code)]
    assert types == ["vn.motcua.payment.requested.v1", "vn.motcua.payment.succeeded.v1"]
    assert client.get(payment.id).receipt.number
    service.terminate()


# -- the API: idempotency, refunds, cancel, failure ---------------------------------------------
def test_idempotent_creates_refunds_cancel_and_failure_over_grpc(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    setup: Setup,
    sandbox: SandboxGateway,
) -> None:
    service = service_factory("payment", database("payment"), **setup.env(sandbox.url)).start()
    portal = PaymentClient(service.target, token("service"))
    officer = PaymentClient(service.target, token("officer", agency="SXD"))
    outsider = PaymentClient(service.target, token("officer", agency="STP"))
    citizen = PaymentClient(service.target, token("citizen", citizen_id=CITIZEN_ID))
    gateway = SandboxClient(sandbox.url)
    code = dossier_code()

    auto = ask_fee(kafka, portal, code, 100_000)  # made for the dossier's request
    portal.cancel(auto.id, "the portal pays with its own key")
    first = portal.create(code, 100_000, key="idem-1")
    again = portal.create(code, 100_000, key="idem-1")
    assert again.payment.id == first.payment.id and again.replayed and not first.replayed
    with pytest.raises(grpc.RpcError) as err:
        portal.create(code, 100_001, key="idem-1")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.payment.id in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        portal.create(code, -5, key="idem-2")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["amount_vnd"]

    payment = first.payment
    gateway.pay(payment.redirect_url)
    wait_event(kafka, code, "vn.motcua.payment.succeeded.v1")
    assert code_of(lambda: citizen.refund(payment.id, 1, "c")) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: outsider.refund(payment.id, 1, "o")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: outsider.get(payment.id)) == grpc.StatusCode.NOT_FOUND

    partial = officer.refund(payment.id, 30_000, "r1")
    assert partial.refund.state == payment_pb2.REFUND_STATE_SUCCEEDED
    assert partial.payment.refunded_vnd == 30_000
    rest = officer.refund(payment.id, 70_000, "r2")
    assert rest.payment.refunded_vnd == 100_000
    with pytest.raises(grpc.RpcError) as err:
        officer.refund(payment.id, 1, "r3")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "only 0 VND" in (err.value.details() or "")
    assert officer.refund(payment.id, 30_000, "r1").replayed

    # Cancel an open payment; a failed one; a declined refund.
    cancelled_code, failed_code, declined_code = dossier_code(), dossier_code(), dossier_code()
    open_payment = ask_fee(kafka, portal, cancelled_code)
    assert citizen.cancel(open_payment.id, "nhầm").state == payment_pb2.PAYMENT_STATE_CANCELLED
    assert gateway.try_pay(open_payment.redirect_url).status_code == 409
    assert code_of(lambda: citizen.cancel(open_payment.id)) == grpc.StatusCode.FAILED_PRECONDITION
    gateway.pay(ask_fee(kafka, portal, failed_code).redirect_url, "fail")
    declined = ask_fee(kafka, portal, declined_code)
    gateway.pay(declined.redirect_url)
    gateway.set_faults(refund="decline")
    assert officer.refund(declined.id, 5_000, "d1").refund.state == payment_pb2.REFUND_STATE_FAILED
    gateway.close()

    cancelled = wait_event(kafka, cancelled_code, "vn.motcua.payment.cancelled.v1")
    assert cancelled.reason == "nhầm" and cancelled.actor.role == 1  # ROLE_CITIZEN
    failed = wait_event(kafka, failed_code, "vn.motcua.payment.failed.v1")
    assert failed.payment.failure_code == "51"
    refund_failed = wait_event(kafka, declined_code, "vn.motcua.payment.refund_failed.v1")
    assert refund_failed.refund.failure_code == "09"
    wait_event(kafka, code, "vn.motcua.payment.refund_succeeded.v1")
    types = [t for t, _, _ in payment_events(kafka, code)]
    assert types == [
        "vn.motcua.payment.requested.v1",
        "vn.motcua.payment.cancelled.v1",
        "vn.motcua.payment.requested.v1",
        "vn.motcua.payment.succeeded.v1",
        "vn.motcua.payment.refund_succeeded.v1",
        "vn.motcua.payment.refund_succeeded.v1",
    ]
    [last] = [e for t, e, _ in payment_events(kafka, code)][-1:]
    assert last.refund.amount_vnd == 70_000 and last.payment.refunded_vnd == 100_000
    for client in (portal, officer, outsider, citizen):
        client.close()
    assert service.terminate() == 0


# -- timers -------------------------------------------------------------------------------------
def test_timers_settle_a_lost_ipn_and_expire_an_unpaid_payment(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    setup: Setup,
    sandbox: SandboxGateway,
) -> None:
    service = service_factory(
        "payment",
        database("payment"),
        **setup.env(
            sandbox.url,
            RECONCILE_INTERVAL_SECONDS="0.3",
            RECONCILE_AFTER_SECONDS="1",
            EXPIRY_INTERVAL_SECONDS="0.3",
            PAYMENT_EXPIRY_SECONDS="6",
        ),
    ).start()
    client = PaymentClient(service.target, token("service"))
    lost, unpaid = dossier_code(), dossier_code()
    paid_payment = ask_fee(kafka, client, lost)
    unpaid_payment = ask_fee(kafka, client, unpaid)
    with SandboxClient(sandbox.url) as gateway:
        gateway.pay(paid_payment.redirect_url, deliver_ipn=False)  # the IPN never comes
        settled = wait_event(kafka, lost, "vn.motcua.payment.succeeded.v1")
        assert settled.origin == events_pb2.ORIGIN_RECONCILIATION
        [ok] = [r for t, _, r in payment_events(kafka, lost) if t.endswith("succeeded.v1")]
        assert header(ok, "traceparent")  # the timer's span
        assert RECEIPT.fullmatch(settled.payment.receipt.number)
        expired = wait_event(kafka, unpaid, "vn.motcua.payment.expired.v1")
        assert expired.origin == events_pb2.ORIGIN_EXPIRY
        assert gateway.try_pay(unpaid_payment.redirect_url).status_code == 409
    assert client.get(unpaid_payment.id).state == payment_pb2.PAYMENT_STATE_EXPIRED
    assert metric(service, "motcua_payment_payments_total", outcome="expired") >= 1
    assert service.terminate() == 0
