"""Dossier's batch call for payment events: the same effect as the events one by one.

The consumer hands a poll's payment events to ``DossierService.on_payment_events`` at once
(both types take the same batch function, so a ``requested`` and its ``succeeded`` can meet in
one call). Run in-process on SQLite and PostgreSQL with the real service class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from motcua.payment.v1 import events_pb2 as payment_events
from motcua.payment.v1 import payment_pb2
from motcua_dossier.domain.dossier import Applicant, DocumentInput, Status, validate_submission
from motcua_dossier.events import PAYMENT_REQUESTED, PAYMENT_SUCCEEDED
from motcua_dossier.service import DossierService
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.service import ServiceHost

VN = ZoneInfo("Asia/Ho_Chi_Minh")
CITIZEN_ID = "079203004567"
OFFICER = Principal("officer-phoian-01", frozenset({"officer"}), agency_code="PHOIAN")
CITIZEN = Principal("citizen-1", frozenset({"citizen"}), citizen_id=CITIZEN_ID)


class Clock:
    def __call__(self) -> datetime:
        return datetime(2026, 12, 1, 9, 0, tzinfo=VN)  # a Tuesday


@pytest.fixture
def host(database: Callable[[str], str]) -> Iterator[ServiceHost]:
    settings = DossierSettings(database_url=database("dossier_batch"))
    built = ServiceHost(DossierService, settings, overrides={"clock": Clock()})
    built.migrate()
    yield built
    built.engine.dispose()


def _payment_required(service: DossierService, key: str) -> tuple[str, int, str]:
    """A fee-bearing dossier in "payment required": (code, fee, agency)."""
    submission = validate_submission(
        procedure_code="XD-001",
        applicant=Applicant.validated(
            "Nguyễn Thị Thu Hà", CITIZEN_ID, "0905123456", "thuha@example.vn", "Hội An, Đà Nẵng"
        ),
        documents=[DocumentInput("Đơn đề nghị", "application/pdf", 52_113, "a" * 64)],
        channel=1,
        idempotency_key=key,
    )
    dossier, _ = service.submit(CITIZEN, submission)
    version = dossier.version
    for action in ("receive", "request_payment"):
        version = service.transition(OFFICER, dossier.code, action, action, version).version
    got = service.get(OFFICER, dossier.code)
    assert got.status == Status.PAYMENT_REQUIRED and got.fee_vnd
    return got.code, got.fee_vnd, got.agency_code


def _event(
    event_type: str, code: str, payment_id: str, agency: str, amount: int
) -> tuple[Event, payment_events.PaymentEvent]:
    message = payment_events.PaymentEvent(
        payment=payment_pb2.Payment(
            id=payment_id, dossier_code=code, agency_code=agency, amount_vnd=amount
        )
    )
    return Event.new(source="/motcua/payment", type=event_type, subject=code, message=message), (
        message
    )


def _outbox(host: ServiceHost) -> list[tuple[str, str]]:
    with host.engine.connect() as conn:
        rows = conn.execute(text("SELECT event_type, event_key FROM outbox ORDER BY id")).all()
    return [(r.event_type, r.event_key) for r in rows]


def test_one_call_for_mixed_payment_events_moves_each_dossier_once_in_order(
    host: ServiceHost,
) -> None:
    service = host.service
    assert isinstance(service, DossierService)
    a, fee_a, agency = _payment_required(service, "k-a")
    b, fee_b, _ = _payment_required(service, "k-b")
    before = len(_outbox(host))
    batch = [
        _event(PAYMENT_REQUESTED, a, "a" * 32, agency, fee_a),
        _event(PAYMENT_SUCCEEDED, b, "c" * 32, agency, fee_b),  # never announced: refused
        _event(PAYMENT_SUCCEEDED, a, "a" * 32, agency, fee_a),  # announced in this batch: paid
        _event(PAYMENT_SUCCEEDED, a, "a" * 32, agency, fee_a),  # reported again: nothing
        _event(PAYMENT_REQUESTED, b, "b" * 32, agency, fee_b),
        _event(PAYMENT_SUCCEEDED, b, "b" * 32, agency, 1),  # not the fee: refused
    ]
    with transaction(host.sessions) as session:
        service.on_payment_events(batch, session)
    assert service.get(OFFICER, a).status == Status.PROCESSING
    assert service.get(OFFICER, b).status == Status.PAYMENT_REQUIRED
    refused = "vn.motcua.dossier.payment_refused.v1"
    assert _outbox(host)[before:] == [
        (refused, b),
        ("vn.motcua.dossier.paid.v1", a),
        (refused, b),
    ]
    # b's own payment settles it afterwards, one event at a time (the per-event handlers).
    with transaction(host.sessions) as session:
        service.on_payment_succeeded(
            *_event(PAYMENT_SUCCEEDED, b, "b" * 32, agency, fee_b), session
        )
    assert service.get(OFFICER, b).status == Status.PROCESSING
    with host.engine.connect() as conn:
        settled = conn.execute(
            text("SELECT payment_id FROM fee_payments WHERE settled_at IS NOT NULL")
        ).scalars()
        assert sorted(settled) == ["a" * 32, "b" * 32]
