"""The audit sequencer (ADR 0046) on SQLite: staged entries reach the log in batches.

Batching must not change a byte of the log: the property test below sequences random
stagings in random batch sizes and compares every root and proof with one-by-one appends.
The PostgreSQL side (two sequencers racing, a killed sequencer) is in
tests/integration/test_audit_log.py.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from motcua.audit.v1 import audit_pb2
from motcua.dossier.v1 import events_pb2
from motcua_audit.adapters import db
from motcua_audit.adapters.grpc_api import AuditApi
from motcua_audit.domain.entry import Actor, Entry, EntryKind, Role
from motcua_audit.domain.merkle import MemoryNodeStore, MerkleLog, leaf_hash
from motcua_audit.sequencer import Sequencer, SequencingTimeout
from motcua_audit.service import AuditService
from motcua_kit.db import make_engine, session_factory, transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import Aborted, AlreadyExists
from motcua_kit.service import ServiceHost

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
CODE = "STP-261129-0001"


def make_entry(i: int, source: str = "/motcua/dossier") -> Entry:
    return Entry(
        kind=EntryKind.EVENT,
        event_id=f"event-{i}",
        event_source=source,
        event_type="vn.motcua.dossier.received.v1",
        event_subject=CODE,
        event_time=T0 + timedelta(seconds=i),
        topic="motcua.dossier.v1",
        actor=Actor("officer-1", Role.OFFICER, "STP"),
        dossier_code=CODE,
        payload_sha256=hashlib.sha256(str(i).encode()).digest(),
        recorded_at=T0 + timedelta(seconds=i, milliseconds=5),
    )


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it is truthy, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def stage(sessions, entries, per_transaction: int = 1) -> None:
    repo = db.AuditLogRepository()
    for i in range(0, len(entries), per_transaction):
        with transaction(sessions) as session:
            for e in entries[i : i + per_transaction]:
                repo.stage(session, e)


def counts(sessions) -> tuple[int, int, int]:
    """(entries, nodes, staged rows)."""
    with sessions() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(t))
            for t in (db.entries, db.nodes, db.staged_entries)
        )


# --------------------------------------------------------------------------------------
# Batching changes nothing in the log
# --------------------------------------------------------------------------------------

operations = st.lists(
    st.tuples(st.sampled_from(["stage", "sequence"]), st.integers(min_value=1, max_value=40)),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_batches_of_any_size_give_the_roots_and_proofs_of_one_by_one_appends(tmp_path, ops):
    engine = make_engine(f"sqlite:///{tmp_path}/{uuid.uuid4().hex}.db")
    db.metadata.create_all(engine)
    sessions = session_factory(engine)
    sequencer = Sequencer(sessions, db.AuditLogRepository())
    staged = 0
    try:
        for op, k in ops:
            if op == "stage":
                stage(sessions, [make_entry(staged + j) for j in range(k)], per_transaction=3)
                staged += k
            else:
                sequencer.batch_size = k
                sequencer.sequence_once()
        sequencer.batch_size = 7
        sequencer.drain()
        memory = MerkleLog(MemoryNodeStore())
        for i in range(staged):
            memory.append(make_entry(i).encode())
        with sessions() as session:
            stored = db.AuditLogRepository.range(session, 0, staged)
            sql = db.AuditLogRepository.log(session)
            # In staging order, gapless from 0, each with its own leaf.
            assert [s.entry for s in stored] == [make_entry(i) for i in range(staged)]
            assert [s.index for s in stored] == list(range(staged))
            assert all(s.leaf_hash == leaf_hash(s.canonical) for s in stored)
            assert sql.size() == staged
            for n in range(staged + 1):
                assert sql.root(n) == memory.root(n)
            for n in range(1, staged + 1):
                for i in {0, n // 2, n - 1}:
                    assert sql.inclusion_proof(i, n) == memory.inclusion_proof(i, n)
                for m in {1, n // 3, n - 1, n}:
                    assert sql.consistency_proof(m, n) == memory.consistency_proof(m, n)
        assert counts(sessions)[2] == 0
    finally:
        engine.dispose()


def test_a_batch_takes_a_constant_number_of_statements_whatever_its_size(host):
    """One lock, one frontier read, one bulk insert each of entries and nodes, one delete."""
    sequencer = Sequencer(host.sessions, db.AuditLogRepository(), batch_size=1000)
    stage(host.sessions, [make_entry(0)])
    sequencer.sequence_once()  # an empty log has no frontier to read
    seen = {}
    total = 1
    for size in (3, 700):
        stage(host.sessions, [make_entry(total + i) for i in range(size)], per_transaction=size)
        total += size
        statements: list[str] = []

        def listener(conn, cursor, statement, *args, statements=statements):
            statements.append(statement)

        event.listen(host.engine, "before_cursor_execute", listener)
        try:
            assert sequencer.sequence_once().taken == size
        finally:
            event.remove(host.engine, "before_cursor_execute", listener)
        seen[size] = len(statements)
    assert seen[3] == seen[700]
    # read staged, size, frontier, insert entries, insert nodes, delete staged (+ BEGIN)
    assert seen[700] <= 7


# --------------------------------------------------------------------------------------
# Failure and restart
# --------------------------------------------------------------------------------------


def test_a_failed_batch_rolls_back_whole_and_its_staged_entries_stay(host, monkeypatch):
    stage(host.sessions, [make_entry(i) for i in range(10)])
    repo = db.AuditLogRepository()
    sequencer = Sequencer(host.sessions, repo)
    real = repo._copy_staged

    def fail_after_writing(session, rows, indices, leaves):
        real(session, rows, indices, leaves)  # entries and nodes written in the transaction...
        raise RuntimeError("the process died before the commit")

    before = REGISTRY.get_sample_value("motcua_audit_sequencer_failures_total") or 0
    monkeypatch.setattr(repo, "_copy_staged", fail_after_writing)
    with pytest.raises(RuntimeError):
        sequencer.sequence_once()
    assert counts(host.sessions) == (0, 0, 10)
    assert REGISTRY.get_sample_value("motcua_audit_sequencer_failures_total") == before + 1
    monkeypatch.setattr(repo, "_copy_staged", real)
    assert sequencer.drain() == 10
    assert counts(host.sessions) == (10, 18, 0)  # 10 leaves, 5 + 2 + 1 perfect parents


def test_entries_staged_before_a_restart_are_sequenced_when_the_service_starts(settings):
    first = ServiceHost(AuditService, settings)
    first.migrate()
    service = first.service
    assert isinstance(service, AuditService)
    events = [
        Event.new(
            source="/motcua/payment",
            type="vn.motcua.payment.x.v1",
            subject=CODE,
            message=events_pb2.DossierSubmitted(),
        )
        for _ in range(25)
    ]
    for ev in events:  # consumed, committed with the inbox row, never sequenced: then a crash
        with transaction(first.sessions) as session:
            service.record_payment_event(ev, None, session)
    assert counts(first.sessions) == (0, 0, 25)
    first.engine.dispose()

    second = ServiceHost(AuditService, settings)
    restarted = second.service
    assert isinstance(restarted, AuditService)
    restarted.on_start()
    try:
        wait_until(lambda: counts(second.sessions)[2] == 0, 10, "the staged entries sequenced")
    finally:
        restarted.on_stop()
        second.engine.dispose()
    with second.sessions() as session:
        stored = db.AuditLogRepository.range(session, 0, 100)
    assert [s.entry.event_id for s in stored] == [e.id for e in events]


def test_a_drain_after_the_loop_stopped_still_takes_everything(host):
    sequencer = Sequencer(host.sessions, db.AuditLogRepository(), batch_size=4)
    sequencer.start()
    assert sequencer.stop(5)
    stage(host.sessions, [make_entry(i) for i in range(10)], per_transaction=10)
    assert sequencer.drain() == 10
    assert counts(host.sessions)[2] == 0


def test_the_loop_wakes_on_a_staging_commit_not_on_its_interval(host):
    sequencer = Sequencer(host.sessions, db.AuditLogRepository(), interval=3600)
    sequencer.start()
    try:
        stage(host.sessions, [make_entry(0)])
        sequencer.wake()
        wait_until(lambda: counts(host.sessions)[0] == 1, 10, "the entry sequenced")
    finally:
        assert sequencer.stop(5)


# --------------------------------------------------------------------------------------
# RecordAccess promises an index
# --------------------------------------------------------------------------------------


def access(record_id: str, purpose: str = "Xử lý hồ sơ") -> audit_pb2.RecordAccessRequest:
    return audit_pb2.RecordAccessRequest(
        record_id=record_id,
        citizen_id="079203004567",
        dossier_code=CODE,
        purpose=purpose,
        resource="applicant.phone",
    )


def test_record_access_answers_with_the_index_after_earlier_stagings(service, as_principal):
    with transaction(service.context.sessions) as session:
        for i in range(3):
            service.entries.stage(session, make_entry(i))
    as_principal("officer-7", "officer", agency="STP")
    entry = AuditApi(service).RecordAccess(access("view-1"), None).entry
    assert entry.index == 3  # its batch took the three staged before it, in order
    with service.context.sessions() as session:
        assert db.AuditLogRepository.access_subject(session, 3)[0] == "079203004567"
        assert db.AuditLogRepository.size(session) == 4


def test_a_record_not_sequenced_in_time_is_accepted_and_its_retry_gets_the_entry(
    service, as_principal, monkeypatch
):
    as_principal("officer-7", "officer", agency="STP")
    api = AuditApi(service)

    def too_slow(is_staged, deadline):
        raise SequencingTimeout("not yet")

    monkeypatch.setattr(service.sequencer, "sequence_until", too_slow)
    with pytest.raises(Aborted, match="same record_id"):
        api.RecordAccess(access("view-9"), None)
    assert counts(service.context.sessions) == (0, 0, 1)  # accepted: staged
    with pytest.raises(AlreadyExists, match="not sequenced yet"):
        api.RecordAccess(access("view-9", purpose="another reason"), None)
    monkeypatch.undo()
    again = api.RecordAccess(access("view-9"), None)
    assert again.replayed and again.entry.index == 0
    assert api.RecordAccess(access("view-9"), None).entry == again.entry
    assert counts(service.context.sessions) == (1, 1, 0)


def test_a_staged_duplicate_of_a_logged_entry_is_dropped_not_appended(host):
    stage(host.sessions, [make_entry(0), make_entry(1)])
    sequencer = Sequencer(host.sessions, db.AuditLogRepository())
    sequencer.drain()
    # Two calls raced with one record id past both checks: the second copy got staged.
    stage(host.sessions, [make_entry(1), make_entry(2)])
    batch = sequencer.sequence_once()
    assert (len(batch.appended), batch.dropped) == (1, 1)
    with host.sessions() as session:
        assert [s.entry.event_id for s in db.AuditLogRepository.range(session, 0, 9)] == [
            "event-0",
            "event-1",
            "event-2",
        ]
    assert counts(host.sessions)[2] == 0


def test_the_staged_table_holds_one_copy_of_a_source_and_id(host):
    stage(host.sessions, [make_entry(5)])
    with pytest.raises(IntegrityError):
        stage(host.sessions, [make_entry(5)])
    assert counts(host.sessions) == (0, 0, 1)
