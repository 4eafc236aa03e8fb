"""Dossier's use cases, called in-process on SQLite (and PostgreSQL in `make test`): intake,
reading, listing and workflow moves, with the events they leave in the outbox.

The gRPC edge (tests/integration/test_dossier_intake.py, test_dossier_workflow.py) maps the
same errors to status codes; here the service's own decisions are checked without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from motcua_dossier import events
from motcua_dossier.adapters import db
from motcua_dossier.domain.dossier import (
    Applicant,
    DocumentInput,
    Status,
    Submission,
    validate_submission,
)
from motcua_dossier.service import DossierService
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal
from motcua_kit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from motcua_kit.service import ServiceHost

VN = ZoneInfo("Asia/Ho_Chi_Minh")
CITIZEN_ID = "079203004567"
CITIZEN = Principal("citizen-1", frozenset({"citizen"}), citizen_id=CITIZEN_ID)
OTHER_CITIZEN = Principal("citizen-2", frozenset({"citizen"}), citizen_id="079203009999")
OFFICER = Principal("officer-1", frozenset({"officer"}), agency_code="PHOIAN")
STRANGER = Principal("officer-9", frozenset({"officer"}), agency_code="STP")


@pytest.fixture
def host(database: Callable[[str], str]) -> ServiceHost:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=VN)
    h = ServiceHost(
        DossierService,
        DossierSettings(database_url=database("dossier")),
        overrides={"clock": lambda: now},
    )
    h.migrate()
    return h


def submission(key: str, name: str = "Lê Văn Bình", citizen_id: str = CITIZEN_ID) -> Submission:
    return validate_submission(
        procedure_code="HT-001",  # PHOIAN
        applicant=Applicant.validated(name, citizen_id, "0905123456", "", "Hội An, Đà Nẵng"),
        documents=[DocumentInput("Tờ khai", "application/pdf", 10, "b" * 64)],
        channel=1,
        idempotency_key=key,
    )


def outbox(host: ServiceHost) -> list[tuple[str, str]]:
    with host.sessions() as session:
        rows = session.execute(
            select(db.outbox.c.event_type, db.outbox.c.event_key).order_by(db.outbox.c.id)
        )
        return [(r.event_type, r.event_key) for r in rows]


def service(host: ServiceHost) -> DossierService:
    assert isinstance(host.service, DossierService)
    return host.service


def test_a_submission_is_filed_once_per_key_and_publishes_submitted(host: ServiceHost) -> None:
    svc = service(host)
    dossier, replayed = svc.submit(CITIZEN, submission("k-1"))
    again, replayed_again = svc.submit(CITIZEN, submission("k-1"))
    assert (replayed, replayed_again) == (False, True)
    assert again.code == dossier.code and dossier.status is Status.NEW
    assert outbox(host) == [(events.SUBMITTED, dossier.code)]
    with pytest.raises(AlreadyExists, match="idempotency_key was already used"):
        svc.submit(CITIZEN, submission("k-1", name="Trần Thị Hoa"))
    second, _ = svc.submit(CITIZEN, submission("k-2"))
    assert second.code != dossier.code and len(outbox(host)) == 2


def test_only_the_applicant_or_the_agency_files_and_sees_a_dossier(host: ServiceHost) -> None:
    svc = service(host)
    with pytest.raises(PermissionDenied, match="own citizen ID"):
        svc.submit(OTHER_CITIZEN, submission("k-3"))
    with pytest.raises(PermissionDenied):
        svc.submit(STRANGER, submission("k-4"))
    assert outbox(host) == []
    dossier, _ = svc.submit(CITIZEN, submission("k-5"))
    assert svc.get(CITIZEN, dossier.code).code == dossier.code
    assert svc.get(OFFICER, dossier.code).code == dossier.code
    for outsider in (OTHER_CITIZEN, STRANGER):
        with pytest.raises(NotFound):
            svc.get(outsider, dossier.code)
    query = db.DossierQuery()
    assert [d.code for d in svc.list_dossiers(CITIZEN, query, "")[0]] == [dossier.code]
    assert svc.list_dossiers(OTHER_CITIZEN, query, "")[0] == []
    assert svc.list_dossiers(STRANGER, query, "")[0] == []


def test_a_workflow_move_checks_version_role_and_state_and_publishes(host: ServiceHost) -> None:
    svc = service(host)
    dossier, _ = svc.submit(CITIZEN, submission("k-6"))
    with pytest.raises(PermissionDenied):
        svc.transition(CITIZEN, dossier.code, "receive", "", dossier.version)
    with pytest.raises(Aborted):  # the caller read another version
        svc.transition(OFFICER, dossier.code, "receive", "", dossier.version + 1)
    received = svc.transition(OFFICER, dossier.code, "receive", "", dossier.version)
    assert received.status is not Status.NEW and received.version == dossier.version + 1
    with pytest.raises(FailedPrecondition):
        svc.transition(OFFICER, dossier.code, "receive", "", received.version)
    published = [t for t, code in outbox(host) if code == dossier.code]
    assert published[0] == events.SUBMITTED and len(published) == 2
    with pytest.raises(NotFound):
        svc.transition(STRANGER, dossier.code, "approve", "", received.version)
