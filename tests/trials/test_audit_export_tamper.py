"""Tamper tests on a real 10,000-entry export, and forged tree heads.

The export is written once by ``export`` from a SQLite log, read back with the verifier's own
reader, and every trial mutates a copy: 1,000 random trials each of altering one byte of an
entry, deleting one, swapping two and inserting one. The verifier must fail every trial and
name the right first index and kind. A few trials per kind also go through the files and the
``verify`` command end to end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from typer.testing import CliRunner

from motcua_audit import cli
from motcua_audit.__main__ import app
from motcua_audit.adapters import db
from motcua_audit.domain.entry import Actor, Entry, EntryKind, Role
from motcua_audit.domain.export_format import (
    ConsistencyProof,
    RecordedHashes,
    head_to_json,
    parse_line,
    proof_to_json,
)
from motcua_audit.domain.merkle import MemoryNodeStore, MerkleLog
from motcua_audit.domain.tree_head import (
    SignedTreeHead,
    TreeHead,
    TreeHeadSigner,
    keyring,
    public_key_to_pem,
)
from motcua_audit.domain.verifier import LogExport, verify_export
from motcua_kit.db import make_engine, migrate, session_factory

N = 10_000
TRIALS = 1_000
T0 = datetime(2026, 11, 29, 7, 30, tzinfo=UTC)
SIGNER = TreeHeadSigner.generate()
OTHER = TreeHeadSigner.generate()
KEYS = keyring([SIGNER.public_key])


def make_entry(i: int, tag: str = "") -> Entry:
    code = f"STP-2611{i % 28 + 1:02d}-{i % 997:04d}"
    access = i % 11 == 0
    return Entry(
        kind=EntryKind.ACCESS if access else EntryKind.EVENT,
        event_id=f"{tag}{i:08d}-4c36-9d1f",
        event_source="/motcua/audit/access/officer-3" if access else "/motcua/dossier",
        event_type="vn.motcua.audit.access_recorded.v1"
        if access
        else "vn.motcua.dossier.received.v1",
        event_subject=code,
        event_time=T0 + timedelta(seconds=i),
        topic="" if access else "motcua.dossier.v1",
        actor=Actor("officer-3", Role.OFFICER, "STP"),
        dossier_code=code,
        payload_sha256=hashlib.sha256(f"{tag}{i}".encode()).digest(),
        recorded_at=T0 + timedelta(seconds=i, milliseconds=3),
        purpose="Xử lý hồ sơ" if access else "",
    )


class Export:
    """The 10,000-entry export: files on disk and the parts the verifier reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"sqlite:///{root}/audit.db"
        migrate(self.url, "motcua_audit:migrations")
        engine = make_engine(self.url)
        sessions = session_factory(engine)
        with sessions() as session, session.begin():
            repo = db.AuditLogRepository()
            repo.append_many(session, [(make_entry(i), None, None) for i in range(3000)])
            log = repo.log(session)
            self.old_head = SIGNER.sign(3000, log.root(3000))
            db.TreeHeadRepository.add(session, self.old_head)
            repo.append_many(session, [(make_entry(i), None, None) for i in range(3000, N)])
            self.head = SIGNER.sign(N, log.root(N))
            db.TreeHeadRepository.add(session, self.head)
            self.proof = log.consistency_proof(3000, N)
        engine.dispose()
        self.file = root / "export.jsonl"
        self.head_file = root / "head.json"
        self.key_file = root / "public.pem"
        self.key_file.write_bytes(public_key_to_pem(SIGNER.public_key))
        assert cli.run_export(self.file, self.head_file, database_url=self.url) == N
        self.lines = self.file.read_bytes().splitlines(keepends=True)
        parsed = [parse_line(line.rstrip(b"\n")) for line in self.lines[1:]]
        self.entries = [p for p in parsed if isinstance(p, bytes)]
        recorded = [p for p in parsed if isinstance(p, RecordedHashes)]
        self.recorded = [h for chunk in recorded for h in chunk.hashes]
        self.entry_lines = self.lines[1 : 1 + N]

    def verify(self, entries: list[bytes], head: SignedTreeHead | None = None):
        return verify_export(
            LogExport(entries=entries, head=head or self.head, recorded_leaf_hashes=self.recorded),
            KEYS,
        )


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Export:
    return Export(tmp_path_factory.mktemp("audit-export"))


def test_the_export_is_what_the_log_holds_and_verifies(export):
    assert len(export.entries) == N and len(export.recorded) == N
    assert [Entry.decode(e) for e in export.entries[:50]] == [make_entry(i) for i in range(50)]
    report = export.verify(list(export.entries))
    assert report.ok and report.computed_root == export.head.head.root_hash
    code, _, lines = cli.run_verify(export.file, export.head_file, [export.key_file])
    assert code == 0 and lines[0].startswith(f"OK: {N} entries")


def _first(report):
    first = report.first_problem
    assert not report.ok and first is not None
    return first.index, first.kind


def test_altering_one_byte_of_an_entry_is_named(export):
    rng = random.Random(61)
    for _ in range(TRIALS):
        i = rng.randrange(N)
        entries = list(export.entries)
        data = bytearray(entries[i])
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        entries[i] = bytes(data)
        assert _first(export.verify(entries)) == (i, "altered"), i


def test_deleting_one_entry_is_named(export):
    rng = random.Random(62)
    for _ in range(TRIALS):
        i = rng.randrange(N)
        entries = list(export.entries)
        del entries[i]
        assert _first(export.verify(entries)) == (i, "removed"), i


def test_swapping_two_entries_is_named(export):
    rng = random.Random(63)
    for _ in range(TRIALS):
        i, j = sorted(rng.sample(range(N), 2))
        entries = list(export.entries)
        entries[i], entries[j] = entries[j], entries[i]
        assert _first(export.verify(entries)) == (i, "reordered"), (i, j)


def test_inserting_one_entry_is_named(export):
    rng = random.Random(64)
    for trial in range(TRIALS):
        p = rng.randrange(N + 1)
        entries = list(export.entries)
        forged = make_entry(rng.randrange(N), tag=f"forged{trial}-").encode()
        entries.insert(p, forged)
        assert _first(export.verify(entries)) == (p, "inserted"), p


def test_inserting_a_replayed_copy_is_named(export):
    rng = random.Random(65)
    for _ in range(100):
        k = rng.randrange(N)
        p = rng.randrange(N + 1)
        while abs(p - k) <= 1:  # a copy right beside the original is indistinguishable
            p = rng.randrange(N + 1)
        entries = list(export.entries)
        entries.insert(p, export.entries[k])
        assert _first(export.verify(entries)) == (p, "inserted"), (k, p)


# --------------------------------------------------------------------------------------
# Through the files and the command
# --------------------------------------------------------------------------------------


def _write(export: Export, entry_lines: list[bytes], name: str) -> Path:
    path = export.root / name
    path.write_bytes(b"".join([export.lines[0], *entry_lines, *export.lines[1 + N :]]))
    return path


def test_the_command_names_the_first_bad_index_for_each_kind_of_damage(export):
    rng = random.Random(66)
    for trial in range(5):
        i, j = sorted(rng.sample(range(N), 2))
        lines = list(export.entry_lines)
        record = json.loads(lines[i])
        data = bytearray(base64.b64decode(record["entry"]))
        data[rng.randrange(len(data))] ^= 0x20
        record["entry"] = base64.b64encode(bytes(data)).decode()
        altered = [*lines[:i], (json.dumps(record) + "\n").encode(), *lines[i + 1 :]]
        removed = [*lines[:i], *lines[i + 1 :]]
        swapped = list(lines)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        forged = json.dumps(
            {"index": i, "entry": base64.b64encode(make_entry(i, "x").encode()).decode()}
        )
        inserted = [*lines[:i], (forged + "\n").encode(), *lines[i:]]
        garbled = [*lines[:i], b"{not json\n", *lines[i + 1 :]]
        for kind, content in [
            ("altered", altered),
            ("removed", removed),
            ("reordered", swapped),
            ("inserted", inserted),
            ("altered", garbled),
        ]:
            path = _write(export, content, f"t{trial}-{kind}.jsonl")
            code, report, messages = cli.run_verify(path, export.head_file, [export.key_file])
            assert code == 1, (kind, i)
            assert (report.first_problem.index, report.first_problem.kind) == (i, kind)
            assert messages[0].startswith(f"FAILED: first bad index {i} ({kind})")


def test_verify_exits_non_zero_with_the_message(export, tmp_path):
    lines = list(export.entry_lines)
    del lines[1234]
    path = _write(export, lines, "cli-removed.jsonl")
    result = CliRunner().invoke(
        app,
        [
            "verify",
            "--export",
            str(path),
            "--head",
            str(export.head_file),
            "--public-key",
            str(export.key_file),
        ],
    )
    assert result.exit_code == 1
    assert "first bad index 1234 (removed)" in result.output
    ok = CliRunner().invoke(
        app,
        [
            "verify",
            "--export",
            str(export.file),
            "--head",
            str(export.head_file),
            "--public-key",
            str(export.key_file),
        ],
    )
    assert ok.exit_code == 0 and f"OK: {N} entries" in ok.output


def test_a_large_export_shows_a_progress_bar(export, monkeypatch):
    console = Console(record=True, force_terminal=True, width=100)
    monkeypatch.setattr(cli, "err", console)
    cli.read_export(export.file)
    assert "hashing entries" in console.export_text()


# --------------------------------------------------------------------------------------
# Forged tree heads
# --------------------------------------------------------------------------------------


def _head_file(export: Export, signed: SignedTreeHead, name: str) -> Path:
    path = export.root / name
    path.write_text(head_to_json(signed))
    return path


def _forgeries(export: Export):
    h = export.head.head
    sig = export.head.signature
    other_root = hashlib.sha256(b"forged root").digest()
    return {
        "wrong key": OTHER.sign(h.size, h.root_hash, h.timestamp_ms),
        "altered root": SignedTreeHead(TreeHead(h.size, other_root, h.timestamp_ms, h.key_id), sig),
        "altered size": SignedTreeHead(
            TreeHead(h.size - 1, h.root_hash, h.timestamp_ms, h.key_id), sig
        ),
        "larger size": SignedTreeHead(
            TreeHead(h.size + 1, h.root_hash, h.timestamp_ms, h.key_id), sig
        ),
        "altered time": SignedTreeHead(
            TreeHead(h.size, h.root_hash, h.timestamp_ms + 1, h.key_id), sig
        ),
        "relabelled key": SignedTreeHead(
            TreeHead(h.size, h.root_hash, h.timestamp_ms, OTHER.key_id), sig
        ),
        "resigned root by other key": OTHER.sign(h.size, other_root, h.timestamp_ms),
        "garbled signature": SignedTreeHead(h, bytes(b ^ 1 for b in sig)),
    }


@pytest.mark.parametrize(
    "name",
    [
        "wrong key",
        "altered root",
        "altered size",
        "larger size",
        "altered time",
        "relabelled key",
        "resigned root by other key",
        "garbled signature",
    ],
)
def test_a_forged_tree_head_is_refused(export, name):
    forged = _forgeries(export)[name]
    path = _head_file(export, forged, f"forged-{name.replace(' ', '-')}.json")
    code, report, messages = cli.run_verify(export.file, path, [export.key_file])
    assert code == 1
    assert "bad_signature" in {p.kind for p in report.problems}
    assert messages[0].startswith("FAILED")


def test_a_head_signed_by_a_retired_key_verifies_when_that_key_is_trusted(export):
    retired = TreeHeadSigner.generate()
    h = export.head.head
    path = _head_file(export, retired.sign(h.size, h.root_hash), "retired.json")
    retired_pem = export.root / "retired.pem"
    retired_pem.write_bytes(public_key_to_pem(retired.public_key))
    assert cli.run_verify(export.file, path, [export.key_file])[0] == 1
    # The export's own embedded head is signed by the current key: both keys are needed.
    assert cli.run_verify(export.file, path, [export.key_file, retired_pem])[0] == 0


# --------------------------------------------------------------------------------------
# Two heads and a consistency proof
# --------------------------------------------------------------------------------------


def test_consistency_between_an_old_head_and_the_new_one(export):
    old = _head_file(export, export.old_head, "old.json")
    proof = export.root / "proof.json"
    proof.write_text(proof_to_json(ConsistencyProof(3000, N, tuple(export.proof))))
    code, _, lines = cli.run_verify(export.file, export.head_file, [export.key_file], old, proof)
    assert code == 0 and "consistent with the old head of size 3000" in lines[-1]

    bad_proof = export.root / "bad-proof.json"
    tampered = list(export.proof)
    tampered[0] = bytes(32)
    bad_proof.write_text(proof_to_json(ConsistencyProof(3000, N, tuple(tampered))))
    code, report, _ = cli.run_verify(
        export.file, export.head_file, [export.key_file], old, bad_proof
    )
    assert code == 1 and report.problems[0].kind == "inconsistent_heads"

    # A fork: an old head for another history, validly signed (an insider with the key).
    fork_log = MerkleLog(MemoryNodeStore())
    fork_log.append_many(make_entry(i, "fork").encode() for i in range(3000))
    forked = _head_file(export, SIGNER.sign(3000, fork_log.root()), "forked.json")
    code, report, _ = cli.run_verify(
        export.file, export.head_file, [export.key_file], forked, proof
    )
    assert code == 1
    assert {p.kind for p in report.problems} == {"inconsistent_heads"}

    wrong_sizes = export.root / "wrong-sizes.json"
    wrong_sizes.write_text(proof_to_json(ConsistencyProof(2999, N, tuple(export.proof))))
    code, report, _ = cli.run_verify(
        export.file, export.head_file, [export.key_file], old, wrong_sizes
    )
    assert code == 1 and "sizes 2999" in report.problems[0].detail


# --------------------------------------------------------------------------------------
# Unusable input
# --------------------------------------------------------------------------------------


def test_unusable_files_exit_2_with_the_reason(export, tmp_path):
    not_export = tmp_path / "x.jsonl"
    not_export.write_text('{"hello": 1}\n')
    code, _, lines = cli.run_verify(not_export, export.head_file, [export.key_file])
    assert code == 2 and "not a motcua-audit-export" in lines[0]
    garbage_head = tmp_path / "h.json"
    garbage_head.write_text("{")
    assert cli.run_verify(export.file, garbage_head, [export.key_file])[0] == 2
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    code, _, lines = cli.run_verify(export.file, export.head_file, [ec_key])
    assert code == 2 and "not an Ed25519 public key" in lines[0]
    proof = tmp_path / "p.json"
    proof.write_text(proof_to_json(ConsistencyProof(1, 2, ())))
    code, _, lines = cli.run_verify(export.file, export.head_file, [export.key_file], None, proof)
    assert code == 2 and "--old-head" in lines[0]
    assert cli.run_verify(tmp_path / "missing", export.head_file, [export.key_file])[0] == 2


def test_keygen_writes_a_usable_key_and_never_overwrites(tmp_path):
    private, public = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    result = CliRunner().invoke(
        app, ["keygen", "--private-key", str(private), "--public-key", str(public)]
    )
    assert result.exit_code == 0 and "key id" in result.output
    assert private.stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(
        app, ["keygen", "--private-key", str(private), "--public-key", str(public)]
    )
    assert again.exit_code == 2
