"""The audit service's use cases and gRPC adapter, in-process on a real SQLite database."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, func, select, text, update

from motcua.audit.v1 import audit_pb2
from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import events_pb2
from motcua_audit.adapters import db
from motcua_audit.adapters.grpc_api import AuditApi
from motcua_audit.adapters.keys import KeyRing, LazyKeyRing, SigningKeyError, load_key_ring
from motcua_audit.domain.entry import EntryKind, Role, citizen_commitment
from motcua_audit.domain.merkle import leaf_hash, verify_consistency, verify_inclusion
from motcua_audit.domain.tree_head import (
    TreeHeadSigner,
    load_public_key_pem,
    private_key_to_pem,
    public_key_to_pem,
    verify_tree_head,
)
from motcua_audit.service import AuditService
from motcua_audit.settings import AuditSettings
from motcua_kit.db import migrate, transaction
from motcua_kit.envelope import EnvelopeError, Event
from motcua_kit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from motcua_kit.service import ServiceHost

CODE = "STP-261129-0001"


def dossier_event(code=CODE, event_type="vn.motcua.dossier.submitted.v1", message=None):
    return Event.new(
        source="/motcua/dossier",
        type=event_type,
        subject=code,
        message=message if message is not None else events_pb2.DossierSubmitted(),
    )


def consume(service, topic, event, parsed=None):
    """What the consumer runner does (the handler stages the entry inside one transaction),
    then what the sequencer does (the staged entry into the log; ADR 0046)."""
    handler = {
        "motcua.dossier.v1": service.record_dossier_event,
        "motcua.payment.v1": service.record_payment_event,
        "motcua.notify.v1": service.record_notify_event,
    }[topic]
    with transaction(service.context.sessions) as session:
        handler(event, parsed, session)
    service.sequence_staged()


def entries_count(service):
    with service.context.sessions() as session:
        return session.scalar(select(func.count()).select_from(db.entries))


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def access_request(**changes):
    fields = dict(
        record_id=f"r-{uuid.uuid4()}",
        citizen_id="079203004567",
        dossier_code=CODE,
        purpose="Xử lý hồ sơ",
        resource="applicant.phone",
    )
    fields.update(changes)
    return audit_pb2.RecordAccessRequest(**fields)


# --------------------------------------------------------------------------------------
# Entries from events
# --------------------------------------------------------------------------------------


def test_every_topic_is_consumed_with_a_wildcard_handler(service):
    topics = {(h.topic, h.event_type) for h in service.handlers()}
    assert topics == {
        ("motcua.dossier.v1", "*"),
        ("motcua.payment.v1", "*"),
        ("motcua.notify.v1", "*"),
    }


def test_events_from_each_topic_become_entries_with_their_attributes(service):
    ev = dossier_event()
    consume(service, "motcua.dossier.v1", ev)
    pay = Event.new(
        source="/motcua/payment",
        type="vn.motcua.payment.succeeded.v1",
        subject=CODE,
        message=events_pb2.DossierSubmitted(),
    )
    consume(service, "motcua.payment.v1", pay)
    consume(service, "motcua.notify.v1", dossier_event(event_type="vn.motcua.notify.sent.v1"))
    with service.context.sessions() as session:
        stored = db.AuditLogRepository.range(session, 0, 3)
    first = stored[0].entry
    assert (first.event_id, first.event_source, first.event_type) == (ev.id, ev.source, ev.type)
    assert first.event_time == ev.time and first.dossier_code == CODE
    assert first.payload_sha256 == hashlib.sha256(ev.data).digest()
    assert first.topic == "motcua.dossier.v1" and first.kind is EntryKind.EVENT
    assert [s.entry.topic for s in stored] == [
        "motcua.dossier.v1",
        "motcua.payment.v1",
        "motcua.notify.v1",
    ]
    # Unknown payloads: the producing service is the actor.
    assert stored[1].entry.actor.subject == "/motcua/payment"
    assert stored[1].entry.actor.role is Role.SERVICE
    assert all(s.leaf_hash == leaf_hash(s.canonical) for s in stored)


def test_the_actor_is_taken_from_known_dossier_payloads(service):
    change = events_pb2.DossierStatusChanged(
        action="receive",
        actor=common_pb2.Actor(
            subject="officer-9", role=common_pb2.ROLE_OFFICER, agency_code="STP"
        ),
    )
    consume(
        service,
        "motcua.dossier.v1",
        dossier_event(event_type="vn.motcua.dossier.received.v1", message=change),
    )
    with service.context.sessions() as session:
        entry = db.AuditLogRepository.range(session, 0, 1)[0].entry
    assert (entry.actor.subject, entry.actor.role, entry.actor.agency_code) == (
        "officer-9",
        Role.OFFICER,
        "STP",
    )


def test_a_known_dossier_type_with_a_garbage_payload_is_poison(service):
    bad = Event(
        id="poison-1",
        source="/x",
        type="vn.motcua.dossier.received.v1",
        subject=CODE,
        time=datetime.now(UTC),
        data=b"\xff\xff\xff not protobuf",
    )
    with pytest.raises(EnvelopeError):
        consume(service, "motcua.dossier.v1", bad)
    assert entries_count(service) == 0


def test_appends_update_the_size_and_latency_metrics(service):
    before = metric("motcua_audit_append_seconds_count")
    consume(service, "motcua.dossier.v1", dossier_event())
    consume(service, "motcua.dossier.v1", dossier_event())
    assert metric("motcua_audit_append_seconds_count") == before + 2
    assert metric("motcua_audit_log_size") == 2


# --------------------------------------------------------------------------------------
# RecordAccess
# --------------------------------------------------------------------------------------


def test_an_officer_records_their_own_access_and_the_citizen_id_stays_out_of_the_log(
    service, as_principal
):
    as_principal("officer-7", "officer", agency="STP")
    response = AuditApi(service).RecordAccess(access_request(), None)
    entry = response.entry
    assert not response.replayed and entry.kind == audit_pb2.ENTRY_KIND_ACCESS
    assert (entry.actor.subject, entry.actor.role, entry.actor.agency_code) == (
        "officer-7",
        common_pb2.ROLE_OFFICER,
        "STP",
    )
    assert entry.purpose == "Xử lý hồ sơ" and entry.resource == "applicant.phone"
    assert entry.event_source == "/motcua/audit/access/officer-7"
    assert entry.event_type == "vn.motcua.audit.access_recorded.v1"
    assert b"079203004567" not in entry.canonical_entry
    with service.context.sessions() as session:
        citizen_id, salt = db.AuditLogRepository.access_subject(session, entry.index)
    assert citizen_id == "079203004567"
    assert entry.citizen_ref == citizen_commitment("079203004567", salt)
    assert leaf_hash(entry.canonical_entry) == entry.leaf_hash


def test_a_service_records_for_the_person_it_acted_for(service, as_principal):
    as_principal("portal", "service")
    request = access_request(
        on_behalf_of=common_pb2.Actor(
            subject="officer-3", role=common_pb2.ROLE_OFFICER, agency_code="STP"
        )
    )
    entry = AuditApi(service).RecordAccess(request, None).entry
    assert (entry.actor.subject, entry.actor.role) == ("officer-3", common_pb2.ROLE_OFFICER)
    assert entry.event_source == "/motcua/audit/access/portal"


def test_the_same_record_id_records_once_and_a_reused_id_is_refused(service, as_principal):
    as_principal("officer-7", "officer", agency="STP")
    api = AuditApi(service)
    request = access_request(record_id="view-42")
    first = api.RecordAccess(request, None)
    again = api.RecordAccess(request, None)
    assert again.replayed and again.entry == first.entry
    with pytest.raises(AlreadyExists):
        api.RecordAccess(access_request(record_id="view-42", purpose="another reason"), None)
    assert entries_count(service) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"record_id": ""}, "record_id"),
        ({"record_id": "has space"}, "record_id"),
        ({"citizen_id": "12345"}, "citizen_id"),
        ({"citizen_id": "", "dossier_code": ""}, "citizen_id"),
        ({"dossier_code": "not a code"}, "dossier_code"),
        ({"purpose": "   "}, "purpose"),
        ({"purpose": "x" * 501}, "purpose"),
        ({"resource": "r" * 201}, "resource"),
        ({"on_behalf_of": common_pb2.Actor(subject="x")}, "on_behalf_of.role"),
        (
            {"on_behalf_of": common_pb2.Actor(subject="x", role=common_pb2.ROLE_OFFICER)},
            "on_behalf_of.agency_code",
        ),
        ({"accessed_at": Timestamp(seconds=4_000_000_000)}, "accessed_at"),
    ],
)
def test_bad_access_records_name_the_field_and_write_nothing(service, as_principal, changes, field):
    as_principal("portal", "service")
    with pytest.raises(InvalidArgument) as refused:
        AuditApi(service).RecordAccess(access_request(**changes), None)
    assert refused.value.field == field
    assert entries_count(service) == 0


def test_only_services_may_record_for_someone_else_and_citizens_may_not_record(
    service, as_principal
):
    as_principal("officer-7", "officer", agency="STP")
    request = access_request(
        on_behalf_of=common_pb2.Actor(subject="admin-1", role=common_pb2.ROLE_ADMIN)
    )
    with pytest.raises(InvalidArgument) as refused:
        AuditApi(service).RecordAccess(request, None)
    assert refused.value.field == "on_behalf_of"
    as_principal("citizen-1", "citizen")
    with pytest.raises(PermissionDenied):
        AuditApi(service).RecordAccess(access_request(), None)
    assert entries_count(service) == 0


def test_vietnamese_purpose_is_normalised_to_nfc(service, as_principal):
    as_principal("officer-7", "officer", agency="STP")
    decomposed = "Xu\u031b\u0309 ly\u0301  hồ sơ"
    entry = AuditApi(service).RecordAccess(access_request(purpose=decomposed), None).entry
    assert entry.purpose == "Xử lý hồ sơ"


# --------------------------------------------------------------------------------------
# Heads, proofs, pages
# --------------------------------------------------------------------------------------


def fill(service, n, code=CODE):
    for _ in range(n):
        consume(service, "motcua.dossier.v1", dossier_event(code))


def test_signed_heads_commit_to_the_log_and_name_their_key(service, as_principal):
    fill(service, 5)
    head = service.sign_tree_head()
    keys = service.key_ring.public_keys
    assert head.head.size == 5 and verify_tree_head(head, keys)
    with service.context.sessions() as session:
        assert head.head.root_hash == db.AuditLogRepository.log(session).root(5)
    as_principal("citizen-1", "citizen")
    got = AuditApi(service).GetTreeHead(audit_pb2.GetTreeHeadRequest(), None).tree_head
    assert (got.tree_size, got.root_hash, got.key_id) == (5, head.head.root_hash, head.head.key_id)
    assert metric("motcua_audit_tree_head_timestamp_seconds") == head.head.timestamp_ms / 1000


def test_sign_on_demand_is_for_admins_and_services(service, as_principal):
    as_principal("officer-7", "officer", agency="STP")
    with pytest.raises(PermissionDenied):
        AuditApi(service).SignTreeHead(audit_pb2.SignTreeHeadRequest(), None)
    as_principal("ops", "admin")
    fill(service, 2)
    signed = AuditApi(service).SignTreeHead(audit_pb2.SignTreeHeadRequest(), None).tree_head
    assert signed.tree_size == 2


def test_inclusion_proofs_by_index_and_by_leaf_hash_against_the_latest_head(service, as_principal):
    fill(service, 9)
    as_principal("citizen-1", "citizen")
    api = AuditApi(service)
    by_index = api.GetInclusionProof(audit_pb2.GetInclusionProofRequest(index=4), None)
    head = by_index.tree_head
    assert head.tree_size == 9  # no head covered entry 4 yet: one was signed on demand
    assert verify_inclusion(
        by_index.leaf_hash, 4, head.tree_size, list(by_index.proof.audit_path), head.root_hash
    )
    by_leaf = api.GetInclusionProof(
        audit_pb2.GetInclusionProofRequest(leaf_hash=by_index.leaf_hash, tree_size=6), None
    )
    assert by_leaf.proof.leaf_index == 4 and by_leaf.proof.tree_size == 6
    assert not by_leaf.HasField("tree_head")
    with service.context.sessions() as session:
        root6 = db.AuditLogRepository.log(session).root(6)
    assert verify_inclusion(by_leaf.leaf_hash, 4, 6, list(by_leaf.proof.audit_path), root6)


@pytest.mark.parametrize(
    ("request_", "error", "field"),
    [
        (audit_pb2.GetInclusionProofRequest(), InvalidArgument, "index"),
        (audit_pb2.GetInclusionProofRequest(index=9), InvalidArgument, "index"),
        (audit_pb2.GetInclusionProofRequest(index=-1), InvalidArgument, "index"),
        (audit_pb2.GetInclusionProofRequest(index=1, tree_size=10), InvalidArgument, "tree_size"),
        (audit_pb2.GetInclusionProofRequest(index=5, tree_size=3), InvalidArgument, "index"),
        (audit_pb2.GetInclusionProofRequest(leaf_hash=b"short"), InvalidArgument, "leaf_hash"),
        (audit_pb2.GetInclusionProofRequest(leaf_hash=b"\x00" * 32), NotFound, None),
    ],
)
def test_bad_inclusion_requests_are_refused(service, as_principal, request_, error, field):
    fill(service, 9)
    as_principal("citizen-1", "citizen")
    with pytest.raises(error) as refused:
        AuditApi(service).GetInclusionProof(request_, None)
    if field:
        assert refused.value.field == field


def test_consistency_proofs_between_sizes(service, as_principal):
    fill(service, 7)
    old = service.sign_tree_head()
    fill(service, 6)
    as_principal("citizen-1", "citizen")
    api = AuditApi(service)
    same = api.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(first_size=7), None)
    assert (same.second_size, list(same.proof)) == (7, [])  # 0: the latest signed head
    service.sign_tree_head()
    response = api.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(first_size=7), None)
    new = response.tree_head
    assert (response.first_size, response.second_size, new.tree_size) == (7, 13, 13)
    assert verify_consistency(7, 13, old.head.root_hash, new.root_hash, list(response.proof))
    for first, second, field in [
        (5, 14, "second_size"),
        (8, 6, "first_size"),
        (-1, 3, "first_size"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            api.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(first_size=first, second_size=second), None
            )
        assert refused.value.field == field


def test_entries_are_paged_for_admins_only(service, as_principal):
    fill(service, 25)
    as_principal("officer-7", "officer", agency="STP")
    api = AuditApi(service)
    with pytest.raises(PermissionDenied):
        api.GetEntries(audit_pb2.GetEntriesRequest(), None)
    as_principal("auditor", "admin")
    seen, token = [], ""
    while True:
        page = api.GetEntries(
            audit_pb2.GetEntriesRequest(start_index=3, end_index=21, page_size=7, page_token=token),
            None,
        )
        seen += [e.index for e in page.entries]
        assert page.tree_size == 25
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(3, 21))
    everything = api.GetEntries(audit_pb2.GetEntriesRequest(page_size=1000), None)
    assert [e.index for e in everything.entries] == list(range(25))
    for bad, field in [
        (audit_pb2.GetEntriesRequest(page_size=1001), "page_size"),
        (audit_pb2.GetEntriesRequest(start_index=-1), "start_index"),
        (audit_pb2.GetEntriesRequest(start_index=5, end_index=2), "end_index"),
        (audit_pb2.GetEntriesRequest(page_token="abc"), "page_token"),
        (audit_pb2.GetEntriesRequest(start_index=5, page_token="2"), "page_token"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            api.GetEntries(bad, None)
        assert refused.value.field == field


def test_dossier_trail_has_every_entry_with_a_proof_against_one_head(service, as_principal):
    fill(service, 3, "STP-261129-0002")
    fill(service, 2, CODE)
    fill(service, 4, "STP-261129-0002")
    as_principal("officer-7", "officer", agency="STP")
    response = AuditApi(service).GetDossierTrail(
        audit_pb2.GetDossierTrailRequest(dossier_code="STP-261129-0002"), None
    )
    head = response.tree_head
    assert [e.index for e in response.entries] == [0, 1, 2, 5, 6, 7, 8]
    assert head.tree_size == 9
    for e in response.entries:
        assert e.dossier_code == "STP-261129-0002" and e.event_id
        assert e.inclusion_proof.tree_size == head.tree_size
        assert verify_inclusion(
            leaf_hash(e.canonical_entry),
            e.index,
            head.tree_size,
            list(e.inclusion_proof.audit_path),
            head.root_hash,
        )
    as_principal("officer-8", "officer", agency="HCM")
    with pytest.raises(PermissionDenied):
        AuditApi(service).GetDossierTrail(
            audit_pb2.GetDossierTrailRequest(dossier_code="STP-261129-0002"), None
        )


def test_public_keys_list_the_current_and_the_retired_keys(host, settings, tmp_path, as_principal):
    retired = TreeHeadSigner.generate()
    pem = tmp_path / "retired.pem"
    pem.write_bytes(public_key_to_pem(retired.public_key))
    rotated = settings.model_copy(update={"trusted_public_key_files": f" {pem} ,"})
    ring = load_key_ring(rotated)
    host.service.__dict__["keys"] = _Fixed(ring)
    as_principal("citizen-1", "citizen")
    keys = AuditApi(host.service).GetPublicKeys(audit_pb2.GetPublicKeysRequest(), None).keys
    assert [(k.key_id, k.current) for k in keys] == [
        (ring.signer.key_id, True),
        (retired.key_id, False),
    ]
    assert load_public_key_pem(keys[1].pem.encode()) == retired.public_key
    old_head = retired.sign(0, hashlib.sha256(b"").digest())
    assert verify_tree_head(old_head, ring.public_keys)


class _Fixed:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def get(self) -> KeyRing:
        return self.ring


# --------------------------------------------------------------------------------------
# The timer and the self-check
# --------------------------------------------------------------------------------------


def test_the_timer_signs_a_head_when_due_and_not_before(service):
    fill(service, 3)
    service.maintain()
    with service.context.sessions() as session:
        first = db.TreeHeadRepository().latest(session)
    assert first is not None and first.head.size == 3
    fill(service, 1)
    service.maintain()  # the interval (60 s) has not passed: no new head
    with service.context.sessions() as session:
        assert db.TreeHeadRepository().latest(session) == first
    service._next_sign_check = 0
    with service.context.sessions() as session, session.begin():
        session.execute(
            update(db.tree_heads).values(timestamp_ms=db.tree_heads.c.timestamp_ms - 61_000)
        )
    service.maintain()
    with service.context.sessions() as session:
        assert db.TreeHeadRepository().latest(session).head.size == 4


def test_self_check_passes_on_an_intact_log(service):
    fill(service, 1500)
    service.sign_tree_head()
    assert service.self_check() == []
    assert service.self_check() == []  # second block
    assert service._scrub_start == 0  # wrapped around


def _failures(check):
    return metric("motcua_audit_verification_failures_total", check=check)


def test_self_check_catches_an_entry_rewritten_in_the_database(service):
    fill(service, 10)
    service.sign_tree_head()
    before = _failures("entry_hash")
    with service.context.sessions() as session, session.begin():
        row = db.AuditLogRepository.range(session, 4, 5)[0]
        forged = bytearray(row.canonical)
        forged[-40] ^= 1
        session.execute(update(db.entries).where(db.entries.c.idx == 4).values(entry=bytes(forged)))
    findings = service.self_check()
    assert {(f.check.value, f.index) for f in findings} == {("entry_hash", 4)}
    assert _failures("entry_hash") == before + 2  # against the node and the column


def test_self_check_catches_rewritten_nodes_and_heads(service):
    fill(service, 8)
    service.sign_tree_head()
    assert service.self_check() == []
    with service.context.sessions() as session, session.begin():
        session.execute(
            update(db.nodes)
            .where(db.nodes.c.level == 1, db.nodes.c.idx == 2)
            .values(hash=b"\x01" * 32)
        )
    # The root of 8 leaves is node (3, 0) alone: only the block scrub sees a lower node.
    assert {(f.check.value, f.index) for f in service.self_check()} == {("node_hash", 4)}
    with service.context.sessions() as session, session.begin():
        session.execute(
            update(db.nodes)
            .where(db.nodes.c.level == 3, db.nodes.c.idx == 0)
            .values(hash=b"\x02" * 32)
        )
    assert "tree_head_root" in {f.check.value for f in service.self_check()}
    with service.context.sessions() as session, session.begin():
        session.execute(update(db.tree_heads).values(signature=b"\x00" * 64))
    assert [f.check.value for f in service._check_latest_head()] == ["tree_head_signature"]


def test_self_check_catches_a_rollback_below_a_verified_head(service):
    fill(service, 6)
    service.sign_tree_head()
    assert service.self_check() == []
    with service.context.sessions() as session, session.begin():
        session.execute(text("DELETE FROM audit_tree_heads"))
        signer = service.key_ring.signer
        smaller = signer.sign(3, db.AuditLogRepository.log(session).root(3))
        db.TreeHeadRepository.add(session, smaller)
    assert [f.check.value for f in service._check_latest_head()] == ["consistency"]


# --------------------------------------------------------------------------------------
# Keys and migrations
# --------------------------------------------------------------------------------------


def test_a_development_key_is_generated_once_with_a_warning(tmp_path, caplog):
    settings = AuditSettings(dev_signing_key_file=tmp_path / "state" / "dev.pem")
    with caplog.at_level(logging.WARNING):
        first = load_key_ring(settings)
    assert "development key" in caplog.text
    assert (tmp_path / "state" / "dev.pem").stat().st_mode & 0o777 == 0o600
    assert load_key_ring(settings).signer.key_id == first.signer.key_id
    with pytest.raises(SigningKeyError):
        load_key_ring(settings.model_copy(update={"require_signing_key": True}))


def test_bad_key_files_are_reported_clearly(tmp_path):
    missing = AuditSettings(signing_key_file=tmp_path / "nope.pem")
    with pytest.raises(SigningKeyError, match="does not exist"):
        load_key_ring(missing)
    wrong = tmp_path / "wrong.pem"
    wrong.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a usable Ed25519 key"):
        load_key_ring(AuditSettings(signing_key_file=wrong))
    signer = TreeHeadSigner.generate()
    locked = tmp_path / "locked.pem"
    locked.write_bytes(private_key_to_pem(signer.private_key, b"secret"))
    ring = load_key_ring(AuditSettings(signing_key_file=locked, signing_key_password="secret"))
    assert ring.signer.key_id == signer.key_id
    assert LazyKeyRing(AuditSettings(signing_key_file=locked, signing_key_password="secret")).get()


def test_migration_0002_puts_entries_recorded_before_it_into_the_tree(tmp_path, settings):
    url = f"sqlite:///{tmp_path}/old.db"
    migrate(url, "motcua_audit:migrations", "0001")
    engine = create_engine(url)
    t = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for i in range(5):
            conn.execute(
                text(
                    "INSERT INTO audit_entries (idx, event_id, event_type, event_source, "
                    "event_time, dossier_code, payload_sha256, topic, recorded_at) VALUES "
                    "(:i, :id, 'vn.motcua.dossier.submitted.v1', '/motcua/dossier', :t, :c, :p, "
                    "'motcua.dossier.v1', :r)"
                ),
                {
                    "i": i,
                    "id": f"old-{i}",
                    "t": t + timedelta(minutes=i),
                    "c": CODE,
                    "p": hashlib.sha256(bytes([i])).hexdigest(),
                    "r": t + timedelta(minutes=i, seconds=1),
                },
            )
    engine.dispose()
    migrate(url, "motcua_audit:migrations")
    host = ServiceHost(AuditService, settings.model_copy(update={"database_url": url}))
    try:
        service = host.service
        consume(service, "motcua.dossier.v1", dossier_event())
        with service.context.sessions() as session:
            stored = db.AuditLogRepository.range(session, 0, 6)
            log = db.AuditLogRepository.log(session)
            assert log.size() == 6
            for s in stored:
                assert log.leaf_hash_at(s.index) == leaf_hash(s.canonical)
        old = stored[2].entry
        assert (old.event_id, old.dossier_code, old.actor.subject) == (
            "old-2",
            CODE,
            "/motcua/dossier",
        )
        assert old.event_time == t + timedelta(minutes=2)
        assert service.self_check() == []
    finally:
        host.engine.dispose()
