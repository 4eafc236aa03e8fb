"""The Merkle log over SQL (SQLite): same answers as the in-memory log, O(log n) reads, atomic.

The PostgreSQL side (advisory lock, two replicas) is in tests/integration/test_audit_log.py.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from motcua_audit.adapters import db
from motcua_audit.domain.entry import Actor, Entry, EntryKind, Role
from motcua_audit.domain.merkle import MemoryNodeStore, MerkleLog, leaf_hash
from motcua_kit.db import transaction

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def make_entry(i: int, code: str = "STP-261129-0001") -> Entry:
    return Entry(
        kind=EntryKind.EVENT,
        event_id=f"event-{i}",
        event_source="/motcua/dossier",
        event_type="vn.motcua.dossier.received.v1",
        event_subject=code,
        event_time=T0 + timedelta(seconds=i),
        topic="motcua.dossier.v1",
        actor=Actor("officer-1", Role.OFFICER, "STP"),
        dossier_code=code,
        payload_sha256=hashlib.sha256(str(i).encode()).digest(),
        recorded_at=T0 + timedelta(seconds=i, milliseconds=5),
    )


def append(host, entries):
    repo = db.AuditLogRepository()
    with transaction(host.sessions) as session:
        return repo.append_many(session, [(e, None, None) for e in entries])


def test_sql_log_matches_the_in_memory_log_for_every_size_and_proof(host):
    entries = [make_entry(i) for i in range(70)]
    memory = MerkleLog(MemoryNodeStore())
    for i, e in enumerate(entries):
        stored = append(host, [e])[0]
        memory.append(e.encode())
        assert stored.index == i
        assert stored.leaf_hash == leaf_hash(e.encode())
    with host.sessions() as session:
        sql = db.AuditLogRepository.log(session)
        assert sql.size() == 70
        for n in range(71):
            assert sql.root(n) == memory.root(n)
        for n in range(1, 71):
            for i in range(n):
                assert sql.inclusion_proof(i, n) == memory.inclusion_proof(i, n)
            for m in range(n + 1):
                assert sql.consistency_proof(m, n) == memory.consistency_proof(m, n)


def _count_statements(host, action):
    seen: list[str] = []

    def listener(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(host.engine, "before_cursor_execute", listener)
    try:
        action()
    finally:
        event.remove(host.engine, "before_cursor_execute", listener)
    return seen


def test_proofs_and_appends_take_a_constant_number_of_queries_as_the_log_grows(host):
    """O(log n) rows in O(1) round trips: 1 size query + 1 batched node read per proof."""
    repo = db.AuditLogRepository()
    counts = {}
    for target in (100, 5000):
        with transaction(host.sessions) as session:
            have = repo.size(session)
            repo.append_many(
                session, [(make_entry(i), None, None) for i in range(have, target - 1)]
            )

        def one_append(target=target):
            with transaction(host.sessions) as session:
                repo.append(session, make_entry(target - 1))

        def proofs(target=target):
            with host.sessions() as session:
                log = repo.log(session)
                log.inclusion_proof(target // 3, target)
                log.consistency_proof(target // 7, target)

        counts[target] = (
            len(_count_statements(host, one_append)),
            len(_count_statements(host, proofs)),
        )
    assert counts[100] == counts[5000]
    appends, proofs = counts[5000]
    assert appends <= 5  # size, frontier read, node insert, entry insert (+ BEGIN)
    assert proofs <= 5  # per proof: size and one batched node read (+ BEGIN)


def test_entry_and_nodes_commit_together_or_not_at_all(host):
    append(host, [make_entry(0)])
    repo = db.AuditLogRepository()
    with pytest.raises(RuntimeError), transaction(host.sessions) as session:
        repo.append(session, make_entry(1))
        raise RuntimeError("the handler failed after appending")
    with host.sessions() as session:
        assert repo.size(session) == 1
        assert session.scalar(select(func.count()).select_from(db.entries)) == 1
        assert session.scalar(select(func.count()).select_from(db.nodes)) == 1


def test_nodes_are_immutable_and_an_event_is_stored_once(host):
    append(host, [make_entry(0), make_entry(1)])
    with pytest.raises(IntegrityError), transaction(host.sessions) as session:
        session.execute(insert(db.nodes).values(level=0, idx=0, hash=b"\x00" * 32))
    with pytest.raises(IntegrityError):
        append(host, [make_entry(0)])  # same (source, id): the unique index refuses it


def test_reads_come_from_the_canonical_bytes(host):
    stored = append(host, [make_entry(0, "STP-261129-0007")])[0]
    with host.sessions() as session:
        trail = db.AuditLogRepository.trail(session, "STP-261129-0007")
        # A query column changed behind the log's back does not change what is reported.
        session.execute(update(db.entries).values(event_type="forged"))
        again = db.AuditLogRepository.range(session, 0, 1)[0]
    assert trail == [stored]
    assert again.entry.event_type == "vn.motcua.dossier.received.v1"
    assert again.entry == make_entry(0, "STP-261129-0007")


def test_recorded_leaf_hashes_and_lookup_by_leaf(host):
    stored = append(host, [make_entry(i) for i in range(10)])
    with host.sessions() as session:
        repo = db.AuditLogRepository
        assert repo.recorded_leaf_hashes(session, 2, 5) == [s.leaf_hash for s in stored[2:5]]
        assert repo.index_of_leaf(session, stored[7].leaf_hash) == 7
        assert repo.index_of_leaf(session, b"\x00" * 32) is None
