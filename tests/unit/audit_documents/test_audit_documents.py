"""Issued documents in the audit log: the document_issued entry's resource, its index, and
GetDocumentProof, in-process on a real SQLite database (ADR 0087)."""

from __future__ import annotations

import hashlib

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from motcua import topics
from motcua.audit.v1 import audit_pb2
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_audit.adapters import db
from motcua_audit.adapters.grpc_api import AuditApi
from motcua_audit.domain.documents import document_resource, parse_document_resource
from motcua_audit.domain.entry import Entry
from motcua_audit.domain.merkle import leaf_hash, verify_inclusion
from motcua_audit.domain.tree_head import SignedTreeHead, TreeHead, verify_tree_head
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument, NotFound, Unauthenticated

CODE = "STP-261204-0001"
DOSSIER_TOPIC = topics.DOSSIER_TOPIC


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def issued(doc_id: str = "doc-1", digest: str | None = None, code: str = CODE) -> Event:
    return Event.new(
        source="/motcua/dossier",
        type=topics.DOSSIER_DOCUMENT_ISSUED,
        subject=code,
        message=events_pb2.DocumentIssued(
            dossier=dossier_pb2.Dossier(code=code),
            document=dossier_pb2.IssuedDocument(
                id=doc_id,
                dossier_code=code,
                kind=dossier_pb2.DOCUMENT_KIND_RECEIPT,
                sha256=sha(doc_id.encode()) if digest is None else digest,
            ),
        ),
    )


def consume(service, event: Event, *, batch: bool = False) -> None:
    """What the consumer runner does (per event, or a poll's batch), then the sequencer."""
    with transaction(service.context.sessions) as session:
        if batch:
            service.record_events(DOSSIER_TOPIC, [(event, None)], session)
        else:
            service.record_dossier_event(event, None, session)
    service.sequence_staged()


def stage_only(service, event: Event) -> None:
    with transaction(service.context.sessions) as session:
        service.record_dossier_event(event, None, session)


def entries(service) -> list[db.StoredEntry]:
    with service.context.sessions() as session:
        return db.AuditLogRepository.range(session, 0, 1000)


def without_resource() -> float:
    return REGISTRY.get_sample_value("motcua_audit_documents_without_resource_total") or 0.0


# -- the resource ---------------------------------------------------------------------------


def test_the_resource_names_the_document_and_parses_back():
    digest = sha(b"x")
    assert document_resource("doc-1", digest) == f"document:doc-1:sha256:{digest}"
    assert parse_document_resource(f"document:doc-1:sha256:{digest}") == ("doc-1", digest)
    assert parse_document_resource(f"document:a:b:sha256:{digest}") == ("a:b", digest)
    for bad_id, bad_hash in [
        ("", digest),
        (" doc", digest),
        ("doc\n", digest),
        ("x" * 201, digest),
        ("doc", digest.upper()),
        ("doc", digest[:-1]),
        ("doc", digest + "0"),
        ("doc", "g" * 64),
    ]:
        assert document_resource(bad_id, bad_hash) is None
    assert parse_document_resource("applicant.phone") is None
    assert parse_document_resource(f"document:doc-1:sha256:{digest.upper()}") is None


@pytest.mark.parametrize("batch", [False, True], ids=["per-event", "batch"])
def test_a_document_issued_event_records_the_documents_hash_as_its_resource(service, batch):
    event = issued("doc-7", sha(b"the signed pdf"))
    consume(service, event, batch=batch)
    (stored,) = entries(service)
    entry = stored.entry
    assert entry.event_type == topics.DOSSIER_DOCUMENT_ISSUED and entry.dossier_code == CODE
    assert entry.resource == f"document:doc-7:sha256:{sha(b'the signed pdf')}"
    assert entry.payload_sha256 == hashlib.sha256(event.data).digest()
    assert stored.leaf_hash == leaf_hash(stored.canonical)
    with service.context.sessions() as session:
        indexed = session.scalar(select(db.entries.c.document_sha256))
    assert indexed == sha(b"the signed pdf")


def test_other_events_keep_an_empty_resource_so_their_leaves_do_not_change(service):
    event = Event.new(
        source="/motcua/dossier",
        type=topics.DOSSIER_RECEIVED,
        subject=CODE,
        message=events_pb2.DossierStatusChanged(action="receive"),
    )
    consume(service, event)
    (stored,) = entries(service)
    assert stored.entry.resource == ""
    with service.context.sessions() as session:
        assert session.scalar(select(db.entries.c.document_sha256)) is None


@pytest.mark.parametrize(
    ("doc_id", "digest"),
    [("", sha(b"a")), ("doc-2", sha(b"a").upper()), ("doc-3", "abc"), ("doc-4", "")],
    ids=["no-id", "upper-case", "short", "no-hash"],
)
def test_a_malformed_document_payload_is_recorded_without_a_resource_and_counted(
    service, doc_id, digest
):
    before = without_resource()
    event = issued(doc_id, digest)
    consume(service, event)
    (stored,) = entries(service)
    assert stored.entry.event_id == event.id  # recorded, not dropped
    assert stored.entry.resource == ""
    assert without_resource() == before + 1
    with service.context.sessions() as session:
        assert session.scalar(select(db.entries.c.document_sha256)) is None


def test_an_access_record_naming_a_document_resource_never_answers_for_a_paper(
    service, as_principal
):
    digest = sha(b"forged")
    as_principal("officer-7", "officer", agency="STP")
    api = AuditApi(service)
    api.RecordAccess(
        audit_pb2.RecordAccessRequest(
            record_id="r-1",
            dossier_code=CODE,
            purpose="Xem giấy tờ",
            resource=f"document:doc-9:sha256:{digest}",
        ),
        None,
    )
    with pytest.raises(NotFound):
        api.GetDocumentProof(audit_pb2.GetDocumentProofRequest(sha256=digest), None)


# -- GetDocumentProof -------------------------------------------------------------------------


def test_get_document_proof_returns_the_entry_and_a_proof_against_a_signed_head(
    service, as_principal
):
    for i in range(5):
        consume(service, issued(f"doc-{i}", sha(f"pdf {i}".encode())))
    head_before = service.sign_tree_head()
    consume(service, issued("doc-late", sha(b"late pdf")))  # not covered by the latest head
    as_principal("citizen-1", "citizen")
    api = AuditApi(service)

    got = api.GetDocumentProof(audit_pb2.GetDocumentProofRequest(sha256=sha(b"pdf 3")), None)
    entry, head = got.entry, got.tree_head
    assert entry.index == 3 and entry.resource == f"document:doc-3:sha256:{sha(b'pdf 3')}"
    assert entry.leaf_hash == leaf_hash(entry.canonical_entry)
    assert Entry.decode(entry.canonical_entry).resource == entry.resource
    assert (head.tree_size, head.root_hash) == (5, head_before.head.root_hash)
    assert entry.inclusion_proof.tree_size == head.tree_size
    assert verify_inclusion(
        entry.leaf_hash, 3, head.tree_size, list(entry.inclusion_proof.audit_path), head.root_hash
    )

    late = api.GetDocumentProof(audit_pb2.GetDocumentProofRequest(sha256=sha(b"late pdf")), None)
    assert late.entry.index == 5
    assert late.tree_head.tree_size == 6  # no head covered it: one was signed on demand
    signed = SignedTreeHead(
        TreeHead(
            late.tree_head.tree_size,
            late.tree_head.root_hash,
            late.tree_head.timestamp_ms,
            late.tree_head.key_id,
        ),
        late.tree_head.signature,
    )
    assert verify_tree_head(signed, service.key_ring.public_keys)
    assert verify_inclusion(
        late.entry.leaf_hash,
        5,
        6,
        list(late.entry.inclusion_proof.audit_path),
        late.tree_head.root_hash,
    )


def test_a_hash_recorded_twice_answers_with_the_first_entry(service, as_principal):
    digest = sha(b"the same bytes")
    consume(service, issued("doc-a", digest))
    consume(service, issued("doc-filler", sha(b"other")))
    consume(service, issued("doc-b", digest))  # a replay with a new event id
    as_principal("citizen-1", "citizen")
    got = AuditApi(service).GetDocumentProof(audit_pb2.GetDocumentProofRequest(sha256=digest), None)
    assert got.entry.index == 0 and got.entry.resource.startswith("document:doc-a:")


def test_a_staged_document_is_sequenced_before_the_answer(service, as_principal):
    digest = sha(b"just issued")
    stage_only(service, issued("doc-new", digest))
    assert entries(service) == []  # staged, not in the log yet
    as_principal("citizen-1", "citizen")
    got = AuditApi(service).GetDocumentProof(audit_pb2.GetDocumentProofRequest(sha256=digest), None)
    assert got.entry.index == 0 and got.tree_head.tree_size == 1


@pytest.mark.parametrize(
    "value",
    ["", "abc", sha(b"x").upper(), sha(b"x") + "0", " " + sha(b"x")[1:], "z" * 64],
)
def test_a_malformed_hash_is_refused_naming_sha256_and_writes_nothing(service, as_principal, value):
    consume(service, issued())
    as_principal("citizen-1", "citizen")
    with pytest.raises(InvalidArgument) as refused:
        AuditApi(service).GetDocumentProof(audit_pb2.GetDocumentProofRequest(sha256=value), None)
    assert refused.value.field == "sha256"
    with service.context.sessions() as session:
        assert service.heads.latest(session) is None  # no head was signed


def test_an_unrecorded_hash_is_not_found(service, as_principal):
    consume(service, issued())
    as_principal("citizen-1", "citizen")
    with pytest.raises(NotFound, match="no entry"):
        AuditApi(service).GetDocumentProof(
            audit_pb2.GetDocumentProofRequest(sha256=sha(b"never issued")), None
        )


def test_get_document_proof_needs_an_authenticated_caller(service):
    consume(service, issued("doc-1"))
    with pytest.raises(Unauthenticated):
        AuditApi(service).GetDocumentProof(
            audit_pb2.GetDocumentProofRequest(sha256=sha(b"doc-1")), None
        )
