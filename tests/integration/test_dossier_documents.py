"""Issue 18 over the real parts: the dossier service as a process on PostgreSQL with the
session's SoftHSM2 keyring, its outbox relay to the real broker, real gRPC streams.

Receiving a dossier announces its signed receipt on motcua.dossier.v1 (id and SHA-256, no
bytes); GetDocument streams bytes with exactly that SHA-256; ReturnResult streams a PDF in
chunks and gets it back signed by the agency.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from reportlab.pdfgen.canvas import Canvas

from dossier_client import DossierClient, submit_request
from harness import Kafka, Postgres, ServiceProcess, header, read_topic, wait_for
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_documents import keyring
from motcua_documents.devpki import DevPki
from motcua_documents.verify import verify
from motcua_dossier.events import DOCUMENT_ISSUED, TOPIC

pytestmark = pytest.mark.integration

AGENCY = "PHOIAN"  # HT-001's agency


@pytest.fixture
def dossier(
    kafka: Kafka,
    postgres: Postgres,
    dev_pki: DevPki,
    signing_keys: tuple[bytes, Path],
    tmp_path: Path,
) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        "dossier",
        {
            "MOTCUA_DOSSIER_DATABASE_URL": postgres.create_database(
                f"dossier_docs_{uuid.uuid4().hex[:8]}"
            ),
            "MOTCUA_DOSSIER_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MOTCUA_DOSSIER_JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
            "MOTCUA_DOSSIER_CONSUMER_GROUP": f"dossier-{uuid.uuid4().hex[:6]}",
            "MOTCUA_DOSSIER_OUTBOX_POLL_SECONDS": "0.05",
            "MOTCUA_DOSSIER_DOCUMENTS_KEYRING": str(dev_pki.keyring),
            **dev_pki.env(),
        },
        tmp_path,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.terminate()


def _issued(kafka: Kafka, code: str, since_ms: int) -> list[events_pb2.DocumentIssued]:
    """This test's papers of ``code``: other tests' databases issue the same dossier codes to
    the shared broker, so records from before this test started are theirs."""
    found = []
    for record in read_topic(kafka.bootstrap, TOPIC):
        if (
            record.key == code.encode()
            and record.timestamp >= since_ms
            and header(record, "ce_type") == DOCUMENT_ISSUED.encode()
        ):
            found.append(events_pb2.DocumentIssued.FromString(record.value))
    return found


def _download(client: DossierClient, document_id: str) -> tuple[dossier_pb2.IssuedDocument, bytes]:
    stream = list(
        client.stub.GetDocument(
            dossier_pb2.GetDocumentRequest(document_id=document_id),
            metadata=client.metadata,
            timeout=30,
        )
    )
    assert stream[0].WhichOneof("part") == "document"
    return stream[0].document, b"".join(m.chunk for m in stream[1:])


def _transition(client: DossierClient, code: str, action: str, version: int) -> int:
    return client.stub.TransitionDossier(
        dossier_pb2.TransitionDossierRequest(code=code, action=action, expected_version=version),
        metadata=client.metadata,
        timeout=60,
    ).dossier.version


def _pdf() -> bytes:
    buf = io.BytesIO()
    canvas = Canvas(buf, invariant=1)
    canvas.drawString(72, 720, "Trich luc khai sinh (ban sao)")
    canvas.showPage()
    canvas.save()
    return buf.getvalue()


def test_signed_papers_are_announced_served_and_results_streamed_over_real_grpc(
    dossier: ServiceProcess, kafka: Kafka, dev_pki: DevPki, token: Callable[..., str]
) -> None:
    citizen = DossierClient(dossier.target, token("citizen", citizen_id="079203004567"))
    officer = DossierClient(dossier.target, token("officer", agency=AGENCY))
    stranger = DossierClient(dossier.target, token("officer", agency="STP"))
    roots = keyring.load(dev_pki.keyring).trust_roots
    since_ms = int(time.time() * 1000)
    try:
        filed = citizen.submit(submit_request("HT-001", f"docs-{uuid.uuid4().hex}")).dossier
        version = _transition(officer, filed.code, "receive", filed.version)

        announced = wait_for(
            lambda: found if len(found := _issued(kafka, filed.code, since_ms)) >= 2 else None,
            30,
            0.2,
            "the receipt and control sheet on motcua.dossier.v1",
        )
        receipt = announced[0].document
        assert receipt.kind == dossier_pb2.DOCUMENT_KIND_RECEIPT and len(receipt.id) == 32
        meta, data = _download(citizen, receipt.id)
        assert hashlib.sha256(data).hexdigest() == receipt.sha256 == meta.sha256
        assert verify(data, roots, agency_code=AGENCY).ok
        with pytest.raises(grpc.RpcError) as refused:
            _download(stranger, receipt.id)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND

        for action in ("process", "approve"):
            version = _transition(officer, filed.code, action, version)
        result = _pdf()
        head = dossier_pb2.ReturnResultHeader(
            code=filed.code,
            expected_version=version,
            comment="Trả kết quả trực tuyến",
            filename="trich-luc.pdf",
            media_type="application/pdf",
            size_bytes=len(result),
            sha256=hashlib.sha256(result).hexdigest(),
        )
        chunks = [result[i : i + 1000] for i in range(0, len(result), 1000)]
        requests = [dossier_pb2.ReturnResultRequest(header=head)] + [
            dossier_pb2.ReturnResultRequest(chunk=c) for c in chunks
        ]
        with pytest.raises(grpc.RpcError) as missing:  # chunks without the header first
            officer.stub.ReturnResult(iter(requests[1:]), metadata=officer.metadata, timeout=60)
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "header" in (missing.value.details() or "")
        done = officer.stub.ReturnResult(iter(requests), metadata=officer.metadata, timeout=60)
        assert done.dossier.status == dossier_pb2.DOSSIER_STATUS_RESULT_RETURNED
        _meta, signed = _download(citizen, done.document.id)
        assert hashlib.sha256(signed).hexdigest() == done.document.sha256
        assert verify(signed, roots, agency_code=AGENCY).ok
        listed = citizen.stub.ListDocuments(
            dossier_pb2.ListDocumentsRequest(code=filed.code), metadata=citizen.metadata
        ).documents
        assert [d.kind for d in listed][-2:] == [
            dossier_pb2.DOCUMENT_KIND_RESULT,
            dossier_pb2.DOCUMENT_KIND_CONTROL_SHEET,
        ]
        wait_for(
            lambda: any(
                e.document.id == done.document.id for e in _issued(kafka, filed.code, since_ms)
            ),
            30,
            0.2,
            "the result's document_issued event",
        )
    finally:
        for client in (citizen, officer, stranger):
            client.close()
