"""Producer side, dossier: every event type the service emits, published by its real outbox
relay to the real broker, matches the catalogue — headers, key and payload.

The real dossier service class runs in-process (ServiceHost, SQLite) with only its clock
replaced, so deadlines can pass; reference data is the shipped data plus one workflow whose
action has no type of its own (for ``status_changed``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from producer_contract import assert_topic_matches_catalogue

from harness import Kafka
from motcua.payment.v1 import events_pb2 as payment_events
from motcua.payment.v1 import payment_pb2
from motcua_documents.devpki import DevPki
from motcua_dossier.domain.dossier import Applicant, DocumentInput, validate_submission
from motcua_dossier.domain.reference_data import DATA_DIR
from motcua_dossier.events import PAYMENT_REQUESTED, PAYMENT_SUCCEEDED
from motcua_dossier.service import DossierService
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.service import ServiceHost
from tools.eventdocs.conformance import publish_outbox

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VN = ZoneInfo("Asia/Ho_Chi_Minh")
TOPIC = "motcua.dossier.v1"
CITIZEN_ID = "079203004567"
OFFICER = Principal("officer-phoian-01", frozenset({"officer"}), agency_code="PHOIAN")
CITIZEN = Principal("citizen-1", frozenset({"citizen"}), citizen_id=CITIZEN_ID)

CUSTOM_WORKFLOW = """
  # Contract-test fixture: `forward` has no CloudEvents type of its own.
  - id: forward_test
    name: Quy trình thử có bước chuyển xử lý
    initial: 1
    states:
      - {code: 1, name: Mới, sla_days: 1, terminal: false}
      - {code: 2, name: Đã tiếp nhận, sla_days: 1, terminal: false}
      - {code: 4, name: Đang xử lý, sla_days: null, terminal: false}
      - {code: 9, name: Đã xử lý xong, sla_days: 1, terminal: false}
      - {code: 10, name: Đã trả kết quả, sla_days: null, terminal: true}
    actions:
      - {name: receive, from: [1], to: 2, roles: [officer]}
      - {name: forward, from: [2], to: 4, roles: [officer]}
      - {name: approve, from: [4], to: 9, roles: [officer]}
      - {name: return_result, from: [9], to: 10, roles: [officer]}
"""
CUSTOM_PROCEDURE = """
  - code: TEST-901
    name: Thủ tục thử nghiệm hợp đồng sự kiện
    agency: PHOIAN
    fee_vnd: null
    processing_days: 5
    online_level: full
    workflow: forward_test
    required_documents:
      - {name: Đơn đề nghị, mandatory: true}
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def reference_data(tmp_path: Path) -> Path:
    data = tmp_path / "reference-data"
    shutil.copytree(DATA_DIR, data)
    (data / "workflows.yaml").write_text((data / "workflows.yaml").read_text() + CUSTOM_WORKFLOW)
    (data / "procedures.yaml").write_text((data / "procedures.yaml").read_text() + CUSTOM_PROCEDURE)
    return data


@pytest.fixture
def host(
    kafka: Kafka, tmp_path: Path, reference_data: Path, dev_pki: DevPki
) -> Iterator[tuple[ServiceHost, Clock]]:
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=VN))  # a Tuesday
    settings = DossierSettings(
        database_url=f"sqlite:///{tmp_path}/dossier.db",
        kafka_bootstrap=kafka.bootstrap,
        reference_data_dir=reference_data,
        documents_keyring=str(dev_pki.keyring),  # so the signed papers' events are emitted too
    )
    service_host = ServiceHost(DossierService, settings, overrides={"clock": clock})
    service_host.migrate()
    yield service_host, clock
    service_host.engine.dispose()


def _submit(service: DossierService, procedure: str, key: str) -> str:
    submission = validate_submission(
        procedure_code=procedure,
        applicant=Applicant.validated(
            "Nguyễn Thị Thu Hà", CITIZEN_ID, "0905123456", "thuha@example.vn", "Hội An, Đà Nẵng"
        ),
        documents=[DocumentInput("Đơn đề nghị", "application/pdf", 52_113, "a" * 64)],
        channel=1,
        idempotency_key=key,
    )
    dossier, _ = service.submit(CITIZEN, submission)
    return dossier.code


def _walk(service: DossierService, code: str, *steps: tuple[Principal, str]) -> None:
    version = service.get(OFFICER, code).version
    for who, action in steps:
        version = service.transition(who, code, action, f"lý do: {action}", version).version


def _drive_every_type(service: DossierService, host: ServiceHost, clock: Clock) -> None:
    """One or more dossiers through every transition, notice and fallback the service has."""
    full = _submit(service, "HT-001", "k-full")
    _walk(
        service,
        full,
        (OFFICER, "receive"),
        (OFFICER, "process"),
        (OFFICER, "request_supplement"),
        (CITIZEN, "supplement"),
        (OFFICER, "approve"),
        (OFFICER, "return_result"),
    )
    _walk(service, _submit(service, "HT-001", "k-rejected"), (OFFICER, "reject"))
    _walk(service, _submit(service, "HT-001", "k-withdrawn"), (CITIZEN, "withdraw"))
    paid = _submit(service, "XD-001", "k-paid")
    _walk(service, paid, (OFFICER, "receive"), (OFFICER, "request_payment"))
    dossier = service.get(OFFICER, paid)
    fee = dossier.fee_vnd
    assert fee

    def payment_event(event_type: str, amount: int) -> tuple[Event, payment_events.PaymentEvent]:
        message = payment_events.PaymentEvent(
            payment=payment_pb2.Payment(
                id="0" * 31 + str(amount % 10),
                dossier_code=paid,
                agency_code=dossier.agency_code,
                amount_vnd=amount,
            )
        )
        event = Event.new(source="/motcua/payment", type=event_type, subject=paid, message=message)
        return event, message

    with transaction(host.sessions) as session:
        service.on_payment_succeeded(*payment_event(PAYMENT_SUCCEEDED, 1), session)  # refused
        service.on_payment_requested(*payment_event(PAYMENT_REQUESTED, fee), session)
        service.on_payment_succeeded(*payment_event(PAYMENT_SUCCEEDED, fee), session)  # paid
    _walk(service, paid, (OFFICER, "stop"))
    _walk(
        service,
        _submit(service, "TEST-901", "k-custom"),
        (OFFICER, "receive"),
        (OFFICER, "forward"),
    )
    late = _submit(service, "XD-001", "k-late")
    _walk(service, late, (OFFICER, "receive"))  # 15 working days: appointment Tue 22 Dec
    clock.now = datetime(2026, 12, 21, 8, 0, tzinfo=VN)
    assert service.scan_deadlines() >= 1  # due soon
    clock.now = datetime(2026, 12, 24, 8, 0, tzinfo=VN)
    assert service.scan_deadlines() >= 1  # overdue


def test_every_dossier_event_on_the_topic_matches_the_catalogue(
    kafka: Kafka, host: tuple[ServiceHost, Clock]
) -> None:
    service_host, clock = host
    service = service_host.service
    assert isinstance(service, DossierService)
    _drive_every_type(service, service_host, clock)
    published = publish_outbox(service_host)
    assert_topic_matches_catalogue(kafka, TOPIC, published)
