"""The payment service's use cases in-process, on a real database (SQLite and PostgreSQL),
with the sandbox gateway and the callback endpoint as real HTTP servers (no broker: the
outbox table is where the events are checked)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from harness import free_port
from motcua.payment.v1 import events_pb2, payment_pb2
from motcua_kit.auth import Principal
from motcua_kit.consumer import PermanentError
from motcua_kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from motcua_kit.service import ServiceHost
from motcua_payment import events
from motcua_payment.adapters import db
from motcua_payment.domain.fees import DossierFee, FeeState, PaymentOrder
from motcua_payment.domain.payment import Payer, Payment, new_id
from motcua_payment.domain.states import PaymentState, RefundState
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.sandbox.client import SandboxClient
from motcua_payment.service import PaymentService
from motcua_payment.settings import PaymentSettings
from motcua_payment.testing import dossier_event, payment_requested_event, signed_notification

SECRET = "usecase-hash-secret-0123456789"
MERCHANT = "MOTCUA01"
CITIZEN_ID = "079203004567"
SERVICE = Principal("portal", frozenset({"service"}))
OFFICER = Principal("officer-sxd", frozenset({"officer"}), agency_code="SXD")
OTHER_OFFICER = Principal("officer-stp", frozenset({"officer"}), agency_code="STP")
ADMIN = Principal("admin-1", frozenset({"admin"}))
CITIZEN = Principal("citizen-1", frozenset({"citizen"}), citizen_id=CITIZEN_ID)
OTHER_CITIZEN = Principal("citizen-2", frozenset({"citizen"}), citizen_id="079203009999")


class Clock:
    """Real time, shifted on demand (expiry, year boundaries)."""

    def __init__(self) -> None:
        self.shift = timedelta(0)
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        return (self.fixed or datetime.now(UTC)) + self.shift


@dataclass
class World:
    service: PaymentService
    host: ServiceHost
    sandbox: SandboxGateway
    client: SandboxClient
    clock: Clock
    callback_url: str

    # -- helpers -----------------------------------------------------------------------------
    def create(
        self,
        code: str = "SXD-260316-0001",
        amount: int = 150_000,
        *,
        key: str = "",
        agency: str = "SXD",
        principal: Principal = SERVICE,
    ) -> Payment:
        self.open_fee(code, amount, agency)
        payment, _ = self.service.create_payment(principal, fee(code), key or new_id())
        return payment

    def open_fee(
        self, code: str = "SXD-260316-0001", amount: int = 150_000, agency: str = "SXD"
    ) -> None:
        """What the dossier's payment_requested event leaves behind: an open fee request."""
        fact = DossierFee(code, agency, "TEST-1", PAYER, FeeState.OPEN, amount, "event-1")
        with self.host.sessions() as session, session.begin():
            self.service.repository.save_fee(session, fact, self.clock())

    def ipn(self, query: str) -> dict[str, Any]:
        return httpx.get(f"{self.callback_url}/payment/sandbox/ipn?{query}", timeout=30).json()

    def notification(self, payment: Payment, **changes: Any) -> str:
        fields: dict[str, Any] = {
            "secret": SECRET.encode(),
            "merchant": MERCHANT,
            "payment_id": payment.id,
            "amount_vnd": payment.amount_vnd,
            "transaction_no": "9" + new_id()[:7],
            "pay_date": self.clock(),
        }
        fields.update(changes)
        return signed_notification(**fields)

    def get(self, payment_id: str) -> Payment:
        return self.service.get_payment(ADMIN, payment_id)

    def outbox(self, code: str | None = None) -> list[tuple[str, events_pb2.PaymentEvent]]:
        with self.host.sessions() as session:
            query = select(db.outbox.c.event_type, db.outbox.c.event_key, db.outbox.c.payload)
            rows = session.execute(query.order_by(db.outbox.c.id)).all()
        return [
            (r.event_type, events_pb2.PaymentEvent.FromString(r.payload))
            for r in rows
            if code is None or r.event_key == code
        ]

    def count(self, table: Any) -> int:
        with self.host.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(table)) or 0)

    def history(self, payment_id: str) -> list[tuple[str | None, str, str]]:
        with self.host.sessions() as session:
            return self.service.repository.history(session, payment_id)


PAYER = Payer.validated("Nguyễn Thị Thu Hà", CITIZEN_ID, "0905123456", "thuha@example.vn")


def fee(code: str = "SXD-260316-0001", amount: int = 0, agency: str = "") -> PaymentOrder:
    """What a caller sends: the dossier, and (optionally) what it believes the fee is."""
    return PaymentOrder.validated(dossier_code=code, agency_code=agency, amount_vnd=amount)


def rejections(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("motcua_payment_callback_rejections_total", {"reason": reason})
        or 0.0
    )


@pytest.fixture
def world(database) -> Iterator[World]:
    url = database("payment")
    port = free_port()
    clock = Clock()
    callback_url = f"http://127.0.0.1:{port}"
    sandbox = SandboxGateway(
        merchants=[Merchant(MERCHANT, SECRET.encode(), f"{callback_url}/payment/sandbox/ipn")],
        clock=clock,
    ).start()
    settings = PaymentSettings(
        database_url=url,
        gateway_base_url=sandbox.url,
        gateway_merchant_code=MERCHANT,
        gateway_hash_secret=SECRET,
        callback_port=port,
        reconcile_after_seconds=0,
    )
    host = ServiceHost(PaymentService, settings, overrides={"clock": clock})
    host.migrate()
    service = host.service
    assert isinstance(service, PaymentService)
    service.start_callbacks()
    client = SandboxClient(sandbox.url)
    try:
        world = World(service, host, sandbox, client, clock, callback_url)
        world.open_fee()  # SXD-260316-0001, 150.000 ₫
        yield world
    finally:
        client.close()
        service.stop_callbacks()
        sandbox.stop()
        host.engine.dispose()


# -- creation ----------------------------------------------------------------------------------
def test_create_payment_is_idempotent_on_key_and_body(world: World) -> None:
    first, replayed = world.service.create_payment(SERVICE, fee(), "key-1")
    assert not replayed and first.state is PaymentState.PENDING
    again, replayed = world.service.create_payment(SERVICE, fee(), "key-1")
    assert replayed and again.id == first.id
    with pytest.raises(AlreadyExists, match=first.id):
        world.service.create_payment(SERVICE, fee(amount=150_001), "key-1")
    assert [t for t, _ in world.outbox()] == [events.REQUESTED]
    # The same key from another caller is another request (keys are scoped to the caller):
    # here refused because the dossier already has an open payment.
    with pytest.raises(FailedPrecondition, match="open payment"):
        world.service.create_payment(ADMIN, fee(), "key-1")
    assert world.count(db.payments) == 1


def test_concurrent_creates_with_one_key_make_one_payment(world: World) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda _: world.service.create_payment(SERVICE, fee(), "same-key"), range(6))
        )
    assert len({p.id for p, _ in results}) == 1
    assert sorted(r for _, r in results) == [False] + [True] * 5
    assert world.count(db.payments) == 1 and len(world.outbox()) == 1


def test_requested_event_carries_amount_redirect_url_and_payer(world: World) -> None:
    payment = world.create()
    [(event_type, event)] = world.outbox()
    assert event_type == events.REQUESTED
    assert event.payment.amount_vnd == 150_000 and event.payment.currency == "VND"
    assert event.payment.redirect_url == payment.redirect_url
    assert event.payment.redirect_url.startswith(world.sandbox.url + "/paymentv2/vpcpay.html?")
    assert event.payment.payer.email == "thuha@example.vn"
    assert event.previous_state == payment_pb2.PAYMENT_STATE_CREATED
    assert event.origin == events_pb2.ORIGIN_API
    assert world.history(payment.id) == [
        (None, "create", "created"),
        ("created", "start", "pending"),
    ]


def test_bad_input_names_the_field_and_writes_nothing(world: World) -> None:
    with pytest.raises(InvalidArgument) as err:
        world.service.create_payment(SERVICE, fee(), "")
    assert err.value.field == "idempotency_key"
    with pytest.raises(InvalidArgument) as err:
        world.service.get_payment(ADMIN, "nope")
    assert err.value.field == "payment_id"
    with pytest.raises(InvalidArgument) as err:
        world.service.refund_payment(OFFICER, new_id(), 1.5, "r", "k")
    assert err.value.field == "amount_vnd"
    assert world.count(db.payments) == 0 and world.count(db.outbox) == 0


# -- the dossier's event -----------------------------------------------------------------------
def handle(world: World, event: Any) -> None:
    message = event.parse(
        __import__("motcua.dossier.v1.events_pb2", fromlist=["x"]).DossierStatusChanged
    )
    with world.host.sessions() as session, session.begin():
        world.service.on_payment_requested(event, message, session)


def test_a_fee_bearing_dossier_gets_one_payment_a_free_one_none(world: World) -> None:
    handle(world, payment_requested_event("SXD-260316-0007", "SXD", 500_000))
    handle(world, payment_requested_event("SXD-260316-0008", "SXD", None))
    handle(world, payment_requested_event("SXD-260316-0009", "SXD", 0))
    [payment] = world.service.list_payments(ADMIN, "SXD-260316-0007")
    assert payment.amount_vnd == 500_000 and payment.state is PaymentState.PENDING
    assert payment.payer.citizen_id == CITIZEN_ID and payment.created_by.subject == "officer-1"
    assert world.service.list_payments(ADMIN, "SXD-260316-0008") == []
    assert world.service.list_payments(ADMIN, "SXD-260316-0009") == []
    # Asked again (another event id): the open payment stands, no second one.
    handle(world, payment_requested_event("SXD-260316-0007", "SXD", 500_000))
    assert len(world.service.list_payments(ADMIN, "SXD-260316-0007")) == 1
    [(event_type, event)] = world.outbox()
    assert event_type == events.REQUESTED and event.origin == events_pb2.ORIGIN_DOSSIER_EVENT


def test_an_unusable_event_is_poison(world: World) -> None:
    with pytest.raises(PermanentError, match="citizen_id"):
        handle(world, payment_requested_event("SXD-260316-0010", "SXD", 1_000, citizen_id="1"))
    with pytest.raises(PermanentError, match=r"dossier\.fee_vnd"):
        handle(world, payment_requested_event("SXD-260316-0011", "SXD", -5))
    assert world.count(db.payments) == 0


def test_a_batch_of_requests_is_the_same_as_one_by_one(world: World) -> None:
    """The consumer's batch call: one payment per fee-bearing dossier, a dossier asked twice in
    the batch still gets one, a free one none, and the events keep the batch's order."""
    from motcua.dossier.v1.events_pb2 import DossierStatusChanged

    events_in = [
        payment_requested_event("SXD-260316-0021", "SXD", 10_000),
        payment_requested_event("SXD-260316-0022", "SXD", None),
        payment_requested_event("SXD-260316-0023", "SXD", 30_000),
        payment_requested_event("SXD-260316-0021", "SXD", 10_000),  # asked again
    ]
    pairs = [(e, e.parse(DossierStatusChanged)) for e in events_in]
    with world.host.sessions() as session, session.begin():
        world.service.on_payments_requested(pairs, session)
    [first] = world.service.list_payments(ADMIN, "SXD-260316-0021")
    [third] = world.service.list_payments(ADMIN, "SXD-260316-0023")
    assert world.service.list_payments(ADMIN, "SXD-260316-0022") == []
    assert (first.amount_vnd, third.amount_vnd) == (10_000, 30_000)
    assert [(t, e.payment.id) for t, e in world.outbox()] == [
        (events.REQUESTED, first.id),
        (events.REQUESTED, third.id),
    ]
    assert world.history(third.id) == [(None, "create", "created"), ("created", "start", "pending")]


def test_a_poison_event_fails_its_batch_call_and_writes_nothing(world: World) -> None:
    """The runner then replays the records one by one, so only the poison is dead-lettered."""
    from motcua.dossier.v1.events_pb2 import DossierStatusChanged

    events_in = [
        payment_requested_event("SXD-260316-0031", "SXD", 10_000),
        payment_requested_event("SXD-260316-0032", "SXD", 1_000, citizen_id="1"),
    ]
    pairs = [(e, e.parse(DossierStatusChanged)) for e in events_in]
    with (
        pytest.raises(PermanentError, match="citizen_id"),
        world.host.sessions() as session,
        session.begin(),
    ):
        world.service.on_payments_requested(pairs, session)
    assert world.count(db.payments) == 0 and world.outbox() == []


# -- callbacks ---------------------------------------------------------------------------------
def test_a_valid_ipn_settles_with_a_receipt(world: World) -> None:
    payment = world.create()
    result = world.client.pay(payment.redirect_url)
    assert result["ipn"]["body"] == {"RspCode": "00", "Message": "Confirm Success"}
    paid = world.get(payment.id)
    assert paid.state is PaymentState.SUCCEEDED
    assert paid.gateway_transaction_id == result["transaction_no"]
    year = world.clock().astimezone(__import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh")).year
    assert paid.receipt is not None and paid.receipt.number == f"SXD-{year}-000001"
    types = [t for t, _ in world.outbox()]
    assert types == [events.REQUESTED, events.SUCCEEDED]
    event = world.outbox()[-1][1]
    assert event.payment.receipt.number == paid.receipt.number
    assert event.origin == events_pb2.ORIGIN_GATEWAY_NOTIFICATION


def _forgeries(world: World, payment: Payment) -> list[tuple[str, str, str]]:
    """(reason, query, expected RspCode) for each kind of forged notification."""
    good = world.notification(payment)
    return [
        ("bad_signature", world.notification(payment, secret=b"attacker-guess-0123456789"), "97"),
        ("bad_signature", good.replace("vnp_Amount=", "vnp_Amount=1"), "97"),
        (
            "stale_timestamp",
            world.notification(payment, pay_date=world.clock() - timedelta(hours=1)),
            "99",
        ),
        (
            "stale_timestamp",
            world.notification(payment, pay_date=world.clock() + timedelta(hours=1)),
            "99",
        ),
        ("amount_mismatch", world.notification(payment, amount_vnd=payment.amount_vnd - 1), "04"),
        ("currency_mismatch", world.notification(payment, currency="USD"), "04"),
        ("unknown_reference", world.notification(payment, payment_id=new_id()), "01"),
        ("unknown_reference", world.notification(payment, payment_id="../../etc"), "01"),
        ("malformed", good + "&vnp_Amount=100", "99"),
        ("malformed", world.notification(payment, extra={"vnp_PayDate": "yesterday"}), "99"),
    ]


def test_forged_notifications_are_refused_counted_and_change_nothing(world: World, caplog) -> None:
    caplog.set_level("WARNING")
    payment = world.create()
    before = (world.get(payment.id), world.outbox(), world.history(payment.id))
    for reason, query, code in _forgeries(world, payment):
        counted = rejections(reason)
        answer = world.ipn(query)
        assert answer["RspCode"] == code, reason
        assert rejections(reason) == counted + 1, reason
        assert (world.get(payment.id), world.outbox(), world.history(payment.id)) == before, reason
        assert world.count(db.gateway_notices) == 0
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "callback refused" in logged
    assert SECRET not in logged and "vnp_SecureHash" not in logged
    assert not re.search(r"[0-9a-f]{128}", logged)  # no signature either


def test_a_replayed_notification_is_refused(world: World) -> None:
    payment = world.create()
    query = world.notification(payment)
    assert world.ipn(query)["RspCode"] == "00"
    after = (world.get(payment.id), world.outbox())
    counted = rejections("replay")
    assert world.ipn(query)["RspCode"] == "02"
    assert rejections("replay") == counted + 1
    assert (world.get(payment.id), world.outbox()) == after


def test_money_for_a_closed_payment_is_a_state_conflict(world: World) -> None:
    payment = world.create()
    world.service.cancel_payment(SERVICE, payment.id, "wrong dossier")
    before = (world.get(payment.id), world.outbox())
    counted = rejections("state_conflict")
    assert world.ipn(world.notification(payment))["RspCode"] == "02"
    assert rejections("state_conflict") == counted + 1
    assert (world.get(payment.id), world.outbox()) == before


def test_the_same_ipn_ten_times_concurrently_settles_once(world: World) -> None:
    payment = world.create()
    result = world.client.pay(payment.redirect_url, deliver_ipn=False)
    barrier = threading.Barrier(10)

    def deliver(_: int) -> str:
        barrier.wait()
        return str(world.ipn(result["ipn_query"])["RspCode"])

    with ThreadPoolExecutor(10) as pool:
        codes = sorted(pool.map(deliver, range(10)))
    assert codes == ["00"] + ["02"] * 9
    assert [t for t, _ in world.outbox()].count(events.SUCCEEDED) == 1
    assert world.count(db.gateway_notices) == 1
    assert world.history(payment.id)[-1] == ("pending", "succeed", "succeeded")
    assert len(world.history(payment.id)) == 3


def test_a_failed_payment_publishes_failed(world: World) -> None:
    payment = world.create()
    world.client.pay(payment.redirect_url, "cancel")
    failed = world.get(payment.id)
    assert failed.state is PaymentState.FAILED and failed.failure_code == "24"
    assert failed.receipt is None
    assert [t for t, _ in world.outbox()] == [events.REQUESTED, events.FAILED]


def test_return_page_shows_what_the_service_knows(world: World) -> None:
    payment = world.create()
    result = world.client.pay(payment.redirect_url, deliver_ipn=False)
    return_url = result["return_url"]
    assert return_url.startswith(f"{world.callback_url}/payment/sandbox/return?")
    page = httpx.get(return_url)  # the IPN was lost: the return asks the gateway itself
    assert page.status_code == 200 and "Thanh toán thành công" in page.text
    paid = world.get(payment.id)
    assert paid.state is PaymentState.SUCCEEDED and paid.receipt is not None
    assert paid.receipt.number in page.text
    assert world.outbox()[-1][1].origin == events_pb2.ORIGIN_RECONCILIATION
    counted = rejections("bad_signature")
    forged = httpx.get(return_url.replace("vnp_ResponseCode=00", "vnp_ResponseCode=01"))
    assert forged.status_code == 400 and rejections("bad_signature") == counted + 1


# -- reconciliation and expiry -----------------------------------------------------------------
def test_reconciliation_settles_a_payment_whose_ipn_never_came(world: World) -> None:
    lost = world.create("SXD-260316-0001")
    unpaid = world.create("SXD-260316-0002")
    world.client.pay(lost.redirect_url, deliver_ipn=False)
    httpx.get(unpaid.redirect_url)  # opened, not paid
    assert world.service.reconcile() == 1
    assert world.get(lost.id).state is PaymentState.SUCCEEDED
    assert world.get(unpaid.id).state is PaymentState.PENDING
    assert world.service.reconcile() == 0
    event = world.outbox("SXD-260316-0001")[-1][1]
    assert event.payment.state == payment_pb2.PAYMENT_STATE_SUCCEEDED
    assert event.origin == events_pb2.ORIGIN_RECONCILIATION
    # The late IPN is a replay: nothing changes.
    result = world.client.notify(MERCHANT, lost.id)
    assert result["body"]["RspCode"] == "02"
    assert [t for t, _ in world.outbox("SXD-260316-0001")].count(events.SUCCEEDED) == 1


def test_reconciliation_waits_for_the_threshold_and_survives_gateway_errors(world: World) -> None:
    payment = world.create()
    world.client.pay(payment.redirect_url, deliver_ipn=False)
    world.clock.shift = -timedelta(minutes=5)  # "now" is before the payment was created
    assert world.service.reconcile() == 0
    world.clock.shift = timedelta(0)
    world.client.set_faults(query="error")
    assert world.service.reconcile() == 0
    assert world.get(payment.id).state is PaymentState.PENDING
    world.client.set_faults()
    assert world.service.reconcile() == 1


def test_expiry_expires_an_unpaid_payment_and_the_gateway_then_refuses_it(world: World) -> None:
    unpaid = world.create("SXD-260316-0001")
    late = world.create("SXD-260316-0002")
    httpx.get(unpaid.redirect_url)
    assert world.service.expire() == 0  # not yet
    world.client.pay(late.redirect_url, deliver_ipn=False)  # paid just in time, IPN lost
    world.clock.shift = timedelta(seconds=901)
    assert world.service.expire() == 1
    assert world.get(unpaid.id).state is PaymentState.EXPIRED
    assert world.get(late.id).state is PaymentState.SUCCEEDED  # never expire what was paid
    assert [t for t, _ in world.outbox("SXD-260316-0001")] == [events.REQUESTED, events.EXPIRED]
    assert world.outbox("SXD-260316-0001")[-1][1].origin == events_pb2.ORIGIN_EXPIRY
    assert world.client.try_pay(unpaid.redirect_url).status_code == 409
    # An expired dossier fee can be requested again.
    again = world.create("SXD-260316-0001")
    assert again.id != unpaid.id


# -- cancel ------------------------------------------------------------------------------------
def test_cancel_tells_the_gateway_and_publishes(world: World) -> None:
    payment = world.create()
    cancelled = world.service.cancel_payment(OFFICER, payment.id, "  nộp nhầm hồ sơ ")
    assert cancelled.state is PaymentState.CANCELLED
    event_type, event = world.outbox()[-1]
    assert event_type == events.CANCELLED and event.reason == "nộp nhầm hồ sơ"
    assert event.actor.subject == "officer-sxd"
    assert world.client.try_pay(payment.redirect_url).status_code == 409
    with pytest.raises(FailedPrecondition):
        world.service.cancel_payment(OFFICER, payment.id, "again")


def test_cancel_after_the_payer_paid_is_refused_and_the_payment_succeeds(world: World) -> None:
    payment = world.create()
    world.client.pay(payment.redirect_url, deliver_ipn=False)
    with pytest.raises(FailedPrecondition, match="succeeded"):
        world.service.cancel_payment(SERVICE, payment.id, "too late")
    assert world.get(payment.id).state is PaymentState.SUCCEEDED


# -- refunds -----------------------------------------------------------------------------------
def paid(world: World, code: str = "SXD-260316-0001", amount: int = 100_000) -> Payment:
    payment = world.create(code, amount, agency=code.split("-")[0])
    world.client.pay(payment.redirect_url)
    return world.get(payment.id)


def test_partial_refund_then_the_rest_then_one_more_is_refused(world: World) -> None:
    payment = paid(world)
    r1, after, replayed = world.service.refund_payment(
        OFFICER, payment.id, 40_000, "rút một phần", "r1"
    )
    assert r1.state is RefundState.SUCCEEDED and not replayed and after.refunded_vnd == 40_000
    same, _, replayed = world.service.refund_payment(
        OFFICER, payment.id, 40_000, "rút một phần", "r1"
    )
    assert replayed and same.id == r1.id
    with pytest.raises(AlreadyExists):
        world.service.refund_payment(OFFICER, payment.id, 40_001, "rút một phần", "r1")
    r2, after, _ = world.service.refund_payment(ADMIN, payment.id, 60_000, "phần còn lại", "r2")
    assert r2.state is RefundState.SUCCEEDED and after.refunded_vnd == 100_000
    with pytest.raises(FailedPrecondition, match="only 0 VND"):
        world.service.refund_payment(OFFICER, payment.id, 1, "thêm", "r3")
    types = [t for t, _ in world.outbox()]
    assert types == [
        events.REQUESTED,
        events.SUCCEEDED,
        events.REFUND_SUCCEEDED,
        events.REFUND_SUCCEEDED,
    ]
    last = world.outbox()[-1][1]
    assert last.refund.amount_vnd == 60_000 and last.payment.refunded_vnd == 100_000
    assert last.reason == "phần còn lại"
    assert world.get(payment.id).state is PaymentState.SUCCEEDED


def test_concurrent_refunds_never_exceed_what_was_paid(world: World) -> None:
    payment = paid(world)

    def refund(i: int) -> str:
        try:
            world.service.refund_payment(OFFICER, payment.id, 30_000, "song song", f"c{i}")
            return "ok"
        except FailedPrecondition:
            return "refused"

    with ThreadPoolExecutor(5) as pool:
        outcomes = sorted(pool.map(refund, range(5)))
    assert outcomes == ["ok"] * 3 + ["refused"] * 2
    assert world.get(payment.id).refunded_vnd == 90_000


def test_refund_failures_and_retries(world: World) -> None:
    payment = paid(world)
    world.client.set_faults(refund="decline")
    declined, after, _ = world.service.refund_payment(OFFICER, payment.id, 10_000, "r", "d1")
    assert declined.state is RefundState.FAILED and declined.failure_code == "09"
    assert world.outbox()[-1][0] == events.REFUND_FAILED and after.refundable_vnd == 100_000
    world.client.set_faults(refund="error")
    unknown, _, _ = world.service.refund_payment(OFFICER, payment.id, 10_000, "r", "e1")
    assert unknown.state is RefundState.REQUESTED  # the gateway could not be asked
    world.client.set_faults()
    world.service.reconcile()
    assert world.get(payment.id).refund(unknown.id).state is RefundState.SUCCEEDED
    assert world.outbox()[-1][0] == events.REFUND_SUCCEEDED


# -- receipts ----------------------------------------------------------------------------------
def test_receipts_are_numbered_per_agency_and_year(world: World) -> None:
    vn_new_year = datetime(2027, 1, 1, 0, 0, tzinfo=UTC) - timedelta(hours=7)
    world.clock.fixed = vn_new_year - timedelta(minutes=1)
    numbers = [paid(world, f"SXD-261231-{i:04d}").receipt.number for i in (1, 2)]
    numbers.append(paid(world, "STP-261231-0001").receipt.number)
    world.clock.fixed = vn_new_year + timedelta(minutes=1)
    numbers.append(paid(world, "SXD-270101-0001").receipt.number)
    assert numbers == ["SXD-2026-000001", "SXD-2026-000002", "STP-2026-000001", "SXD-2027-000001"]


# -- who may see and do what -------------------------------------------------------------------
def test_authorisation(world: World) -> None:
    payment = world.create()
    assert world.service.get_payment(CITIZEN, payment.id).id == payment.id
    assert world.service.get_payment(OFFICER, payment.id).id == payment.id
    for outsider in (OTHER_CITIZEN, OTHER_OFFICER):
        with pytest.raises(NotFound):
            world.service.get_payment(outsider, payment.id)
        assert world.service.list_payments(outsider, payment.dossier_code) == []
    world.open_fee("SXD-260316-0002")
    with pytest.raises(PermissionDenied):
        world.service.create_payment(OTHER_OFFICER, fee("SXD-260316-0002"), "k")
    with pytest.raises(NotFound):  # a citizen cannot invent a fee
        world.service.create_payment(CITIZEN, fee("SXD-260316-0003"), "k")
    world.client.pay(payment.redirect_url, "fail")
    with pytest.raises(InvalidArgument) as err:  # ... but may pay again, the same fee
        world.service.create_payment(CITIZEN, fee(amount=1_000), "k")
    assert err.value.field == "amount_vnd"
    again, _ = world.service.create_payment(CITIZEN, fee(), "k")
    assert again.state is PaymentState.PENDING
    world.client.pay(again.redirect_url)
    for role in (CITIZEN, SERVICE):
        with pytest.raises(PermissionDenied):
            world.service.refund_payment(role, again.id, 1, "r", "k")
    with pytest.raises(NotFound):
        world.service.refund_payment(OTHER_OFFICER, again.id, 1, "r", "k")
    with pytest.raises(FailedPrecondition, match="already paid"):
        world.service.create_payment(OFFICER, fee(), "k2")


# -- schema ------------------------------------------------------------------------------------
def test_migrations_create_exactly_the_tables_the_code_uses(world: World) -> None:
    with world.host.engine.connect() as conn:
        context = MigrationContext.configure(conn)
        diff = [
            d
            for d in compare_metadata(context, db.metadata)
            if not (
                isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version"
            )
        ]
    assert diff == []


# -- a payment is bound to the dossier's own fee request (issue 14) ----------------------------
def dossier_says(world: World, event_type: str, code: str, fee_vnd: int | None = None) -> None:
    """The dossier service's event, handled as the consumer runner would."""
    event = dossier_event(event_type, code, code.split("-")[0], fee_vnd)
    handler = world.service.handlers()
    [target] = [h for h in handler if h.event_type == event_type]
    message = event.parse(target.message_type) if target.message_type else None
    with world.host.sessions() as session, session.begin():
        target.fn(event, message, session)


def test_no_fact_no_payment_unknown_dossier_not_found_unrequested_fee_refused(
    world: World,
) -> None:
    with pytest.raises(NotFound, match="STP-991231-5977"):
        world.service.create_payment(ADMIN, fee("STP-991231-5977", 5_000_000, "STP"), "k1")
    dossier_says(world, events.DOSSIER_SUBMITTED, "STP-260316-0001")
    with pytest.raises(FailedPrecondition, match="no open fee request"):
        world.service.create_payment(ADMIN, fee("STP-260316-0001"), "k2")
    assert world.count(db.payments) == 0 and world.count(db.outbox) == 0


def test_amount_agency_and_payer_come_from_the_fee_request_never_from_the_caller(
    world: World,
) -> None:
    dossier_says(world, events.DOSSIER_SUBMITTED, "PHAICHAU-260316-0001")
    dossier_says(world, events.DOSSIER_PAYMENT_REQUESTED, "PHAICHAU-260316-0001", 2_000)
    [auto] = world.service.list_payments(ADMIN, "PHAICHAU-260316-0001")
    assert auto.amount_vnd == 2_000 and auto.agency_code == "PHAICHAU"
    code = "PHAICHAU-260316-0001"
    stp_officer = Principal("officer-stp", frozenset({"officer"}), agency_code="STP")
    with pytest.raises(PermissionDenied, match="agency PHAICHAU"):
        world.service.create_payment(stp_officer, fee(code, 1, "STP"), "k1")
    with pytest.raises(NotFound):
        world.service.cancel_payment(stp_officer, auto.id, "abuse")
    with pytest.raises(InvalidArgument) as err:
        world.service.create_payment(ADMIN, fee(code, 0, "STP"), "k2")
    assert err.value.field == "agency_code"
    world.service.cancel_payment(ADMIN, auto.id, "the citizen asked")
    with pytest.raises(InvalidArgument) as err:  # cancel-and-recreate cannot lower the fee
        world.service.create_payment(ADMIN, fee(code, 1), "k3")
    assert err.value.field == "amount_vnd" and "2.000" in err.value.reason
    with pytest.raises(InvalidArgument) as err:
        world.service.create_payment(
            ADMIN, PaymentOrder.validated(dossier_code=code, payer_citizen_id="079203009999"), "k4"
        )
    assert err.value.field == "payer.citizen_id"
    again, _ = world.service.create_payment(ADMIN, fee(code), "k5")  # no amount: the fee's
    assert (again.amount_vnd, again.agency_code) == (2_000, "PHAICHAU")
    assert again.payer.citizen_id == CITIZEN_ID
    assert [p.amount_vnd for p in world.service.list_payments(ADMIN, code)] == [2_000, 2_000]


@pytest.mark.parametrize(
    "leaving", [events.DOSSIER_PAID, events.DOSSIER_WITHDRAWN, events.DOSSIER_STOPPED]
)
def test_a_dossier_that_left_payment_required_takes_no_more_payments(
    world: World, leaving: str
) -> None:
    code = "SXD-260316-0042"
    dossier_says(world, events.DOSSIER_PAYMENT_REQUESTED, code, 8_000)
    [auto] = world.service.list_payments(ADMIN, code)
    world.service.cancel_payment(ADMIN, auto.id, "r")
    dossier_says(world, leaving, code)
    with pytest.raises(FailedPrecondition, match="no open fee request"):
        world.service.create_payment(CITIZEN, fee(code), "k")
    # Asked again later (a workflow may ask twice): open again, for the amount asked.
    dossier_says(world, events.DOSSIER_PAYMENT_REQUESTED, code, 8_000)
    assert [p.state for p in world.service.list_payments(ADMIN, code)] == [
        PaymentState.CANCELLED,
        PaymentState.PENDING,
    ]


def test_a_citizen_pays_only_their_own_dossiers_fee(world: World) -> None:
    code = "SXD-260316-0043"
    dossier_says(world, events.DOSSIER_PAYMENT_REQUESTED, code, 8_000)
    [auto] = world.service.list_payments(ADMIN, code)
    world.service.cancel_payment(ADMIN, auto.id, "r")
    with pytest.raises(PermissionDenied):
        world.service.create_payment(OTHER_CITIZEN, fee(code), "k")
    mine, _ = world.service.create_payment(CITIZEN, fee(code), "k")
    assert mine.amount_vnd == 8_000


def test_the_short_pay_link_leads_to_the_gateway_only_while_the_payment_is_open(
    world: World,
) -> None:
    payment = world.create()
    assert payment.pay_url == f"{world.callback_url}/p/{payment.pay_token}"
    assert len(payment.pay_url) < 60 < len(payment.redirect_url)
    answer = httpx.get(payment.pay_url, timeout=10)
    assert answer.status_code == 303 and answer.headers["location"] == payment.redirect_url
    for bad in ("nope", "A" * 12, "../../etc/passwd"):
        assert httpx.get(f"{world.callback_url}/p/{bad}", timeout=10).status_code == 404
    world.clock.shift = timedelta(seconds=901)  # past the payment's expiry
    assert httpx.get(payment.pay_url, timeout=10).status_code == 410
