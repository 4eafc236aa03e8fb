"""Issue 14.7: notices name the procedure — "Thủ tục: Đăng ký khai sinh (HT-001)", not its code.

The dossier service puts the catalogue's name on the dossier its events carry
(``Dossier.procedure_name``); notify shows it with the code in brackets. Both services run
in-process on SQLite; the dossier's outbox rows are handed to notify's handler as the consumer
runner would, and the receipt email is read from a real SMTP server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_dossier.adapters import db as dossier_db
from motcua_dossier.adapters.grpc_api import DossierApi
from motcua_dossier.domain.dossier import Applicant, DocumentInput, validate_submission
from motcua_dossier.service import DossierService
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal, reset_principal, set_principal
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.service import ServiceHost
from motcua_notify.adapters.db import dossier_snapshots
from motcua_notify.service import NotifyService
from motcua_notify.settings import NotifySettings
from notify_providers import EMAIL, SmtpSink, dossier, submitted

pytestmark = pytest.mark.integration

CITIZEN_ID = "079203004567"
CITIZEN = Principal("citizen-1", frozenset({"citizen"}), citizen_id=CITIZEN_ID)
OFFICER = Principal("officer-phoian-01", frozenset({"officer"}), agency_code="PHOIAN")
NOON = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # a Tuesday, 12:00 in Đà Nẵng


@pytest.fixture
def dossiers(tmp_path: Path) -> Iterator[ServiceHost]:
    settings = DossierSettings(database_url=f"sqlite:///{tmp_path}/dossier.db")
    host = ServiceHost(DossierService, settings, overrides={"clock": lambda: NOON})
    host.migrate()
    yield host
    host.engine.dispose()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def notify(tmp_path: Path, smtp: SmtpSink) -> Iterator[ServiceHost]:
    settings = NotifySettings(
        database_url=f"sqlite:///{tmp_path}/notify.db",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_sender="motcua@hoian.example.vn",
        receipts_port=0,
        quiet_hours="",
    )
    host = ServiceHost(NotifyService, settings, overrides={"clock": lambda: NOON})
    host.migrate()
    yield host
    host.service.close()
    host.engine.dispose()


def _submit(service: DossierService, procedure_code: str) -> str:
    submission = validate_submission(
        procedure_code=procedure_code,
        applicant=Applicant.validated(
            "Nguyễn Thị Thu Hà", CITIZEN_ID, "0905123456", EMAIL, "12 Trần Phú, phường Hội An"
        ),
        documents=[DocumentInput("Tờ khai đăng ký khai sinh", "application/pdf", 52_113, "a" * 64)],
        channel=1,
        idempotency_key=f"k-{procedure_code}",
    )
    dossier, _ = service.submit(CITIZEN, submission)
    return dossier.code


def _published(host: ServiceHost, code: str) -> list[tuple[str, dossier_pb2.Dossier]]:
    """(event type, the dossier it carries) for each event the dossier service put out."""
    o = dossier_db.outbox
    with host.sessions() as session:
        rows = session.execute(
            select(o.c.event_type, o.c.payload).where(o.c.event_key == code).order_by(o.c.id)
        ).all()
    kinds = {"vn.motcua.dossier.submitted.v1": events_pb2.DossierSubmitted}
    return [
        (
            r.event_type,
            kinds.get(r.event_type, events_pb2.DossierStatusChanged).FromString(r.payload).dossier,
        )
        for r in rows
    ]


def _receipt_lines(notify: ServiceHost, smtp: SmtpSink, event: Event) -> list[str]:
    service = notify.service
    assert isinstance(service, NotifyService)
    with transaction(notify.sessions) as session:
        service.on_dossier_event(event, event.parse(events_pb2.DossierSubmitted), session)
    service.dispatch()
    (message,) = [m for m in smtp.to(EMAIL) if event.subject in str(m["Subject"])]
    return [line.strip() for line in str(message.get_content()).splitlines()]


def test_every_dossier_event_and_answer_names_the_procedure(dossiers: ServiceHost) -> None:
    service = dossiers.service
    assert isinstance(service, DossierService)
    code = _submit(service, "HT-001")
    received = service.transition(OFFICER, code, "receive", "", 1)
    assert received.status == 2
    published = _published(dossiers, code)
    assert [t for t, _ in published] == [
        "vn.motcua.dossier.submitted.v1",
        "vn.motcua.dossier.received.v1",
    ]
    assert {(d.procedure_code, d.procedure_name) for _, d in published} == {
        ("HT-001", "Đăng ký khai sinh")
    }
    token = set_principal(CITIZEN)
    try:
        answer = DossierApi(service).GetDossier(dossier_pb2.GetDossierRequest(code=code), None)
    finally:
        reset_principal(token)
    assert answer.dossier.procedure_name == "Đăng ký khai sinh"


def test_the_receipt_email_names_the_procedure_with_its_code_in_brackets(
    dossiers: ServiceHost, notify: ServiceHost, smtp: SmtpSink
) -> None:
    service = dossiers.service
    assert isinstance(service, DossierService)
    code = _submit(service, "HT-004")
    (_, carried), *_ = _published(dossiers, code)
    lines = _receipt_lines(notify, smtp, submitted(carried))
    assert "Thủ tục:               Cấp bản sao trích lục hộ tịch (HT-004)" in lines
    # What the dossier said is kept for the events that do not carry the dossier (payments).
    with notify.sessions() as session:
        kept = session.execute(
            select(dossier_snapshots.c.procedure_name).where(
                dossier_snapshots.c.dossier_code == code
            )
        ).scalar_one()
    assert kept == "Cấp bản sao trích lục hộ tịch"


def test_an_event_from_before_the_name_shows_the_code_alone(
    notify: ServiceHost, smtp: SmtpSink
) -> None:
    older = dossier(agency="PHOIAN")  # a publisher without procedure_name
    assert older.procedure_name == ""
    lines = _receipt_lines(notify, smtp, submitted(older))
    assert f"Thủ tục:               {older.procedure_code}" in lines
