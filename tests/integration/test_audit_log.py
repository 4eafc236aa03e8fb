"""The audit service as a process on the real broker and database (SQLite and PostgreSQL).

Proofs the service gives are checked with an RFC 6962 verifier written here from the RFC's
recursive definitions (not the service's iterative RFC 9162 code), and its signed heads with
the documented 67-byte encoding and a bare Ed25519 key: nothing of motcua_audit judges them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from itertools import accumulate
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import create_engine, text

from harness import ROOT, Kafka, ServiceProcess, wait_for
from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import events_pb2
from motcua_kit.envelope import Event, encode

pytestmark = pytest.mark.integration

TOPICS = ("motcua.dossier.v1", "motcua.payment.v1", "motcua.notify.v1")


# --------------------------------------------------------------------------------------
# An independent RFC 6962 (section 2.1) implementation
# --------------------------------------------------------------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc_leaf(entry: bytes) -> bytes:
    return _h(b"\x00" + entry)


def _split(n: int) -> int:
    """k: the largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) by the recursive definition, over leaf hashes."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _h(b"\x01" + rfc_mth(leaves[:k]) + rfc_mth(leaves[k:]))


def rfc_root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root a PATH(m, D[n]) implies; PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k,
    PATH(m - k, D[k:n]) : MTH(D[0:k]) otherwise. Consumes ``path`` from the end."""
    if size == 1:
        return leaf if not path else None
    if not path:
        return None
    k = _split(size)
    sibling = path[-1]
    if index < k:
        left = rfc_root_from_path(index, k, leaf, path[:-1])
        return None if left is None else _h(b"\x01" + left + sibling)
    right = rfc_root_from_path(index - k, size - k, leaf, path[:-1])
    return None if right is None else _h(b"\x01" + sibling + right)


def rfc_inclusion_ok(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    return 0 <= index < size and rfc_root_from_path(index, size, leaf, list(path)) == root


def rfc_consistency_ok(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """SUBPROOF(m, D[n], b) replayed backwards: rebuild the old and the new root together."""
    if not 0 < m <= n:
        return False
    if m == n:
        return not proof and old == new
    remaining = list(proof)

    def sub(m: int, n: int, b: bool) -> tuple[bytes, bytes] | None:
        if m == n:
            if b:
                return old, old  # the old tree itself: its root is the known one
            if not remaining:
                return None
            h = remaining.pop()
            return h, h
        if not remaining:
            return None
        k = _split(n)
        if m <= k:
            right = remaining.pop()
            got = sub(m, k, b)
            return None if got is None else (got[0], _h(b"\x01" + got[1] + right))
        left = remaining.pop()
        got = sub(m - k, n - k, False)
        if got is None:
            return None
        return _h(b"\x01" + left + got[0]), _h(b"\x01" + left + got[1])

    got = sub(m, n, True)
    return got is not None and not remaining and got == (old, new)


def sth_bytes(head: audit_pb2.SignedTreeHead) -> bytes:
    """The 67 signed bytes, from docs/audit-log.md."""
    return (
        b"MOTCUA-STH"
        + bytes([1])
        + struct.pack(">QQ", head.tree_size, head.timestamp_ms)
        + head.root_hash
        + bytes.fromhex(head.key_id)
    )


def head_ok(head: audit_pb2.SignedTreeHead, keys: dict[str, bytes]) -> bool:
    raw = keys.get(head.key_id)
    if raw is None or hashlib.sha256(raw).digest()[:8].hex() != head.key_id:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(head.signature, sth_bytes(head))
    except Exception:
        return False
    return True


def test_the_independent_verifier_rejects_what_it_should():
    """The test's own verifier must be able to fail, or the acceptance below proves nothing."""
    leaves = [rfc_leaf(bytes([i])) for i in range(11)]
    root = rfc_mth(leaves)
    # Hand-built PATH(3, D[11]) = PATH(3, D[0:8]) : MTH(D[8:11])
    path = [leaves[2], rfc_mth(leaves[0:2]), rfc_mth(leaves[4:8]), rfc_mth(leaves[8:11])]
    assert rfc_inclusion_ok(3, 11, leaves[3], path, root)
    assert not rfc_inclusion_ok(4, 11, leaves[3], path, root)
    assert not rfc_inclusion_ok(3, 11, leaves[3], path[:-1], root)
    assert not rfc_inclusion_ok(3, 11, leaves[3], [*path, leaves[0]], root)
    # PROOF(6, D[11]) = SUBPROOF(6, D[0:8], true) : MTH(D[8:11])
    #                 = [MTH(D[4:6]), MTH(D[6:8]), MTH(D[0:4]), MTH(D[8:11])]
    proof = [
        rfc_mth(leaves[4:6]),
        rfc_mth(leaves[6:8]),
        rfc_mth(leaves[0:4]),
        rfc_mth(leaves[8:11]),
    ]
    old = rfc_mth(leaves[:6])
    assert rfc_consistency_ok(6, 11, old, root, proof)
    assert not rfc_consistency_ok(6, 11, rfc_mth(leaves[:5]), root, proof)
    assert not rfc_consistency_ok(6, 11, old, root, proof[1:])
    assert not rfc_consistency_ok(6, 11, old, root, [*proof, proof[0]])


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


class Audit:
    """A gRPC client of one audit process, with tokens for each role."""

    def __init__(self, proc: ServiceProcess, token: Callable[..., str]) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(proc.target)
        self.stub = audit_pb2_grpc.AuditServiceStub(self.channel)
        self.admin = [("authorization", f"Bearer {token('admin', subject='auditor')}")]
        self.officer = [("authorization", f"Bearer {token('officer', agency='STP')}")]

    def entries(self) -> list[audit_pb2.AuditEntry]:
        out: list[audit_pb2.AuditEntry] = []
        token = ""
        while True:
            page = self.stub.GetEntries(
                audit_pb2.GetEntriesRequest(page_size=500, page_token=token),
                metadata=self.admin,
                timeout=30,
            )
            out += page.entries
            token = page.next_page_token
            if not token:
                return out

    def record_access(
        self, record_id: str, code: str = "STP-261129-0001"
    ) -> audit_pb2.RecordAccessResponse:
        return self.stub.RecordAccess(
            audit_pb2.RecordAccessRequest(
                record_id=record_id,
                citizen_id="079203004567",
                dossier_code=code,
                purpose="Thẩm định hồ sơ",
                resource="applicant",
            ),
            metadata=self.officer,
            timeout=30,
        )

    def keys(self) -> dict[str, bytes]:
        got = self.stub.GetPublicKeys(
            audit_pb2.GetPublicKeysRequest(), metadata=self.admin, timeout=10
        )
        return {k.key_id: k.raw for k in got.keys}

    def close(self) -> None:
        self.channel.close()


def _key_pair(directory: Path, name: str = "signing") -> tuple[Path, Path]:
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


def _produce(kafka: Kafka, events: list[tuple[str, Event]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    try:
        for topic, event in events:
            record = encode(event)
            producer.send(topic, key=record.key, value=record.value, headers=record.headers)
        producer.flush(30)
    finally:
        producer.close()


def _events(n: int, code: str) -> list[tuple[str, Event]]:
    """``n`` events spread over the three topics (known and unknown types)."""
    out = []
    for i in range(n):
        topic = TOPICS[i % 3]
        if topic == "motcua.dossier.v1":
            message = events_pb2.DossierStatusChanged(
                action="receive",
                actor=common_pb2.Actor(
                    subject=f"officer-{i}", role=common_pb2.ROLE_OFFICER, agency_code="STP"
                ),
            )
            ce_type = "vn.motcua.dossier.received.v1"
        else:
            message = events_pb2.DossierSubmitted()
            ce_type = f"vn.motcua.{topic.split('.')[1]}.something_happened.v1"
        out.append(
            (
                topic,
                Event.new(
                    source=f"/motcua/{topic.split('.')[1]}",
                    type=ce_type,
                    subject=code,
                    message=message,
                ),
            )
        )
    return out


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "motcua_audit", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _metric(proc: ServiceProcess, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5) as r:
        body = r.read().decode()
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


# --------------------------------------------------------------------------------------
# Acceptance: proofs from the running service, export and offline verification
# --------------------------------------------------------------------------------------


def test_proofs_from_the_running_service_verify_independently_and_its_export_verifies(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = database("audit")
    private, public = _key_pair(tmp_path)
    proc = service_factory("audit", url).start(
        SIGNING_KEY_FILE=str(private), TREE_HEAD_INTERVAL_SECONDS="3600"
    )
    audit = Audit(proc, token)
    code = f"STP-261129-{random.randrange(10_000):04d}"
    events = _events(150, code)
    _produce(kafka, events)
    records = [f"view-{uuid.uuid4()}" for _ in range(60)]
    for record_id in records:
        assert not audit.record_access(record_id, code).replayed
    mine = {e.id for _, e in events} | set(records)
    entries = wait_for(
        lambda: (got := audit.entries()) and mine <= {e.event_id for e in got} and got,
        60,
        0.3,
        "all 210 entries",
    )
    # Every event of every topic appears once; the log is gapless from 0.
    assert [e.index for e in entries] == list(range(len(entries)))
    ids = [e.event_id for e in entries if e.event_id in mine]
    assert sorted(ids) == sorted(mine)
    assert {e.topic for e in entries if e.event_id in mine} == {*TOPICS, ""}
    size = len(entries)
    assert size >= 200

    head = audit.stub.SignTreeHead(
        audit_pb2.SignTreeHeadRequest(), metadata=audit.admin, timeout=30
    ).tree_head
    assert head.tree_size == size
    keys = audit.keys()
    assert head_ok(head, keys)
    leaves = [rfc_leaf(e.canonical_entry) for e in entries]
    assert [e.leaf_hash for e in entries] == leaves
    roots = [rfc_mth(leaves[:n]) for n in range(size + 1)]
    assert head.root_hash == roots[size]

    rng = random.Random(6962)
    stub, md = audit.stub, audit.officer
    for n in range(1, 201):
        for i in sorted({0, n - 1, rng.randrange(n), rng.randrange(n)}):
            got = stub.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=i, tree_size=n), metadata=md, timeout=10
            )
            assert got.leaf_hash == leaves[i]
            assert rfc_inclusion_ok(i, n, leaves[i], list(got.proof.audit_path), roots[n]), (i, n)
        for m in sorted({rng.randint(1, n), max(n - 1, 1), n}):
            got = stub.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(first_size=m, second_size=n),
                metadata=md,
                timeout=10,
            )
            assert rfc_consistency_ok(m, n, roots[m], roots[n], list(got.proof)), (m, n)
    for _ in range(300):
        n = rng.randint(1, size)
        m = rng.randint(1, n)
        got = stub.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(first_size=m, second_size=n),
            metadata=md,
            timeout=10,
        )
        assert rfc_consistency_ok(m, n, roots[m], roots[n], list(got.proof)), (m, n)
        i = rng.randrange(n)
        by_leaf = stub.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(leaf_hash=leaves[i], tree_size=n),
            metadata=md,
            timeout=10,
        )
        assert by_leaf.proof.leaf_index == i
        assert rfc_inclusion_ok(i, n, leaves[i], list(by_leaf.proof.audit_path), roots[n])

    # Against the latest head (tree_size 0), and for a whole dossier trail.
    latest = stub.GetInclusionProof(
        audit_pb2.GetInclusionProofRequest(index=size - 1), metadata=md, timeout=10
    )
    assert head_ok(latest.tree_head, keys)
    assert rfc_inclusion_ok(
        size - 1,
        latest.tree_head.tree_size,
        leaves[size - 1],
        list(latest.proof.audit_path),
        latest.tree_head.root_hash,
    )
    trail = stub.GetDossierTrail(
        audit_pb2.GetDossierTrailRequest(dossier_code=code), metadata=md, timeout=30
    )
    assert {e.event_id for e in trail.entries} == mine
    assert head_ok(trail.tree_head, keys)
    for e in trail.entries:
        assert rfc_inclusion_ok(
            e.index,
            trail.tree_head.tree_size,
            rfc_leaf(e.canonical_entry),
            list(e.inclusion_proof.audit_path),
            trail.tree_head.root_hash,
        )

    # The export from the database verifies offline with the published key; damage is named.
    pem = tmp_path / "published.pem"
    pem.write_text(
        next(
            k.pem
            for k in audit.stub.GetPublicKeys(
                audit_pb2.GetPublicKeysRequest(), metadata=md, timeout=10
            ).keys
            if k.current
        )
    )
    assert pem.read_text() == public.read_text()  # the key in configuration is the one published
    export, head_file = tmp_path / "export.jsonl", tmp_path / "head.json"
    done = _run_cli(
        "export", "--database-url", url, "--output", str(export), "--head-output", str(head_file)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(head_file.read_text())["size"] >= size
    verified = _run_cli(
        "verify", "--export", str(export), "--head", str(head_file), "--public-key", str(pem)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines = export.read_text().splitlines(keepends=True)
    del lines[1 + 17]
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("".join(lines))
    failed = _run_cli(
        "verify", "--export", str(damaged), "--head", str(head_file), "--public-key", str(pem)
    )
    assert failed.returncode == 1
    assert "first bad index 17 (removed)" in failed.stderr

    # Consistency from an older head to the exported one, proven from the database.
    old_file, proof_file = tmp_path / "old.json", tmp_path / "proof.json"
    old = stub.GetTreeHead(audit_pb2.GetTreeHeadRequest(), metadata=md, timeout=10).tree_head
    old_file.write_text(
        json.dumps(
            {
                "size": old.tree_size,
                "root_hash": old.root_hash.hex(),
                "timestamp_ms": old.timestamp_ms,
                "key_id": old.key_id,
                "signature": old.signature.hex(),
            }
        )
    )
    record = audit.record_access(f"view-{uuid.uuid4()}", code)
    new_export = tmp_path / "export2.jsonl"
    new_head = tmp_path / "head2.json"
    assert (
        _run_cli(
            "export",
            "--database-url",
            url,
            "--sign-now",
            "--output",
            str(new_export),
            "--head-output",
            str(new_head),
            env={**os.environ, "MOTCUA_AUDIT_SIGNING_KEY_FILE": str(private)},
        ).returncode
        == 0
    )
    assert json.loads(new_head.read_text())["size"] == record.entry.index + 1
    proved = _run_cli(
        "prove-consistency",
        "--database-url",
        url,
        "--first-size",
        str(old.tree_size),
        "--output",
        str(proof_file),
    )
    assert proved.returncode == 0, proved.stderr
    ok = _run_cli(
        "verify",
        "--export",
        str(new_export),
        "--head",
        str(new_head),
        "--public-key",
        str(pem),
        "--old-head",
        str(old_file),
        "--consistency-proof",
        str(proof_file),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "consistent with the old head" in ok.stdout
    audit.close()
    assert proc.terminate() == 0


# --------------------------------------------------------------------------------------
# Acceptance: one entry per event, however often it is delivered
# --------------------------------------------------------------------------------------


def test_the_same_kafka_event_delivered_twice_appends_one_entry(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    url = database("audit")
    code = f"STP-261130-{random.randrange(10_000):04d}"
    # Same topic and key (so the same partition): the marker is consumed after both copies.
    (topic, twice), (_, marker) = _events(4, code)[::3]
    assert topic == "motcua.dossier.v1"
    _produce(kafka, [(topic, twice), (topic, twice), (topic, marker)])
    proc = service_factory("audit", url).start()
    audit = Audit(proc, token)
    entries = wait_for(
        lambda: (got := audit.entries()) and marker.id in {e.event_id for e in got} and got,
        60,
        0.3,
        "the marker",
    )
    assert [e.event_id for e in entries].count(twice.id) == 1
    # Nothing in the whole log is there twice, and the tree has exactly one leaf per entry
    # (the consumer may still be reading other tests' events: compare at the head's size).
    head = audit.stub.SignTreeHead(
        audit_pb2.SignTreeHeadRequest(), metadata=audit.admin, timeout=30
    ).tree_head
    entries = audit.entries()[: head.tree_size]
    assert len(entries) == head.tree_size
    assert len({e.event_id for e in entries}) == len(entries)
    assert head.root_hash == rfc_mth([rfc_leaf(e.canonical_entry) for e in entries])
    # Delivered again after it was recorded, to the running consumer: still once.
    ((_, later),) = _events(1, code)
    _produce(kafka, [(topic, twice), ("motcua.dossier.v1", later)])
    entries = wait_for(
        lambda: (got := audit.entries()) and later.id in {e.event_id for e in got} and got,
        60,
        0.3,
        "the later marker",
    )
    assert [e.event_id for e in entries].count(twice.id) == 1
    assert len({e.event_id for e in entries}) == len(entries)
    audit.close()
    proc.terminate()


# --------------------------------------------------------------------------------------
# Two replicas, one log
# --------------------------------------------------------------------------------------


def test_two_replicas_appending_at_once_keep_one_gapless_log(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = database("audit")
    private, _ = _key_pair(tmp_path)
    env = {"SIGNING_KEY_FILE": str(private), "TREE_HEAD_INTERVAL_SECONDS": "0.5"}
    first = service_factory("audit", url).start(**env)
    second = service_factory("audit", url).start(**env)
    clients = [Audit(first, token), Audit(second, token)]
    code = f"STP-261201-{random.randrange(10_000):04d}"
    events = _events(90, code)
    errors: list[BaseException] = []
    recorded: list[str] = []

    def write(client: Audit, worker: int) -> None:
        try:
            for i in range(15):
                record_id = f"w{worker}-{i}-{uuid.uuid4().hex[:6]}"
                client.record_access(record_id, code)
                recorded.append(record_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(clients[w % 2], w)) for w in range(6)]
    for t in threads:
        t.start()
    _produce(kafka, events)
    for t in threads:
        t.join(120)
    assert not errors, errors
    mine = {e.id for _, e in events} | set(recorded)
    entries = wait_for(
        lambda: (got := clients[0].entries()) and mine <= {e.event_id for e in got} and got,
        90,
        0.5,
        "every entry from both replicas",
    )
    assert [e.index for e in entries] == list(range(len(entries)))
    assert len({e.event_id for e in entries}) == len(entries)
    leaves = [rfc_leaf(e.canonical_entry) for e in entries]
    head = (
        clients[1]
        .stub.SignTreeHead(audit_pb2.SignTreeHeadRequest(), metadata=clients[1].admin, timeout=30)
        .tree_head
    )
    assert head.tree_size >= len(entries)
    entries = clients[0].entries()[: head.tree_size]
    leaves = [rfc_leaf(e.canonical_entry) for e in entries]
    assert head.root_hash == rfc_mth(leaves)
    assert head_ok(head, clients[0].keys())
    # The heads both replicas signed along the way are all prefixes of one history.
    engine = create_engine(url)
    with engine.connect() as conn:
        heads = conn.execute(text("SELECT tree_size, root_hash FROM audit_tree_heads")).all()
    engine.dispose()
    assert len(heads) >= 2
    for size, root in heads:
        if size <= len(leaves):
            assert bytes(root) == rfc_mth(leaves[:size])
    for c in clients:
        c.close()
    first.terminate()
    second.terminate()


# --------------------------------------------------------------------------------------
# The sequencer (ADR 0046): racing, killed mid-batch, restarted
# --------------------------------------------------------------------------------------


def _sequencer_entry(i: int, source: str = "/motcua/dossier"):
    from datetime import UTC, datetime, timedelta

    from motcua_audit.domain.entry import Actor, Entry, EntryKind, Role

    t = datetime(2026, 12, 1, 8, 0, tzinfo=UTC) + timedelta(milliseconds=i)
    return Entry(
        kind=EntryKind.EVENT,
        event_id=f"seq-{i}",
        event_source=source,
        event_type="vn.motcua.dossier.received.v1",
        event_subject="STP-261201-0001",
        event_time=t,
        topic="motcua.dossier.v1",
        actor=Actor("officer-1", Role.OFFICER, "STP"),
        dossier_code="STP-261201-0001",
        payload_sha256=hashlib.sha256(str(i).encode()).digest(),
        recorded_at=t,
    )


def _log_rows(url: str) -> tuple[list[int], list[bytes], int]:
    """(indices, canonical entries, staged rows left), read with a plain engine."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT idx, entry FROM audit_entries ORDER BY idx")).all()
        staged = conn.execute(text("SELECT count(*) FROM audit_staged_entries")).scalar_one()
    engine.dispose()
    return [int(r.idx) for r in rows], [bytes(r.entry) for r in rows], int(staged)


def test_two_sequencers_racing_take_turns_and_never_interleave(
    database: Callable[[str], str],
) -> None:
    """Two replicas' sequencers (own engines) and three writers at once, on one log."""
    from prometheus_client import REGISTRY

    from motcua_audit.adapters import db
    from motcua_audit.domain.entry import Entry
    from motcua_audit.sequencer import Sequencer
    from motcua_kit.db import make_engine, migrate, session_factory, transaction

    url = database("audit")
    migrate(url, "motcua_audit:migrations")
    engines = [make_engine(url) for _ in range(2)]
    batches: list[tuple[int, int, int]] = []  # (first index, count, which sequencer)
    lock = threading.Lock()

    def recorder(which: int) -> Callable[[db.SequencedBatch], None]:
        def record(batch: db.SequencedBatch) -> None:
            if batch.appended:
                with lock:
                    batches.append((batch.appended[0][0].index, len(batch.appended), which))

        return record

    sequencers = [
        Sequencer(session_factory(e), db.AuditLogRepository(), batch_size=37, on_batch=recorder(w))
        for w, e in enumerate(engines)
    ]
    writers_done = threading.Event()
    errors: list[BaseException] = []
    failures_before = REGISTRY.get_sample_value("motcua_audit_sequencer_failures_total") or 0
    total = 3 * 200

    def write(w: int) -> None:
        try:
            sessions = session_factory(engines[w % 2])
            for start in range(0, 200, 5):
                with transaction(sessions) as session:
                    for k in range(start, start + 5):
                        db.AuditLogRepository.stage(session, _sequencer_entry(w * 1000 + k))
        except BaseException as exc:
            errors.append(exc)

    def sequence(sequencer: Sequencer) -> None:
        try:
            while True:
                done = writers_done.is_set()  # read before the batch: a last one after it
                if not sequencer.sequence_once().taken and done:
                    return
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    runners = [threading.Thread(target=sequence, args=(s,)) for s in sequencers]
    for t in [*writers, *runners]:
        t.start()
    for t in writers:
        t.join(120)
    writers_done.set()
    for t in runners:
        t.join(120)
    for e in engines:
        e.dispose()
    assert not errors, errors
    indices, canonical, staged = _log_rows(url)
    assert staged == 0 and indices == list(range(total))
    assert len(set(canonical)) == total
    # The lock made them take turns: no batch failed on a taken index, the batches tile the
    # log without overlap, and both sequencers sequenced.
    assert REGISTRY.get_sample_value("motcua_audit_sequencer_failures_total") == failures_before
    tiles = sorted(batches)
    assert [first for first, _, _ in tiles] == [0, *accumulate(c for _, c, _ in tiles)][:-1]
    assert sum(c for _, c, _ in tiles) == total
    assert {w for _, _, w in tiles} == {0, 1}
    # Each writer's entries are in the log in its staging order.
    numbers = [int(Entry.decode(c).event_id.removeprefix("seq-")) for c in canonical]
    for w in range(3):
        mine = [n for n in numbers if n // 1000 == w]
        assert mine == sorted(mine) and len(mine) == 200
    leaves = [rfc_leaf(c) for c in canonical]
    engine = make_engine(url)
    with session_factory(engine)() as session:
        merkle = db.AuditLogRepository.log(session)
        for n in (1, 37, 38, 299, total):
            assert merkle.root(n) == rfc_mth(leaves[:n])
    engine.dispose()


_KILLED_SEQUENCER = """
import sys, time
from motcua_audit.adapters import db
from motcua_kit.db import make_engine, session_factory
engine = make_engine(sys.argv[1])
with session_factory(engine)() as session, session.begin():
    batch = db.AuditLogRepository().sequence_batch(session, 1000)
    print("written", batch.taken, flush=True)  # entries and nodes inserted, not committed
    time.sleep(600)
"""


def test_a_sequencer_killed_mid_batch_loses_nothing_and_the_next_batch_takes_its_entries(
    database: Callable[[str], str],
) -> None:
    from motcua_audit.adapters import db
    from motcua_audit.sequencer import Sequencer
    from motcua_kit.db import make_engine, migrate, session_factory, transaction

    url = database("audit")
    migrate(url, "motcua_audit:migrations")
    engine = make_engine(url)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        for i in range(50):
            db.AuditLogRepository.stage(session, _sequencer_entry(i))
    engine.dispose()  # SQLite: no connection of ours holds the file while the child writes
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SEQUENCER, url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = wait_for(lambda: child.stdout.readline(), 60, 0.05, "the child's batch")
        assert line.strip() == "written 50"
    finally:
        child.kill()  # SIGKILL: no rollback of its own, no cleanup
        child.wait(30)
    indices, _, staged = _log_rows(url)
    assert (indices, staged) == ([], 50)  # the transaction died with it; the staged rows stay
    engine = make_engine(url)
    sequencer = Sequencer(session_factory(engine), db.AuditLogRepository())
    assert sequencer.drain() == 50
    engine.dispose()
    indices, canonical, staged = _log_rows(url)
    assert (indices, staged) == (list(range(50)), 0)
    assert canonical == [_sequencer_entry(i).encode() for i in range(50)]


class _Statements:
    """The SQL statements an engine runs while in use (``with``)."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.seen: list[str] = []

    def _listen(self, _conn: object, _cursor: object, sql: str, *_args: object) -> None:
        self.seen.append(" ".join(sql.split()).lower())

    def __enter__(self) -> _Statements:
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._listen)
        return self

    def __exit__(self, *_exc: object) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._listen)


class _DeadLetters:
    """A stand-in producer for the runner's dead letters (``send(...).get()``)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def send(self, topic: str, key: object = None, value: object = None, headers=None):
        self.ids.append(dict(headers or []).get("ce_id", b"").decode())
        return self

    def get(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


def _dossier_events(n: int, code: str) -> list[Event]:
    """``n`` dossier events of a known type (its payload must parse)."""
    return [ev for topic, ev in _events(3 * n, code) if topic == "motcua.dossier.v1"]


def _records(topic: str, events: list[Event], first_offset: int = 0) -> list[object]:
    from kafka.consumer.fetcher import ConsumerRecord

    out = []
    for n, ev in enumerate(events):
        r = encode(ev)
        out.append(
            ConsumerRecord(
                topic, 0, -1, first_offset + n, 0, 0, r.key, r.value, r.headers, None, 0, 0, 0
            )
        )
    return out


def test_a_consumed_batch_is_staged_with_one_insert_and_sequenced_in_constant_statements(
    database: Callable[[str], str], tmp_path: Path
) -> None:
    """Audit's batch handler through the kit's runner (as the host wires it, no broker): a
    batch of 500 events costs the same statements as a batch of 3, on both databases; a
    known dossier type that does not parse, mid-batch, is dead-lettered alone."""
    from dataclasses import replace

    from motcua_audit.adapters import db
    from motcua_audit.domain.entry import Entry
    from motcua_audit.service import AuditService
    from motcua_audit.settings import AuditSettings
    from motcua_kit.consumer import ConsumerRunner
    from motcua_kit.service import ServiceHost

    private, _ = _key_pair(tmp_path)
    settings = AuditSettings(database_url=database("audit"), signing_key_file=private)
    host = ServiceHost(AuditService, settings)
    host.migrate()
    service = host.service
    assert isinstance(service, AuditService)
    dead = _DeadLetters()
    runner = ConsumerRunner(
        "audit",
        "audit-batch-test",
        service.handlers(),
        host.sessions,
        db.inbox,
        lambda group: pytest.fail("no broker here"),
        lambda: dead,  # type: ignore[arg-type, return-value]
        max_attempts=1,
    )
    topic = "motcua.dossier.v1"
    try:
        counts = {}
        offset = 0
        for size in (1, 3, 500):  # the first: an empty log has no frontier to read
            batch = _dossier_events(size, f"STP-BATCH-{size}")
            with _Statements(host.engine) as st:
                assert runner.process_batch(_records(topic, batch, offset)) == ["processed"] * size
            offset += size
            staging = [s for s in st.seen if s.startswith("insert") and "staged" in s]
            assert len(staging) == 1, staging
            counts[size] = len(st.seen)
            with _Statements(host.engine) as st:
                assert service.sequence_staged() == size
            counts[f"sequenced {size}"] = len(st.seen)
        assert counts[3] == counts[500], counts
        assert counts["sequenced 3"] == counts["sequenced 500"], counts

        # A poison mid-batch: the batch call fails, the records go one by one, it alone
        # is dead-lettered, the others are staged once.
        batch = _dossier_events(20, "STP-POISON")
        poison = replace(batch[9], data=b"\xff\xff not a DossierSubmitted")
        batch[9] = poison
        outcomes = runner.process_batch(_records(topic, batch, offset))
        assert outcomes == ["processed"] * 9 + ["dead_lettered"] + ["processed"] * 10
        assert dead.ids == [poison.id]
        assert service.sequence_staged() == 19
        with host.sessions() as session:
            size = db.AuditLogRepository.size(session)
            stored = db.AuditLogRepository.range(session, 0, size)
            merkle = db.AuditLogRepository.log(session)
            root = merkle.root(size)
            paths = {i: merkle.inclusion_proof(i, size) for i in (0, 3, 503, size - 1)}
            consistency = merkle.consistency_proof(3, size)
        ids = [Entry.decode(e.canonical).event_id for e in stored]
        assert size == 1 + 3 + 500 + 19 and len(set(ids)) == size
        assert ids[-19:] == [ev.id for ev in batch if ev is not poison]
        leaves = [rfc_leaf(e.canonical) for e in stored]
        assert root == rfc_mth(leaves)
        for i, path in paths.items():
            assert rfc_inclusion_ok(i, size, leaves[i], path, root)
        assert rfc_consistency_ok(3, size, rfc_mth(leaves[:3]), root, consistency)
    finally:
        host.engine.dispose()


def test_a_sequencer_batch_moves_subjects_drops_duplicates_in_constant_statements(
    database: Callable[[str], str],
) -> None:
    """On PostgreSQL the copy is one statement joining the staged rows with the batch's
    arrays; on SQLite an INSERT ... SELECT per row. Either way: the same statements for 3 or
    700 entries, access subjects at their entries' indices, staged duplicates of logged
    entries dropped, and the RFC 6962 tree of the entries in staging order."""
    from dataclasses import replace

    from motcua_audit.adapters import db
    from motcua_audit.sequencer import Sequencer
    from motcua_kit.db import make_engine, migrate, session_factory, transaction

    url = database("audit")
    migrate(url, "motcua_audit:migrations")
    engine = make_engine(url)
    sessions = session_factory(engine)
    repo = db.AuditLogRepository()
    sequencer = Sequencer(sessions, repo, batch_size=1000)

    def item(i: int):
        entry = _sequencer_entry(i)
        if i % 3:
            return entry, None, None
        access = replace(entry, event_source="/access/officer-1", event_id=f"acc-{i}")
        return access, f"fp-{i}", (f"0792030{i:05d}", bytes([i % 256]) * 16)

    expected: list[bytes] = []
    subjects: dict[int, tuple[str, bytes]] = {}
    counts = {}
    n = 0
    try:
        with transaction(sessions) as session:
            repo.stage_many(session, [item(0)])
        sequencer.sequence_once()  # an empty log has no frontier to read
        expected.append(item(0)[0].encode())
        subjects[0] = item(0)[2]  # type: ignore[assignment]
        n = 1
        for size in (3, 700):
            items = [item(n + k) for k in range(size)]
            with transaction(sessions) as session:
                repo.stage_many(session, items)
            with _Statements(engine) as st:
                assert sequencer.sequence_once().taken == size
            counts[size] = len(st.seen)
            for k, (entry, _fp, subject) in enumerate(items):
                expected.append(entry.encode())
                if subject is not None:
                    subjects[n + k] = subject
            n += size
        assert counts[3] == counts[700], counts
        # PostgreSQL: lock, take, size, frontier, nodes, the move. SQLite: BEGIN IMMEDIATE,
        # take, size, frontier, nodes, entries, subjects, delete.
        assert counts[700] <= (6 if url.startswith("postgresql") else 8), counts

        # Two calls raced with one record id past both checks: the copy got staged again.
        with transaction(sessions) as session:
            repo.stage_many(session, [item(1), item(n)])
        batch = sequencer.sequence_once()
        assert (batch.taken, batch.dropped, [e.index for e, _ in batch.appended]) == (2, 1, [n])
        expected.append(item(n)[0].encode())
        n += 1

        indices, canonical, staged = _log_rows(url)
        assert (indices, canonical, staged) == (list(range(n)), expected, 0)
        with sessions() as session:
            for index, subject in subjects.items():
                assert repo.access_subject(session, index) == subject
            assert repo.access_subject(session, 1) is None
            merkle = repo.log(session)
            leaves = [rfc_leaf(c) for c in canonical]
            for size in (1, 4, 5, 300, n):
                assert merkle.root(size) == rfc_mth(leaves[:size])
            assert repo.by_source_and_id(session, "/access/officer-1", "acc-3").fingerprint == (
                "fp-3"
            )
    finally:
        engine.dispose()


def test_entries_staged_while_no_replica_runs_are_sequenced_when_one_starts(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    from motcua_audit.adapters import db
    from motcua_kit.db import make_engine, migrate, session_factory, transaction

    url = database("audit")
    migrate(url, "motcua_audit:migrations")
    engine = make_engine(url)
    with transaction(session_factory(engine)) as session:
        for i in range(40):  # accepted (e.g. with their inbox rows) just before a crash
            db.AuditLogRepository.stage(session, _sequencer_entry(i, "/motcua/restart"))
    engine.dispose()
    proc = service_factory("audit", url).start()
    audit = Audit(proc, token)
    wanted = {f"seq-{i}" for i in range(40)}
    entries = wait_for(
        lambda: (got := audit.entries()) and wanted <= {e.event_id for e in got} and got,
        60,
        0.2,
        "the staged entries in the log",
    )
    assert [e.index for e in entries] == list(range(len(entries)))
    assert [e.event_id for e in entries if e.event_id in wanted] == [f"seq-{i}" for i in range(40)]
    audit.close()
    assert proc.terminate() == 0


# --------------------------------------------------------------------------------------
# Keys, metrics, self-check
# --------------------------------------------------------------------------------------


def test_key_rotation_keeps_old_heads_verifiable(
    kafka: Kafka,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/rotation.db"
    old_private, old_public = _key_pair(tmp_path, "old")
    new_private, new_public = _key_pair(tmp_path, "new")
    proc = service_factory("audit", url)
    proc.start(SIGNING_KEY_FILE=str(old_private), TREE_HEAD_INTERVAL_SECONDS="3600")
    audit = Audit(proc, token)
    for _ in range(5):
        audit.record_access(f"r-{uuid.uuid4()}")
    old_head = audit.stub.SignTreeHead(
        audit_pb2.SignTreeHeadRequest(), metadata=audit.admin, timeout=30
    ).tree_head
    audit.close()
    assert proc.terminate() == 0

    proc.start(
        SIGNING_KEY_FILE=str(new_private),
        TRUSTED_PUBLIC_KEY_FILES=str(old_public),
        TREE_HEAD_INTERVAL_SECONDS="3600",
    )
    audit = Audit(proc, token)
    for _ in range(4):
        audit.record_access(f"r-{uuid.uuid4()}")
    new_head = audit.stub.SignTreeHead(
        audit_pb2.SignTreeHeadRequest(), metadata=audit.admin, timeout=30
    ).tree_head
    published = audit.stub.GetPublicKeys(
        audit_pb2.GetPublicKeysRequest(), metadata=audit.officer, timeout=10
    ).keys
    assert [(k.key_id == new_head.key_id, k.current) for k in published] == [
        (True, True),
        (False, False),
    ]
    keys = {k.key_id: k.raw for k in published}
    assert old_head.key_id != new_head.key_id
    assert head_ok(old_head, keys) and head_ok(new_head, keys)
    proof = audit.stub.GetConsistencyProof(
        audit_pb2.GetConsistencyProofRequest(
            first_size=old_head.tree_size, second_size=new_head.tree_size
        ),
        metadata=audit.officer,
        timeout=10,
    ).proof
    assert rfc_consistency_ok(
        old_head.tree_size, new_head.tree_size, old_head.root_hash, new_head.root_hash, list(proof)
    )
    export, head_file = tmp_path / "e.jsonl", tmp_path / "h.json"
    assert (
        _run_cli(
            "export",
            "--database-url",
            url,
            "--output",
            str(export),
            "--head-output",
            str(head_file),
        ).returncode
        == 0
    )
    both = _run_cli(
        "verify",
        "--export",
        str(export),
        "--head",
        str(head_file),
        "--public-key",
        str(new_public),
        "--public-key",
        str(old_public),
    )
    assert both.returncode == 0, both.stdout + both.stderr
    only_new = _run_cli(
        "verify", "--export", str(export), "--head", str(head_file), "--public-key", str(new_public)
    )
    assert only_new.returncode == 1 and "does not verify" in only_new.stderr
    audit.close()
    proc.terminate()


def test_metrics_heads_on_schedule_dev_key_and_self_check_failures(
    kafka: Kafka,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/metrics.db"
    dev_key = tmp_path / "state" / "audit-signing-key.pem"
    proc = service_factory("audit", url).start(
        DEV_SIGNING_KEY_FILE=str(dev_key),
        TREE_HEAD_INTERVAL_SECONDS="1",
        SELF_CHECK_INTERVAL_SECONDS="0.5",
    )
    assert dev_key.exists()
    assert "development" in proc.log_tail(200)
    audit = Audit(proc, token)
    records = {f"r-{uuid.uuid4()}" for _ in range(6)}
    for record_id in records:
        audit.record_access(record_id)
    # The consumer may still be reading other tests' events from the shared topics: wait until
    # the gauge and the log agree (the log has at least our 6 entries).
    entries = wait_for(
        lambda: (
            (got := audit.entries())
            and records <= {e.event_id for e in got}
            and _metric(proc, "motcua_audit_log_size") == len(got)
            and got
        ),
        30,
        0.3,
        "the size gauge to match the log",
    )
    assert (_metric(proc, "motcua_audit_append_seconds_count") or 0) >= 6
    assert (_metric(proc, 'motcua_audit_entries_appended_total{kind="access"}') or 0) == 6
    # Heads are signed on schedule: the timestamp keeps moving.
    first = wait_for(
        lambda: _metric(proc, "motcua_audit_tree_head_timestamp_seconds"), 10, 0.2, "a head"
    )
    wait_for(
        lambda: (_metric(proc, "motcua_audit_tree_head_timestamp_seconds") or 0) > first,
        10,
        0.2,
        "a newer head",
    )
    wait_for(
        lambda: (_metric(proc, "motcua_audit_tree_head_size") or 0) >= len(entries),
        10,
        0.2,
        "a head over the entries",
    )
    # Every check's series is there from 0, so an alert on increase() sees the first failure.
    for check in ("entry_hash", "node_hash", "tree_head_signature", "consistency"):
        assert _metric(proc, f'motcua_audit_verification_failures_total{{check="{check}"}}') == 0

    # Someone rewrites an entry in the database: the self-check notices and counts it.
    engine = create_engine(url)
    with engine.begin() as conn:
        row = conn.execute(text("SELECT entry FROM audit_entries WHERE idx = 3")).scalar_one()
        forged = bytearray(row)
        forged[-20] ^= 0xFF
        conn.execute(
            text("UPDATE audit_entries SET entry = :e WHERE idx = 3"), {"e": bytes(forged)}
        )
    engine.dispose()

    def failures() -> float:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5
        ) as r:
            body = r.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith('motcua_audit_verification_failures_total{check="entry_hash"}')
        )

    wait_for(lambda: failures() >= 1, 15, 0.3, "the self-check to count the rewritten entry")
    assert "self-check failed" in proc.log_tail(200)
    audit.close()
    proc.terminate()
