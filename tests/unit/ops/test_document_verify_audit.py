"""The CLI's audit check on answers of a real in-process audit service (SQLite): every claim
of GetDocumentProof is checked by the CLI itself, so each tampering is named."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from unit.audit.conftest import as_principal, host, key_files, service, settings

from motcua import topics
from motcua.audit.v1 import audit_pb2
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_audit.adapters.grpc_api import AuditApi
from motcua_documents.model import FormContent
from motcua_documents.render import render
from motcua_documents.samples import SAMPLES
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_ops.document import check_entry, claimed_dossier

__all__ = ["as_principal", "host", "key_files", "service", "settings"]

CODE = "STP-261204-0001"
PDF = b"%PDF-1.7 the signed paper"
SHA = hashlib.sha256(PDF).hexdigest()


def record(service, event_type: str = topics.DOSSIER_DOCUMENT_ISSUED, code: str = CODE) -> None:
    event = Event.new(
        source="/motcua/dossier",
        type=event_type,
        subject=code,
        message=events_pb2.DocumentIssued(
            dossier=dossier_pb2.Dossier(code=code),
            document=dossier_pb2.IssuedDocument(id="doc-1", dossier_code=code, sha256=SHA),
        ),
    )
    with transaction(service.context.sessions) as session:
        service.record_dossier_event(event, None, session)
    service.sequence_staged()


@pytest.fixture
def answer(service, as_principal) -> audit_pb2.GetDocumentProofResponse:
    for i in range(3):
        record(service, topics.DOSSIER_RECEIVED, f"STP-261204-000{i + 2}")
    record(service)
    as_principal("citizen-1", "citizen")
    return AuditApi(service).GetDocumentProof(audit_pb2.GetDocumentProofRequest(sha256=SHA), None)


@pytest.fixture
def keys(service):
    return service.key_ring.public_keys


def test_a_true_answer_passes_and_says_whether_the_key_was_pinned(answer, keys):
    got = check_entry(answer, SHA, CODE, keys, pinned=True)
    assert got.ok, got.detail
    assert got.detail.startswith(f"entry 3: document doc-1 of dossier {CODE}, recorded")
    assert "pinned key" in got.detail and "NOT pinned" not in got.detail
    fetched = check_entry(answer, SHA, None, keys, pinned=False)
    assert (
        fetched.ok and "NOT pinned" in fetched.detail and "(the paper names none)" in fetched.detail
    )


def test_another_key_fails_naming_the_tree_head(answer):
    other = Ed25519PrivateKey.generate().public_key()
    got = check_entry(answer, SHA, CODE, {answer.tree_head.key_id: other}, pinned=True)
    assert not got.ok and got.detail.startswith("the tree head's signature"), got.detail
    assert "pinned audit key" in got.detail


def test_a_changed_audit_path_fails_the_inclusion_proof(answer, keys):
    path = answer.entry.inclusion_proof.audit_path
    path[0] = bytes(32)
    got = check_entry(answer, SHA, CODE, keys, pinned=True)
    assert not got.ok and "inclusion proof" in got.detail, got.detail


def test_a_changed_root_fails(answer, keys):
    answer.tree_head.root_hash = bytes(32)
    got = check_entry(answer, SHA, CODE, keys, pinned=True)
    assert not got.ok and "inclusion proof" in got.detail, got.detail


def test_a_changed_canonical_entry_fails(answer, keys):
    answer.entry.canonical_entry = answer.entry.canonical_entry[:-1]
    got = check_entry(answer, SHA, CODE, keys, pinned=True)
    assert not got.ok and "canonical" in got.detail, got.detail


def test_an_entry_of_another_hash_or_dossier_fails(answer, keys):
    other = hashlib.sha256(b"another paper").hexdigest()
    got = check_entry(answer, other, CODE, keys, pinned=True)
    assert not got.ok and f"does not name SHA-256 {other}" in got.detail
    got = check_entry(answer, SHA, "STP-261204-0009", keys, pinned=True)
    assert not got.ok and "the paper names STP-261204-0009" in got.detail


def test_a_leaf_hash_that_is_not_the_entrys_fails(answer, keys):
    answer.entry.leaf_hash = bytes(32)
    got = check_entry(answer, SHA, CODE, keys, pinned=True)
    assert not got.ok and "leaf hash" in got.detail


def test_the_dossier_is_read_from_the_paper_or_its_file_name():
    data = {**SAMPLES["receipt"], "dossier_code": CODE}
    pdf = render(FormContent.build(data)).pdf
    assert claimed_dossier(pdf, "anything.pdf") == CODE
    assert claimed_dossier(b"not a pdf", "STP-261204-0007-receipt.pdf") == "STP-261204-0007"
    assert claimed_dossier(b"not a pdf", "paper.pdf") is None
