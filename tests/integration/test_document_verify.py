"""`motcua document verify` against a real audit service process (Kafka + PostgreSQL): a paper
signed in the session's SoftHSM2 token, its document_issued event published on
motcua.dossier.v1 as the dossier service would, recorded by audit, then checked end to end."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from harness import Kafka, Postgres, ServiceProcess, wait_for
from motcua import topics
from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_documents import keyring
from motcua_documents.devpki import DevPki
from motcua_documents.model import FormContent
from motcua_documents.render import render
from motcua_documents.samples import SAMPLES
from motcua_documents.signing import sign
from motcua_kit.envelope import Event, encode
from motcua_ops.cli import app

pytestmark = pytest.mark.integration

runner = CliRunner()


def _key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _paper(dev_pki: DevPki, code: str, number: str) -> bytes:
    data = {**SAMPLES["receipt"], "dossier_code": code, "number": number}
    data["agency"] = {**data["agency"], "code": "STP"}
    return sign(render(FormContent.build(data)).pdf, keyring.load(dev_pki.keyring).key_for("STP"))


def _publish(kafka: Kafka, code: str, document_id: str, pdf: bytes) -> Event:
    from kafka import KafkaProducer

    event = Event.new(
        source="/motcua/dossier",
        type=topics.DOSSIER_DOCUMENT_ISSUED,
        subject=code,
        message=events_pb2.DocumentIssued(
            dossier=dossier_pb2.Dossier(code=code),
            document=dossier_pb2.IssuedDocument(
                id=document_id,
                dossier_code=code,
                kind=dossier_pb2.DOCUMENT_KIND_RECEIPT,
                media_type="application/pdf",
                size_bytes=len(pdf),
                sha256=hashlib.sha256(pdf).hexdigest(),
                signature_level="B-B",
                filename=f"{code}-receipt.pdf",
            ),
        ),
    )
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    try:
        record = encode(event)
        producer.send(
            topics.DOSSIER_TOPIC, key=record.key, value=record.value, headers=record.headers
        )
        producer.flush(30)
    finally:
        producer.close()
    return event


def _verify(path: Path, *args: str) -> tuple[int, dict[str, str], str]:
    result = runner.invoke(app, ["document", "verify", str(path), *args])
    lines = {}
    for line in result.output.splitlines():
        check, sep, verdict = line.partition(": ")
        if sep and check in ("signature", "chain", "timestamp", "audit"):
            lines[check] = verdict
    return result.exit_code, lines, result.output


def test_a_recorded_paper_verifies_end_to_end_and_the_refusals_are_named(
    kafka: Kafka,
    postgres: Postgres,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    dev_pki: DevPki,
    tmp_path: Path,
) -> None:
    private, public = _key_pair(tmp_path, "audit")
    _, stranger = _key_pair(tmp_path, "stranger")
    proc = service_factory("audit", postgres.create_database("audit")).start(
        SIGNING_KEY_FILE=str(private), TREE_HEAD_INTERVAL_SECONDS="3600"
    )
    code = f"STP-261204-{random.randrange(10_000):04d}"
    pdf = _paper(dev_pki, code, "1/TTPVHCC")
    sha = hashlib.sha256(pdf).hexdigest()
    paper = tmp_path / "receipt.pdf"
    paper.write_bytes(pdf)
    root = tmp_path / "root.pem"
    root.write_bytes(dev_pki.root.pem())
    citizen = token("citizen", citizen_id="079203004567")
    event = _publish(kafka, code, f"doc-{random.randrange(10**9)}", pdf)

    # Sequenced: the entry is in the log (GetDocumentProof answers only for sequenced ones).
    with grpc.insecure_channel(proc.target) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        md = [("authorization", f"Bearer {citizen}")]
        got = wait_for(
            lambda: stub.GetDocumentProof(
                audit_pb2.GetDocumentProofRequest(sha256=sha), metadata=md, timeout=10
            ),
            90,
            0.2,
            "audit to record the document_issued event",
        )
        assert got.entry.event_id == event.id and got.entry.dossier_code == code
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetDocumentProof(
                audit_pb2.GetDocumentProofRequest(sha256=sha.upper()), metadata=md, timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "sha256" in (refused.value.details() or "")

    common = ["--trust-root", str(root), "--agency", "STP", "--audit", proc.target]
    common += ["--token", citizen]
    status, lines, out = _verify(paper, *common, "--audit-key", str(public))
    assert status == 0, out
    assert all(lines[c].startswith("ok") for c in ("signature", "chain", "timestamp", "audit")), out
    assert f"of dossier {code}" in lines["audit"] and "pinned key" in lines["audit"], out
    assert out.rstrip().endswith("verified: every check passed")

    # The key fetched from the service, not pinned: it passes, and says so.
    status, lines, out = _verify(paper, *common)
    assert status == 0 and "NOT pinned" in lines["audit"], out

    # A paper whose hash was never recorded: signed by the same agency, but never issued.
    never = tmp_path / "never.pdf"
    never.write_bytes(_paper(dev_pki, code, "2/TTPVHCC"))
    status, lines, out = _verify(never, *common, "--audit-key", str(public))
    assert status == 1, out
    assert lines["signature"].startswith("ok") and lines["chain"].startswith("ok"), out
    assert lines["audit"].startswith("FAILED: no entry"), out

    # The tree head checked against another pinned key.
    status, lines, out = _verify(paper, *common, "--audit-key", str(stranger))
    assert status == 1, out
    assert lines["audit"].startswith("FAILED: the tree head's signature"), out
    assert out.rstrip().endswith("FAILED: audit")
