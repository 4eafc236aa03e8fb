"""Issue 18 end to end: the whole suite as processes, with the signed papers turned on.

dossier signs with the session's SoftHSM2 token and a local RFC 3161 TSA (PAdES B-T); notify
fetches the receipt slip and the result with its service token and attaches them; audit
records each paper's hash. Every paper is then checked the way a bank or a court would:
poppler's ``pdfsig`` against an NSS database trusting the root, and ``motcua document verify``
with the root and the audit log's key pinned, including the inclusion proof.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from reportlab.pdfgen.canvas import Canvas

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import Kafka, Postgres, free_port, wait_for
from motcua.dossier.v1 import dossier_pb2
from motcua_documents.devpki import DevPki
from motcua_documents.local_tsa import LocalTsa
from suite import Suite, running_suite, transition, unique_email

pytestmark = pytest.mark.integration

AGENCY = "PHOIAN"  # HT-001's agency
KIND = dossier_pb2.DocumentKind


@pytest.fixture(scope="module")
def tsa(dev_pki: DevPki) -> Iterator[LocalTsa]:
    with LocalTsa(dev_pki.tsa.asn1, dev_pki.tsa.asn1_key, chain=(dev_pki.root.asn1,)) as local:
        yield local


@pytest.fixture(scope="module")
def suite(
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    token: Callable[..., str],
    dev_pki: DevPki,
    tsa: LocalTsa,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Suite]:
    folder = tmp_path_factory.mktemp("suite-documents")
    notify_token = folder / "notify-dossier.token"
    notify_token.write_text(token("service", subject="notify"))
    extra = {
        "dossier": {
            "DOCUMENTS_KEYRING": str(dev_pki.keyring),
            "DOCUMENTS_TSA_URL": tsa.url,
        },
        "notify": {"DOSSIER_TOKEN_FILE": str(notify_token)},
        "audit": {"DEV_SIGNING_KEY_FILE": str(folder / "audit-signing-key.pem")},
    }
    # running_suite starts dossier last: its port is chosen here, for notify's target too.
    port = free_port()
    extra["dossier"]["GRPC_PORT"] = str(port)
    extra["notify"]["DOSSIER_GRPC_TARGET"] = f"127.0.0.1:{port}"
    with running_suite(kafka, postgres, signing_keys, token, folder, extra) as s:
        yield s


@pytest.fixture(scope="module")
def audit_key(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The audit log's public key, pinned the way a verifier keeps it."""
    private = Path(suite.services["audit"].env["MOTCUA_AUDIT_DEV_SIGNING_KEY_FILE"])
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    path = tmp_path_factory.mktemp("pinned") / "audit-public-key.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _papers(client: DossierClient, code: str) -> list[dossier_pb2.IssuedDocument]:
    return list(
        client.stub.ListDocuments(
            dossier_pb2.ListDocumentsRequest(code=code), metadata=client.metadata, timeout=30
        ).documents
    )


def _fetch(client: DossierClient, doc: dossier_pb2.IssuedDocument) -> bytes:
    stream = list(
        client.stub.GetDocument(
            dossier_pb2.GetDocumentRequest(document_id=doc.id),
            metadata=client.metadata,
            timeout=30,
        )
    )
    data = b"".join(m.chunk for m in stream[1:])
    assert hashlib.sha256(data).hexdigest() == doc.sha256
    return data


def _verify_cli(
    suite: Suite, path: Path, dev_pki: DevPki, audit_key: Path, token: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "motcua_ops",
            "document",
            "verify",
            str(path),
            "--trust-root",
            str(dev_pki.root_pem),
            "--agency",
            AGENCY,
            "--audit",
            suite.services["audit"].target,
            "--audit-key",
            str(audit_key),
            "--require-timestamp",
        ],
        env={**os.environ, "MOTCUA_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _checked(
    suite: Suite,
    client: DossierClient,
    doc: dossier_pb2.IssuedDocument,
    dev_pki: DevPki,
    audit_key: Path,
    folder: Path,
    token: str,
) -> bytes:
    """Fetch the paper as the citizen, then both verifiers must accept it."""
    data = _fetch(client, doc)
    path = folder / doc.filename
    path.write_bytes(data)
    sig = subprocess.run(
        ["pdfsig", "-nssdir", dev_pki.nssdir, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "Signature is Valid" in sig and "Certificate is Trusted" in sig, sig
    # audit records the hash once it consumed the event: wait for the log, not a fixed time.
    done = wait_for(
        lambda: (
            r
            if (r := _verify_cli(suite, path, dev_pki, audit_key, token)).returncode == 0
            else None
        ),
        90,
        0.5,
        f"motcua document verify to pass for {doc.filename}",
    )
    for check in ("signature: ok", "chain: ok", "timestamp: ok", "audit: ok"):
        assert check in done.stdout, done.stdout
    assert doc.id in done.stdout and "pinned key" in done.stdout
    return data


def _result_pdf() -> bytes:
    buf = io.BytesIO()
    canvas = Canvas(buf, invariant=1)
    canvas.drawString(72, 720, "Ban sao trich luc khai sinh")
    canvas.showPage()
    canvas.save()
    return buf.getvalue()


def _return_result(
    officer: DossierClient, d: dossier_pb2.Dossier, data: bytes
) -> dossier_pb2.ReturnResultResponse:
    head = dossier_pb2.ReturnResultHeader(
        code=d.code,
        expected_version=d.version,
        filename="trich-luc.pdf",
        media_type="application/pdf",
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    parts = [dossier_pb2.ReturnResultRequest(header=head)] + [
        dossier_pb2.ReturnResultRequest(chunk=data[i : i + 700]) for i in range(0, len(data), 700)
    ]
    response: dossier_pb2.ReturnResultResponse = officer.stub.ReturnResult(
        iter(parts), metadata=officer.metadata, timeout=60
    )
    return response


def _attached(suite: Suite, email: str, filename: str) -> bytes:
    def find() -> bytes | None:
        for message in suite.smtp.to(email):
            for part in message.iter_attachments():
                if part.get_filename() == filename:
                    return bytes(part.get_content())
        return None

    found: bytes = wait_for(find, 90, 0.3, f"{filename} attached to an email to {email}")
    return found


def test_receipt_at_intake_and_result_on_return_are_signed_emailed_and_audited(
    suite: Suite, dev_pki: DevPki, audit_key: Path, tmp_path: Path
) -> None:
    email = unique_email()
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency=AGENCY)
    viewer = suite.token("officer", agency=AGENCY)
    d = citizen.submit(submit_request("HT-001", f"e2e-doc-{uuid.uuid4()}", email=email)).dossier
    d = transition(officer, d, "receive")
    issued = _papers(citizen, d.code)
    assert [p.kind for p in issued] == [
        KIND.DOCUMENT_KIND_RECEIPT,
        KIND.DOCUMENT_KIND_CONTROL_SHEET,
    ]
    receipt = issued[0]
    assert receipt.form_number and receipt.signature_level == "B-T"
    receipt_pdf = _checked(suite, citizen, receipt, dev_pki, audit_key, tmp_path, viewer)
    _checked(suite, citizen, issued[1], dev_pki, audit_key, tmp_path, viewer)
    assert _attached(suite, email, receipt.filename) == receipt_pdf

    d = transition(officer, d, "process")
    d = transition(officer, d, "approve")
    returned = _return_result(officer, d, _result_pdf())
    assert returned.dossier.status == dossier_pb2.DOSSIER_STATUS_RESULT_RETURNED
    result = returned.document
    assert result.kind == KIND.DOCUMENT_KIND_RESULT
    result_pdf = _checked(suite, citizen, result, dev_pki, audit_key, tmp_path, viewer)
    assert _attached(suite, email, result.filename) == result_pdf
    # the SMS names where to fetch the result
    wait_for(
        lambda: any(result.id in str(m) for m in suite.sms_a.messages + suite.sms_b.messages),
        60,
        0.3,
        "the SMS naming the result's link",
    )

    # A changed byte, and a paper the log never recorded, are refused with their reasons.
    tampered = bytearray(receipt_pdf)
    at = tampered.index(b"motcua-documents")  # the Creator, inside the signed range
    tampered[at] = ord("M")
    bad = tmp_path / "tampered.pdf"
    bad.write_bytes(bytes(tampered))
    out = _verify_cli(suite, bad, dev_pki, audit_key, viewer)
    assert out.returncode == 1, out.stdout
    assert "signature: FAILED" in out.stdout and "integrity" in out.stdout, out.stdout
    assert "audit: FAILED" in out.stdout and "no entry" in out.stdout, out.stdout


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("refusal", KIND.DOCUMENT_KIND_REFUSAL),
        ("supplement", KIND.DOCUMENT_KIND_SUPPLEMENT_REQUEST),
        ("apology", KIND.DOCUMENT_KIND_APOLOGY),
    ],
)
def test_refusal_supplement_and_apology_each_produce_a_form_that_verifies(
    suite: Suite, dev_pki: DevPki, audit_key: Path, tmp_path: Path, path: str, kind: int
) -> None:
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency=AGENCY)
    viewer = suite.token("officer", agency=AGENCY)
    d = citizen.submit(
        submit_request("HT-001", f"e2e-{path}-{uuid.uuid4()}", email=unique_email())
    ).dossier
    if path == "refusal":
        transition(officer, d, "reject", "Tờ khai không có chữ ký của người yêu cầu")
    elif path == "supplement":
        d = transition(officer, d, "receive")
        d = transition(officer, d, "process")
        transition(officer, d, "request_supplement", "Bản sao giấy chứng nhận kết hôn")
    else:
        transition(officer, d, "receive")
        _scan_deadlines_later(suite, dev_pki)
    (form,) = [p for p in _papers(citizen, d.code) if p.kind == kind]
    _checked(suite, citizen, form, dev_pki, audit_key, tmp_path, viewer)


def _scan_deadlines_later(suite: Suite, dev_pki: DevPki) -> None:
    """The deadline scanner, run as the dossier service's timer would ten days on, on the
    service's own database and keyring; the running process's relay publishes what it wrote."""
    from motcua_dossier.service import DossierService
    from motcua_dossier.settings import DossierSettings
    from motcua_kit.service import ServiceHost

    later = datetime.now(UTC) + timedelta(days=10)
    host = ServiceHost(
        DossierService,
        DossierSettings(
            database_url=suite.urls["dossier"],
            documents_keyring=str(dev_pki.keyring),
            documents_tsa_url=suite.services["dossier"].env["MOTCUA_DOSSIER_DOCUMENTS_TSA_URL"],
        ),
        overrides={"clock": lambda: later},
    )
    service = host.service
    assert isinstance(service, DossierService)
    assert service.scan_deadlines() >= 1
    host.engine.dispose()
