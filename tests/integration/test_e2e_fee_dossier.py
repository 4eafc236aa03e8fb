"""End to end across services: a fee-bearing dossier is paid through the sandbox gateway.

dossier (receive, request payment) → motcua.dossier.v1 → payment (creates the payment request)
→ the citizen pays at the sandbox gateway → signed IPN → payment succeeded, receipt issued →
motcua.payment.v1 → dossier leaves "payment required" → officer finishes → result returned;
the audit service records every event of both topics.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, text

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import Kafka, ServiceProcess, free_port, wait_for
from motcua.dossier.v1 import dossier_pb2
from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.sandbox.client import SandboxClient

pytestmark = pytest.mark.integration
MERCHANT = "MOTCUA01"
SECRET = "e2e-hash-secret-0123456789abcdef"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[SandboxGateway, Path, int]]:
    secret_file = tmp_path / "gateway.secret"
    secret_file.write_text(SECRET)
    callback_port = free_port()
    ipn = f"http://127.0.0.1:{callback_port}/payment/sandbox/ipn"
    with SandboxGateway(merchants=[Merchant(MERCHANT, SECRET.encode(), ipn)]) as gw:
        yield gw, secret_file, callback_port


def _transition(client: DossierClient, d: dossier_pb2.Dossier, action: str) -> dossier_pb2.Dossier:
    return client.stub.TransitionDossier(
        dossier_pb2.TransitionDossierRequest(
            code=d.code, action=action, comment="", expected_version=d.version
        ),
        metadata=client.metadata,
        timeout=30,
    ).dossier


def test_fee_bearing_dossier_is_paid_and_returned(
    own_kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    gateway: tuple[SandboxGateway, Path, int],
) -> None:
    sandbox, secret_file, callback_port = gateway
    audit_url = database("audit")
    # A broker of its own: dossier codes repeat across tests (fresh databases), and another
    # test's payment events for the same code are, rightly, not this dossier's payment.
    broker = {"KAFKA_BOOTSTRAP": own_kafka.bootstrap}
    dossier = service_factory("dossier", database("dossier"), **broker).start()
    payment = service_factory(
        "payment",
        database("payment"),
        **broker,
        GATEWAY_BASE_URL=sandbox.url,
        GATEWAY_MERCHANT_CODE=MERCHANT,
        GATEWAY_HASH_SECRET_FILE=str(secret_file),
        CALLBACK_PORT=str(callback_port),
    ).start()
    audit = service_factory("audit", audit_url, **broker).start()

    citizen = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
    officer = DossierClient(dossier.target, token("officer", agency="STP"))
    d = citizen.submit(submit_request("HT-004", f"e2e-{uuid.uuid4()}")).dossier
    assert d.fee_vnd == 8000
    d = _transition(officer, d, "receive")
    d = _transition(officer, d, "request_payment")
    assert d.status == dossier_pb2.DOSSIER_STATUS_PAYMENT_REQUIRED

    pay_md = [("authorization", f"Bearer {token('citizen', citizen_id=CITIZEN_ID)}")]
    with grpc.insecure_channel(payment.target) as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)

        def requested() -> payment_pb2.Payment | None:
            listed = payments.ListPayments(
                payment_pb2.ListPaymentsRequest(dossier_code=d.code), metadata=pay_md, timeout=10
            ).payments
            return next((p for p in listed if p.redirect_url), None)

        pending = wait_for(requested, 60, 0.2, "the payment request for the dossier")
        assert pending.amount_vnd == 8000
        with SandboxClient(sandbox.url) as client:
            result = client.pay(pending.redirect_url)
        assert result["ipn"]["body"]["RspCode"] == "00"

        wait_for(
            lambda: officer.get(d.code).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
            60,
            0.2,
            "the dossier to leave payment required",
        )
        paid = payments.GetPayment(
            payment_pb2.GetPaymentRequest(payment_id=pending.id),
            metadata=pay_md,
            timeout=10,
        ).payment
        assert paid.state == payment_pb2.PAYMENT_STATE_SUCCEEDED
        assert paid.receipt.number.startswith("STP-")

    d = officer.get(d.code)
    d = _transition(officer, d, "approve")
    d = _transition(officer, d, "return_result")
    assert d.status == dossier_pb2.DOSSIER_STATUS_RESULT_RETURNED

    expected = {
        "vn.motcua.dossier.submitted.v1",
        "vn.motcua.dossier.received.v1",
        "vn.motcua.dossier.payment_requested.v1",
        "vn.motcua.payment.requested.v1",
        "vn.motcua.payment.succeeded.v1",
        "vn.motcua.dossier.paid.v1",
        "vn.motcua.dossier.processed.v1",
        "vn.motcua.dossier.result_returned.v1",
    }
    engine = create_engine(audit_url)

    def trail() -> set[str]:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_type FROM audit_entries WHERE dossier_code = :c"),
                {"c": d.code},
            ).all()
        return {r[0] for r in rows}

    wait_for(lambda: expected <= trail(), 60, 0.3, "the whole trail in the audit log")
    engine.dispose()
    for proc in (dossier, payment, audit):
        assert proc.terminate() == 0
