"""The dossier service's signed papers, in-process on SQLite with the session's SoftHSM2 token:
each workflow move issues its form of Circular 01/2018, signed by the agency's key, stored
with its hash and announced by a metadata-only event; ReturnResult checks, signs or keeps the
officer's result; GetDocument serves the exact bytes to those who may see the dossier.

Every signature is checked by pyHanko (motcua_documents.verify) and by poppler's pdfsig.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import func, select

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_documents import keyring
from motcua_documents.devpki import DevPki
from motcua_documents.signing import sign
from motcua_documents.verify import verify
from motcua_dossier import documents, events
from motcua_dossier.adapters import db
from motcua_dossier.adapters.grpc_api import DossierApi
from motcua_dossier.domain.dossier import Applicant, DocumentInput, Status, validate_submission
from motcua_dossier.service import DossierService
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal, reset_principal, set_principal
from motcua_kit.errors import InvalidArgument, NotFound, PermissionDenied
from motcua_kit.service import ServiceHost

VN = ZoneInfo("Asia/Ho_Chi_Minh")
AGENCY = "PHOIAN"  # HT-001's agency
CITIZEN_ID = "079203004567"
CITIZEN = Principal("citizen-1", frozenset({"citizen"}), citizen_id=CITIZEN_ID)
OTHER_CITIZEN = Principal("citizen-2", frozenset({"citizen"}), citizen_id="079203009999")
OFFICER = Principal("can-bo-hoian", frozenset({"officer"}), agency_code=AGENCY)
STRANGER = Principal("can-bo-stp", frozenset({"officer"}), agency_code="STP")
NOTIFY = Principal("motcua-notify", frozenset({"service"}))
LIMIT = 300_000


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 1, 9, 0, tzinfo=VN))


def _host(url: str, clock: Clock, **settings: Any) -> ServiceHost:
    host = ServiceHost(
        DossierService,
        DossierSettings(database_url=url, result_max_bytes=LIMIT, **settings),
        overrides={"clock": clock},
    )
    host.migrate()
    return host


@pytest.fixture
def host(tmp_path: Path, dev_pki: DevPki, clock: Clock) -> ServiceHost:
    return _host(f"sqlite:///{tmp_path}/dossier.db", clock, documents_keyring=str(dev_pki.keyring))


def service(host: ServiceHost) -> DossierService:
    assert isinstance(host.service, DossierService)
    return host.service


def submit(svc: DossierService, key: str = "k-1") -> str:
    submission = validate_submission(
        procedure_code="HT-001",
        applicant=Applicant.validated(
            "Lê Văn Bình", CITIZEN_ID, "0905123456", "binh@example.vn", "Hội An, Đà Nẵng"
        ),
        documents=[DocumentInput("Tờ khai đăng ký khai sinh", "application/pdf", 10, "b" * 64)],
        channel=1,
        idempotency_key=key,
    )
    return svc.submit(CITIZEN, submission)[0].code


def move(svc: DossierService, code: str, *actions: str, comment: str = "") -> int:
    version = svc.get(OFFICER, code).version
    for action in actions:
        version = svc.transition(OFFICER, code, action, comment, version).version
    return version


def issued_events(host: ServiceHost) -> list[tuple[str, bytes]]:
    with host.sessions() as session:
        rows = session.execute(
            select(db.outbox.c.event_key, db.outbox.c.payload)
            .where(db.outbox.c.event_type == events.DOCUMENT_ISSUED)
            .order_by(db.outbox.c.id)
        )
        return [(r.event_key, bytes(r.payload)) for r in rows]


def stored_count(host: ServiceHost) -> int:
    with host.sessions() as session:
        return int(
            session.execute(select(func.count()).select_from(db.issued_documents)).scalar_one()
        )


def check_signed(pdf: bytes, dev_pki: DevPki, tmp_path: Path, agency: str = AGENCY) -> None:
    report = verify(pdf, keyring.load(dev_pki.keyring).trust_roots, agency_code=agency)
    assert report.ok, report.failures
    path = tmp_path / f"{hashlib.sha256(pdf).hexdigest()[:12]}.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdfsig", "-nssdir", dev_pki.nssdir, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    verdict = out.stdout + out.stderr
    assert "Signature Validation: Signature is Valid." in verdict, verdict
    assert "Certificate Validation: Certificate is Trusted." in verdict, verdict


def fetch(svc: DossierService, principal: Principal, document_id: str) -> bytes:
    """GetDocument through the servicer: the metadata first, then the chunks."""
    token = set_principal(principal)
    try:
        stream = list(
            DossierApi(svc).GetDocument(
                dossier_pb2.GetDocumentRequest(document_id=document_id),
                None,
            )
        )
    finally:
        reset_principal(token)
    assert stream[0].WhichOneof("part") == "document"
    assert all(m.WhichOneof("part") == "chunk" for m in stream[1:])
    data = b"".join(m.chunk for m in stream[1:])
    assert stream[0].document.size_bytes == len(data)
    assert stream[0].document.sha256 == hashlib.sha256(data).hexdigest()
    return data


# -- forms on the workflow's moves -------------------------------------------------------------
def test_receive_issues_a_signed_receipt_and_control_sheet_announced_without_bytes(
    host: ServiceHost, dev_pki: DevPki, tmp_path: Path
) -> None:
    svc = service(host)
    code = submit(svc)
    assert documents.list_documents(svc, OFFICER, code) == []
    move(svc, code, "receive")
    found = documents.list_documents(svc, CITIZEN, code)
    assert [d.kind for d in found] == ["receipt", "control"]
    assert [d.form_number for d in found] == ["Mẫu số 01", "Mẫu số 05"]
    assert found[0].number == f"{code.removeprefix(AGENCY + '-')}.1/{AGENCY}-TNTKQ"
    published = issued_events(host)
    assert len(published) == 2
    for doc, (key, payload) in zip(found, published, strict=True):
        data = documents.get_document(svc, OFFICER, doc.id).content
        assert hashlib.sha256(data).hexdigest() == doc.sha256 and len(data) == doc.size
        check_signed(data, dev_pki, tmp_path)
        message = events_pb2.DocumentIssued.FromString(payload)
        assert key == code and message.dossier.code == code
        assert message.dossier.status == int(Status.RECEIVED)
        assert (message.document.id, message.document.sha256) == (doc.id, doc.sha256)
        assert message.document.size_bytes == len(data)
        assert len(payload) < 2048 and data[:4096] not in payload  # metadata, never bytes


@pytest.mark.parametrize(
    ("actions", "comment", "kind"),
    [
        (("reject",), "Hồ sơ không thuộc thẩm quyền của UBND phường", "refusal"),
        (("receive", "process", "request_supplement"), "Bản sao giấy chứng sinh", "supplement"),
    ],
)
def test_reject_and_request_supplement_issue_their_signed_form(
    host: ServiceHost,
    dev_pki: DevPki,
    tmp_path: Path,
    actions: tuple[str, ...],
    comment: str,
    kind: str,
) -> None:
    svc = service(host)
    code = submit(svc)
    move(svc, code, *actions, comment=comment)
    last = documents.list_documents(svc, OFFICER, code)[-1]
    assert last.kind == kind and last.cause == actions[-1]
    check_signed(documents.get_document(svc, OFFICER, last.id).content, dev_pki, tmp_path)
    text = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", "-", "-"],
        input=documents.get_document(svc, OFFICER, last.id).content,
        capture_output=True,
        timeout=30,
    ).stdout.decode()
    assert comment.split()[0] in text  # the officer's comment is on the paper


def test_an_overdue_dossier_gets_a_signed_apology_with_the_new_appointment(
    host: ServiceHost, dev_pki: DevPki, tmp_path: Path, clock: Clock
) -> None:
    svc = service(host)
    code = submit(svc)
    move(svc, code, "receive")  # HT-001: 0 working days, due today
    clock.now += timedelta(days=2)
    assert svc.scan_deadlines() == 1
    apology = documents.list_documents(svc, CITIZEN, code)[-1]
    assert (apology.kind, apology.cause, apology.form_number) == ("apology", "overdue", "Mẫu số 04")
    check_signed(documents.get_document(svc, CITIZEN, apology.id).content, dev_pki, tmp_path)
    assert svc.scan_deadlines() == 0  # once per dossier
    assert [d.kind for d in documents.list_documents(svc, CITIZEN, code)].count("apology") == 1


def test_return_result_without_a_document_issues_the_control_sheet_with_every_handover(
    host: ServiceHost, dev_pki: DevPki, tmp_path: Path
) -> None:
    svc = service(host)
    code = submit(svc)
    move(svc, code, "receive", "process", "approve", "return_result")
    sheets = [d for d in documents.list_documents(svc, OFFICER, code) if d.kind == "control"]
    assert len(sheets) == 2
    final = documents.get_document(svc, OFFICER, sheets[-1].id).content
    check_signed(final, dev_pki, tmp_path)
    text = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", "-", "-"], input=final, capture_output=True
    ).stdout.decode()
    # receive (citizen → counter), process (→ agency), approve (→ counter), return (→ citizen)
    assert text.count("Cán bộ: can-bo-hoian") == 4, text


def test_documents_off_leaves_the_workflow_as_it_was(tmp_path: Path, clock: Clock) -> None:
    host = _host(f"sqlite:///{tmp_path}/off.db", clock)
    svc = service(host)
    code = submit(svc)
    move(svc, code, "receive", "process", "approve", "return_result")
    assert svc.get(OFFICER, code).status is Status.RESULT_RETURNED
    assert documents.list_documents(svc, OFFICER, code) == [] and issued_events(host) == []


def test_a_keyring_missing_an_agency_that_receives_dossiers_stops_the_start(
    host: ServiceHost, dev_pki: DevPki, tmp_path: Path, clock: Clock
) -> None:
    service(host).on_start()  # the session's keyring has every agency
    data = yaml.safe_load(dev_pki.keyring.read_text())
    del data["agencies"]["SXD"]
    for spec in data["agencies"].values():  # relative paths resolve against the keyring's dir
        spec["pkcs11"]["pin_file"] = str(dev_pki.keyring.parent / spec["pkcs11"]["pin_file"])
    data["trust_roots"] = [str(dev_pki.keyring.parent / p) for p in data["trust_roots"]]
    partial = tmp_path / "keyring.yaml"
    partial.write_text(yaml.safe_dump(data))
    other = _host(f"sqlite:///{tmp_path}/k.db", clock, documents_keyring=str(partial))
    with pytest.raises(SystemExit, match="no signing key for agency SXD"):
        service(other).on_start()


# -- ReturnResult --------------------------------------------------------------------------------
def plain_pdf(text: str = "Giấy khai sinh — bản chính") -> bytes:
    buf = io.BytesIO()
    canvas = Canvas(buf, invariant=1)
    canvas.drawString(72, 720, "Ket qua giai quyet thu tuc hanh chinh")
    canvas.drawString(72, 700, text.encode("ascii", "replace").decode())
    canvas.showPage()
    canvas.save()
    return buf.getvalue()


def signed_by(agency: str, dev_pki: DevPki) -> bytes:
    return sign(plain_pdf(), keyring.load(dev_pki.keyring).key_for(agency))


def upload(
    svc: DossierService, code: str, data: bytes, principal: Principal = OFFICER, **header: Any
) -> dossier_pb2.ReturnResultResponse:
    """ReturnResult through the servicer: a header, then chunks of at most 1 MiB."""
    fields: dict[str, Any] = {
        "code": code,
        "expected_version": svc.get(OFFICER, code).version,
        "comment": "Trả kết quả",
        "filename": "giay-khai-sinh.pdf",
        "media_type": "application/pdf",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    fields.update(header)
    messages: list[dossier_pb2.ReturnResultRequest] = []
    if fields.pop("no_header", False) is False:
        messages.append(
            dossier_pb2.ReturnResultRequest(header=dossier_pb2.ReturnResultHeader(**fields))
        )
    messages += [
        dossier_pb2.ReturnResultRequest(chunk=data[i : i + 65536])
        for i in range(0, len(data), 65536)
    ]

    def requests() -> Iterator[dossier_pb2.ReturnResultRequest]:
        yield from messages

    token = set_principal(principal)
    try:
        return DossierApi(svc).ReturnResult(requests(), None)
    finally:
        reset_principal(token)


@pytest.fixture
def processed(host: ServiceHost) -> str:
    svc = service(host)
    code = submit(svc)
    move(svc, code, "receive", "process", "approve")
    return code


def test_an_unsigned_result_is_signed_by_the_agency_and_stored_with_the_change(
    host: ServiceHost, dev_pki: DevPki, tmp_path: Path, processed: str
) -> None:
    svc = service(host)
    data = plain_pdf()
    done = upload(svc, processed, data)
    assert done.dossier.status == int(Status.RESULT_RETURNED)
    assert done.document.kind == dossier_pb2.DOCUMENT_KIND_RESULT
    stored = fetch(svc, CITIZEN, done.document.id)
    assert stored != data and hashlib.sha256(stored).hexdigest() == done.document.sha256
    check_signed(stored, dev_pki, tmp_path)
    kinds = [d.kind for d in documents.list_documents(svc, CITIZEN, processed)]
    assert kinds[-2:] == ["result", "control"]
    last = events_pb2.DocumentIssued.FromString(issued_events(host)[-2][1])
    assert (last.document.id, last.document.sha256) == (done.document.id, done.document.sha256)


def test_a_result_the_agency_signed_is_kept_byte_for_byte(
    host: ServiceHost, dev_pki: DevPki, processed: str
) -> None:
    svc = service(host)
    data = signed_by(AGENCY, dev_pki)
    done = upload(svc, processed, data)
    assert fetch(svc, OFFICER, done.document.id) == data
    assert done.document.sha256 == hashlib.sha256(data).hexdigest()


def _refused(
    host: ServiceHost, processed: str, field: str, match: str, data: bytes, **h: Any
) -> None:
    svc = service(host)
    before, count = svc.get(OFFICER, processed), stored_count(host)
    events_before = len(issued_events(host))
    with pytest.raises(InvalidArgument, match=match) as refused:
        upload(svc, processed, data, **h)
    assert refused.value.field == field
    after = svc.get(OFFICER, processed)
    assert (after.version, after.status) == (before.version, before.status)
    assert stored_count(host) == count and len(issued_events(host)) == events_before


def test_a_result_signed_by_another_agency_is_refused_naming_agency(
    host: ServiceHost, dev_pki: DevPki, processed: str
) -> None:
    _refused(host, processed, "document", "agency: ", signed_by("STP", dev_pki))


def test_a_signed_result_changed_by_one_byte_is_refused_naming_integrity(
    host: ServiceHost, dev_pki: DevPki, processed: str
) -> None:
    data = bytearray(signed_by(AGENCY, dev_pki))
    at = data.index(b"stream\n", data.index(b"/Contents")) + 10  # inside the page's content
    data[at] ^= 0x01
    _refused(host, processed, "document", "integrity: ", bytes(data))


@pytest.mark.parametrize(
    ("field", "match", "header"),
    [
        ("size_bytes", "between 1 and", {"size_bytes": LIMIT + 1}),
        ("media_type", "application/pdf", {"media_type": "image/png"}),
        ("sha256", "does not match", {"sha256": "0" * 64}),
        ("sha256", "64 lower-case", {"sha256": "ABC"}),
        ("header", "first message must be the header", {"no_header": True}),
        ("size_bytes", "more bytes were sent", {"size_bytes": 100}),
        ("size_bytes", "bytes were sent", {"size_bytes": 10**5 + 7}),
        ("filename", "ending in .pdf", {"filename": "../ket-qua.exe"}),
    ],
)
def test_a_bad_upload_is_refused_naming_the_field_and_nothing_changes(
    host: ServiceHost, processed: str, field: str, match: str, header: dict[str, Any]
) -> None:
    _refused(host, processed, field, match, plain_pdf(), **header)


def test_an_oversize_stream_is_refused_and_not_a_pdf_is_refused(
    host: ServiceHost, processed: str
) -> None:
    _refused(host, processed, "document", "not a PDF", b"GIF89a" + b"\x00" * 100)
    _refused(host, processed, "size_bytes", "more bytes", b"%PDF-" + b"0" * LIMIT, size_bytes=LIMIT)


def test_only_the_agency_officer_returns_the_result(host: ServiceHost, processed: str) -> None:
    svc = service(host)
    with pytest.raises(NotFound):
        upload(svc, processed, plain_pdf(), principal=STRANGER)
    with pytest.raises(PermissionDenied):
        upload(svc, processed, plain_pdf(), principal=CITIZEN)
    assert svc.get(OFFICER, processed).status is Status.PROCESSED


# -- GetDocument ---------------------------------------------------------------------------------
def test_get_document_serves_the_stored_bytes_to_those_who_may_see_the_dossier(
    host: ServiceHost,
) -> None:
    svc = service(host)
    code = submit(svc)
    move(svc, code, "receive")
    receipt = documents.list_documents(svc, OFFICER, code)[0]
    stored = documents.get_document(svc, OFFICER, receipt.id).content
    for allowed in (CITIZEN, OFFICER, NOTIFY):
        assert fetch(svc, allowed, receipt.id) == stored
    for outsider in (OTHER_CITIZEN, STRANGER):
        with pytest.raises(NotFound):
            fetch(svc, outsider, receipt.id)
        with pytest.raises(NotFound):
            documents.list_documents(svc, outsider, code)
    with pytest.raises(NotFound):
        fetch(svc, OFFICER, "0" * 32)
