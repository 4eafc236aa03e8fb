"""End to end: all four services as processes, real Kafka, PostgreSQL, SMTP, SMS, gateway.

Each path is what a citizen lives through; each asserts what they were told and that every
event of their dossier landed in the audit log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import create_engine, text

from dossier_client import CITIZEN_ID, document, submit_request
from harness import Kafka, Postgres, header, read_topic, wait_for
from monitoring_backend import dashboard_queries
from motcua.dossier.v1 import dossier_pb2
from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_payment.sandbox.client import SandboxClient
from suite import TOPICS, Suite, running_suite, transition, unique_email

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def suite(
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    token: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Suite]:
    with running_suite(kafka, postgres, signing_keys, token, tmp_path_factory.mktemp("suite")) as s:
        yield s


def _subjects(suite: Suite, email: str) -> list[str]:
    return [str(m["Subject"]) for m in suite.smtp.to(email)]


def _told(suite: Suite, email: str, *fragments: str) -> None:
    """Wait until the citizen got one email per fragment (each subject holds its fragment)."""

    def all_there() -> bool:
        subjects = _subjects(suite, email)
        return all(any(f in s for s in subjects) for f in fragments)

    wait_for(all_there, 90, 0.3, f"emails {fragments} to {email}")


def _event_ids(suite: Suite, code: str) -> set[str]:
    """This suite's events of one dossier: codes repeat across tests (fresh databases), so
    records from before the suite started belong to other tests."""
    ids = set()
    for topic in TOPICS:
        for record in read_topic(suite.kafka.bootstrap, topic):
            if record.key == code.encode() and record.timestamp >= suite.started_ms:
                ids.add(header(record, "ce_id").decode())
    return ids


def _audited(suite: Suite, code: str) -> list[str]:
    engine = create_engine(suite.urls["audit"])
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event_id FROM audit_entries WHERE dossier_code = :c"), {"c": code}
        ).all()
    engine.dispose()
    return [r[0] for r in rows]


def _all_audited_once(suite: Suite, code: str) -> None:
    def done() -> bool:
        return set(_audited(suite, code)) >= _event_ids(suite, code)

    wait_for(done, 90, 0.5, f"every event of {code} in the audit log")
    audited = _audited(suite, code)
    assert len(audited) == len(set(audited)), "an event was audited twice"


def test_fee_dossier_submit_to_result_returned(suite: Suite) -> None:
    email = unique_email()
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency="STP")
    d = citizen.submit(submit_request("HT-004", f"e2e-{uuid.uuid4()}", email=email)).dossier
    code = d.code
    _told(suite, email, "Tiếp nhận hồ sơ")
    d = transition(officer, d, "receive")
    d = transition(officer, d, "request_payment")
    _told(suite, email, "đã được tiếp nhận", "đề nghị nộp phí")

    with suite.channel("payment") as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)

        def pending() -> payment_pb2.Payment | None:
            listed = payments.ListPayments(
                payment_pb2.ListPaymentsRequest(dossier_code=code),
                metadata=citizen.metadata,
                timeout=10,
            ).payments
            return next((p for p in listed if p.redirect_url), None)

        payment = wait_for(pending, 60, 0.2, "the payment request")
        with SandboxClient(suite.sandbox.url) as gateway:
            assert gateway.pay(payment.redirect_url)["ipn"]["body"]["RspCode"] == "00"
        wait_for(
            lambda: officer.get(code).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
            60,
            0.2,
            "the dossier to leave payment required",
        )
        receipt = payments.GetPayment(
            payment_pb2.GetPaymentRequest(payment_id=payment.id),
            metadata=citizen.metadata,
            timeout=10,
        ).payment.receipt.number
    _told(suite, email, "đã nhận thanh toán")
    d = transition(officer, officer.get(code), "approve")
    d = transition(officer, d, "return_result")
    assert d.status == dossier_pb2.DOSSIER_STATUS_RESULT_RETURNED
    _told(suite, email, "đã có kết quả", "đã trả kết quả")
    (paid_mail,) = [m for m in suite.smtp.to(email) if "đã nhận thanh toán" in m["Subject"]]
    assert receipt and receipt in paid_mail.get_content()
    _all_audited_once(suite, code)


def test_withdrawn_by_the_citizen(suite: Suite) -> None:
    email = unique_email()
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency="PHOIAN")
    d = citizen.submit(submit_request("HT-001", f"w-{uuid.uuid4()}", email=email)).dossier
    d = transition(officer, d, "receive")
    d = citizen.stub.WithdrawDossier(
        dossier_pb2.WithdrawDossierRequest(
            code=d.code, reason="Nộp nhầm thủ tục", expected_version=d.version
        ),
        metadata=citizen.metadata,
        timeout=30,
    ).dossier
    assert d.status == dossier_pb2.DOSSIER_STATUS_WITHDRAWN
    _told(suite, email, "Tiếp nhận hồ sơ", "đã được tiếp nhận", "đã được rút")
    _all_audited_once(suite, d.code)


def test_rejected_at_intake_with_the_reason(suite: Suite) -> None:
    email = unique_email()
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency="PHOIAN")
    d = citizen.submit(submit_request("HT-001", f"r-{uuid.uuid4()}", email=email)).dossier
    reason = "Tờ khai không có chữ ký của người yêu cầu"
    d = transition(officer, d, "reject", reason)
    assert d.status == dossier_pb2.DOSSIER_STATUS_NOT_RECEIVED
    _told(suite, email, "không được tiếp nhận")
    (mail,) = [m for m in suite.smtp.to(email) if "không được tiếp nhận" in m["Subject"]]
    assert reason in mail.get_content()
    _all_audited_once(suite, d.code)


def test_supplement_requested_and_answered(suite: Suite) -> None:
    email = unique_email()
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency="PHOIAN")
    d = citizen.submit(submit_request("HT-001", f"s-{uuid.uuid4()}", email=email)).dossier
    d = transition(officer, d, "receive")
    d = transition(officer, d, "process")
    missing = "Bản sao giấy chứng nhận kết hôn của cha mẹ"
    d = transition(officer, d, "request_supplement", missing)
    _told(suite, email, "cần bổ sung")
    (mail,) = [m for m in suite.smtp.to(email) if "cần bổ sung" in m["Subject"]]
    assert missing in mail.get_content()
    d = citizen.stub.SubmitSupplement(
        dossier_pb2.SubmitSupplementRequest(
            code=d.code,
            documents=[document("Bản sao giấy chứng nhận kết hôn")],
            expected_version=d.version,
        ),
        metadata=citizen.metadata,
        timeout=30,
    ).dossier
    assert d.status == dossier_pb2.DOSSIER_STATUS_PROCESSING
    d = transition(officer, d, "approve")
    _told(suite, email, "đã có kết quả")
    _all_audited_once(suite, d.code)


def test_late_dossier_gets_the_apology_with_a_new_date(suite: Suite) -> None:
    """The deadline scanner runs as the dossier service's timer would, some days later.

    It runs in-process on the dossier service's own database, with the clock moved on; the
    running dossier process's relay publishes what it writes.
    """
    from motcua_dossier.service import DossierService
    from motcua_dossier.settings import DossierSettings
    from motcua_kit.service import ServiceHost

    email = unique_email()
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency="PHOIAN")
    d = citizen.submit(submit_request("HT-001", f"l-{uuid.uuid4()}", email=email)).dossier
    d = transition(officer, d, "receive")
    later = datetime.now(UTC) + timedelta(days=10)
    host = ServiceHost(
        DossierService,
        DossierSettings(database_url=suite.urls["dossier"]),
        overrides={"clock": lambda: later},
    )
    service = host.service
    assert isinstance(service, DossierService)
    assert service.scan_deadlines() >= 1
    host.engine.dispose()
    _told(suite, email, "Thư xin lỗi")
    (mail,) = [m for m in suite.smtp.to(email) if "Thư xin lỗi" in m["Subject"]]
    late = officer.get(d.code)
    assert late.overdue
    y, m, day = late.appointment_date.split("-")
    assert f"{day}/{m}/{y}" in str(mail["Subject"])
    _all_audited_once(suite, d.code)


def test_the_dashboard_uses_only_metrics_the_running_services_expose(suite: Suite) -> None:
    """Scrape every running service and compare with every metric the dashboard queries."""
    import re
    from urllib.request import urlopen

    exposed: set[str] = set()
    for proc in suite.services.values():
        body = urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=10).read()
        for line in body.decode().splitlines():
            if line.startswith("# TYPE "):
                name, kind = line.split()[2:4]
                exposed.add(name)
                suffixes = {
                    "counter": ("_total", "_created"),
                    "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("_sum", "_count", "_created"),
                }.get(kind, ())
                exposed.update(name + s for s in suffixes)
    exprs = dashboard_queries()
    referenced = {m for e in exprs for m in re.findall(r"\bmotcua_[a-z0-9_]+\b", e)}
    assert referenced, "the dashboard queries no motcua metric"
    assert referenced <= exposed, sorted(referenced - exposed)


def test_a_fee_is_paid_once_in_full_for_its_own_dossier(suite: Suite) -> None:
    """The payment abuses found by trying the running suite as an attacker (issue 14): each
    is refused, and neither dossier moves nor is its citizen told of a payment until the
    citizen pays the dossier's own fee in full."""
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    stp = suite.dossiers("officer", agency="STP")
    phaichau = suite.dossiers("officer", agency="PHAICHAU")
    mail_a, mail_b = unique_email(), unique_email()
    # A PHAICHAU dossier whose fee is 2,000 VND, and an STP one whose fee is 8,000 VND.
    a = citizen.submit(submit_request("CT-001", f"fa-{uuid.uuid4()}", email=mail_a)).dossier
    a = transition(phaichau, transition(phaichau, a, "receive"), "request_payment")
    b = citizen.submit(submit_request("HT-004", f"fb-{uuid.uuid4()}", email=mail_b)).dossier
    b = transition(stp, transition(stp, b, "receive"), "request_payment")
    _told(suite, mail_a, "đề nghị nộp phí 2.000")
    _told(suite, mail_b, "đề nghị nộp phí 8.000")
    admin = suite.token("admin")
    anyone = suite.dossiers("admin")

    with suite.channel("payment") as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)

        def call(method: str, request: object, token: str) -> object:
            metadata = [("authorization", f"Bearer {token}")]
            return getattr(payments, method)(request, metadata=metadata, timeout=10)

        def listed(code: str) -> list[payment_pb2.Payment]:
            request = payment_pb2.ListPaymentsRequest(dossier_code=code)
            return list(call("ListPayments", request, admin).payments)  # type: ignore[attr-defined]

        def refused(method: str, request: object, token: str) -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as err:
                call(method, request, token)
            return err.value.code()

        [auto_a] = wait_for(lambda: listed(a.code), 60, 0.2, "dossier A's payment")
        [auto_b] = wait_for(lambda: listed(b.code), 60, 0.2, "dossier B's payment")
        stp_officer = suite.token("officer", agency="STP")

        def create(code: str, amount: int, agency: str = "STP") -> payment_pb2.CreatePaymentRequest:
            return payment_pb2.CreatePaymentRequest(
                dossier_code=code,
                agency_code=agency,
                amount_vnd=amount,
                idempotency_key=uuid.uuid4().hex,
            )

        # 1. An officer of STP pays 1 VND for PHAICHAU's dossier, or cancels its payment.
        assert refused("CreatePayment", create(a.code, 1), stp_officer) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        cancel_a = payment_pb2.CancelPaymentRequest(payment_id=auto_a.id, reason="x")
        assert refused("CancelPayment", cancel_a, stp_officer) == grpc.StatusCode.NOT_FOUND
        # 2. Within STP: cancel the open 8,000 VND payment, then ask for 1 VND.
        cancel_b = payment_pb2.CancelPaymentRequest(payment_id=auto_b.id, reason="abuse")
        call("CancelPayment", cancel_b, stp_officer)
        assert refused("CreatePayment", create(b.code, 1), stp_officer) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        # 3. 5,000,000 VND for a dossier that does not exist.
        ghost = create("STP-991231-5977", 5_000_000)
        assert refused("CreatePayment", ghost, stp_officer) == grpc.StatusCode.NOT_FOUND
        assert listed("STP-991231-5977") == []
        assert [p.amount_vnd for p in listed(a.code)] == [2_000]
        assert [p.amount_vnd for p in listed(b.code)] == [8_000]
        for code in (a.code, b.code):
            assert anyone.get(code).status == dossier_pb2.DOSSIER_STATUS_PAYMENT_REQUIRED

        # The citizens pay their own fees, in full: A's open payment, B's recreated one
        # (created without an amount: the dossier's fee).
        again = call("CreatePayment", create(b.code, 0, agency=""), stp_officer).payment  # type: ignore[attr-defined]
        assert again.amount_vnd == 8_000
        with SandboxClient(suite.sandbox.url) as gateway:
            gateway.pay(auto_a.redirect_url)
            gateway.pay(again.redirect_url)
    for code in (a.code, b.code):
        wait_for(
            lambda code=code: anyone.get(code).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
            60,
            0.2,
            f"{code} paid by its own fee",
        )
    _told(suite, mail_a, "đã nhận thanh toán 2.000")
    _told(suite, mail_b, "đã nhận thanh toán 8.000")
    for mail in (mail_a, mail_b):
        paid = [s for s in _subjects(suite, mail) if "đã nhận thanh toán" in s]
        assert len(paid) == 1, paid


def test_the_pay_link_in_the_sms_reaches_the_gateways_payment_page(suite: Suite) -> None:
    """The SMS carries the short pay link whole; following it (as the citizen's phone would)
    lands on the gateway's payment page for the dossier's fee; once paid, it leads nowhere."""
    phone = "09" + uuid.uuid4().int.__str__()[:8]
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency="STP")
    d = citizen.submit(submit_request("HT-004", f"sms-{uuid.uuid4()}", phone=phone)).dossier
    d = transition(officer, transition(officer, d, "receive"), "request_payment")

    def pay_sms() -> str | None:
        for provider in (suite.sms_a, suite.sms_b):
            for message in provider.messages_to("84" + phone[1:]):
                if d.code in message["text"] and "Thanh toan tai:" in message["text"]:
                    return str(message["text"])
        return None

    text = wait_for(pay_sms, 60, 0.2, "the payment SMS")
    assert len(text) <= 2 * 153, text  # two GSM-7 segments at most
    [link] = [w for w in text.split() if w.startswith("http")]
    assert "/p/" in link and not link.endswith(("...", "…")), text
    page = httpx.get(link, follow_redirects=True, timeout=10)
    assert page.status_code == 200, page.text
    assert page.url.host == "127.0.0.1" and str(page.url).startswith(suite.sandbox.url)
    assert "vnp_Amount=800000" in str(page.url)  # 8,000 VND, in the gateway's × 100
    first = httpx.get(link, timeout=10)
    assert first.status_code in (302, 303) and first.headers["location"].startswith(
        suite.sandbox.url
    )
    with SandboxClient(suite.sandbox.url) as gateway:
        gateway.pay(first.headers["location"])
    wait_for(
        lambda: officer.get(d.code).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
        60,
        0.2,
        "the dossier paid",
    )
    assert httpx.get(link, timeout=10).status_code == 410  # paid: the link is spent
