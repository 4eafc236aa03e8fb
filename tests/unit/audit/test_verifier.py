"""Offline export verification: verdicts, and the exact first damaged index and kind."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motcua_audit.domain.merkle import MerkleLog, leaf_hash
from motcua_audit.domain.tree_head import SignedTreeHead, TreeHeadSigner, keyring
from motcua_audit.domain.verifier import (
    Damage,
    LogExport,
    Problem,
    locate_damage,
    verify_consistency_between,
    verify_export,
)

N = 64
SIGNER = TreeHeadSigner.generate(clock=lambda: 1_700_000_000_000)
OTHER_SIGNER = TreeHeadSigner.generate()
KEYS = keyring([SIGNER.public_key])


def entry(i: int, tag: str = "") -> bytes:
    """Entries as the audit service would export them: canonical JSON carrying an index."""
    return json.dumps({"index": i, "event": f"dossier.updated{tag}", "actor": f"u{i % 7}"}).encode()


ENTRIES = [entry(i) for i in range(N)]
LOG = MerkleLog()
LOG.append_many(ENTRIES)
RECORDED = [LOG.leaf_hash_at(i) for i in range(N)]


def head(size: int = N, signer: TreeHeadSigner = SIGNER) -> SignedTreeHead:
    return signer.sign(size, LOG.root(size))


HEAD = head()


def export(entries, recorded=RECORDED, checkpoints=(), signed=HEAD) -> LogExport:
    return LogExport(
        entries=entries, head=signed, recorded_leaf_hashes=recorded, checkpoints=checkpoints
    )


def altered(entries, i):
    out = list(entries)
    out[i] = entry(i, tag="-tampered")
    return out


def removed(entries, i):
    return [e for k, e in enumerate(entries) if k != i]


def inserted(entries, i):
    return [*entries[:i], b'{"index": 9999, "event": "forged"}', *entries[i:]]


def swapped(entries, i, j):
    out = list(entries)
    out[i], out[j] = out[j], out[i]
    return out


def kinds(report):
    return [p.kind for p in report.problems]


# --------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------


def test_intact_export_verifies():
    report = verify_export(export(ENTRIES), KEYS)
    assert report.ok and report.problems == [] and report.first_problem is None
    assert report.computed_root == HEAD.head.root_hash
    # Also without the recorded hashes, and with consistent checkpoints.
    checkpoints = (head(1), head(17), head(32))
    assert verify_export(export(ENTRIES, recorded=None, checkpoints=checkpoints), KEYS).ok


def test_empty_log_export_verifies():
    empty = SIGNER.sign(0, MerkleLog().root())
    assert verify_export(LogExport(entries=[], head=empty, recorded_leaf_hashes=[]), KEYS).ok


def test_unknown_or_bad_signature_fails_even_if_entries_are_intact():
    report = verify_export(export(ENTRIES, signed=head(signer=OTHER_SIGNER)), KEYS)
    assert not report.ok and kinds(report) == [Damage.BAD_SIGNATURE]
    bad_sig = SignedTreeHead(HEAD.head, bytes(64))
    assert kinds(verify_export(export(ENTRIES, signed=bad_sig), KEYS)) == [Damage.BAD_SIGNATURE]


def test_an_unverified_head_is_not_used_to_judge_entries():
    bad_head = SignedTreeHead(HEAD.head, bytes(64))
    damaged = altered(ENTRIES, 40)
    report = verify_export(
        export(damaged, recorded=None, checkpoints=(head(16),), signed=bad_head), KEYS
    )
    # Only what is known: the head is bad; the prefix the checkpoint covers is intact.
    assert kinds(report) == ["bad_signature"]
    report = verify_export(export(damaged, checkpoints=(head(48),), signed=bad_head), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [
        (None, "bad_signature"),
        (0, "unlocated"),
    ]


# --------------------------------------------------------------------------------------
# Localisation with the recorded leaf hashes
# --------------------------------------------------------------------------------------

POSITIONS = [0, 1, 31, 32, 62, 63]


@pytest.mark.parametrize("i", POSITIONS)
def test_altered_entry(i):
    report = verify_export(export(altered(ENTRIES, i)), KEYS)
    assert not report.ok
    assert [(p.index, p.kind) for p in report.problems] == [(i, "altered")]


@pytest.mark.parametrize("i", POSITIONS)
def test_removed_entry(i):
    report = verify_export(export(removed(ENTRIES, i)), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [(i, "removed")]


@pytest.mark.parametrize("i", [*POSITIONS, N])
def test_inserted_entry(i):
    report = verify_export(export(inserted(ENTRIES, i)), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [(i, "inserted")]


@pytest.mark.parametrize(("i", "j"), [(0, 1), (10, 11), (10, 12), (10, 13), (3, 60), (62, 63)])
def test_swapped_entries(i, j):
    report = verify_export(export(swapped(ENTRIES, i, j)), KEYS)
    assert not report.ok
    assert report.first_problem is not None
    assert (report.first_problem.index, report.first_problem.kind) == (i, "reordered")
    assert set(kinds(report)) == {"reordered"}
    # Only the two swapped entries are blamed, never the untouched ones between them.
    blamed = {int(p.detail.split()[2]) for p in report.problems}
    assert blamed <= {i, j}


def test_replayed_entry_is_an_insertion_not_a_reorder():
    report = verify_export(export([*ENTRIES[:5], ENTRIES[40], *ENTRIES[5:]]), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [(5, "inserted")]


def test_dropping_one_of_two_identical_entries_blames_the_right_one():
    dup = [*ENTRIES[:10], ENTRIES[3], *ENTRIES[10:20]]  # position 10 repeats entry 3
    recorded = [leaf_hash(e) for e in dup]
    log = MerkleLog()
    log.append_many(dup)
    signed = SIGNER.sign(len(dup), log.root())
    report = verify_export(export(removed(dup, 10), recorded=recorded, signed=signed), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [(10, "removed")]
    report = verify_export(export(removed(dup, 3), recorded=recorded, signed=signed), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [(3, "removed")]


def test_several_problems_are_all_reported_in_order():
    damaged = removed(altered(ENTRIES, 3), 10)
    damaged = inserted(damaged, 40)  # lands before log entry 41 after the removal
    report = verify_export(export(damaged), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [
        (3, "altered"),
        (10, "removed"),
        (41, "inserted"),
    ]
    assert report.first_problem == report.problems[0]
    assert isinstance(report.problems[0], Problem) and report.problems[0].as_tuple()[0] == 3


def test_extra_entries_past_the_head_are_insertions():
    longer = [*ENTRIES, entry(N), entry(N + 1)]
    for recorded in (RECORDED, None):
        report = verify_export(export(longer, recorded=recorded), KEYS)
        assert [(p.index, p.kind) for p in report.problems] == [(N, "inserted")] * 2


def test_truncated_export_reports_removed_tail():
    report = verify_export(export(ENTRIES[:60]), KEYS)
    assert [(p.index, p.kind) for p in report.problems] == [(i, "removed") for i in range(60, N)]


def test_locate_damage_extremes():
    hashes = [leaf_hash(e) for e in ENTRIES[:3]]
    assert locate_damage(hashes, hashes) == []
    assert [(p.index, p.kind) for p in locate_damage([], hashes)] == [(0, "inserted")] * 3
    assert [(p.index, p.kind) for p in locate_damage(hashes, [])] == [
        (0, "removed"),
        (1, "removed"),
        (2, "removed"),
    ]
    reversed_ = locate_damage(hashes, hashes[::-1])
    assert reversed_[0].index == 0 and {p.kind for p in reversed_} == {"reordered"}


DAMAGE = st.sampled_from(["altered", "removed", "inserted", "swapped"])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 80), DAMAGE, st.data())
def test_single_damage_is_located_exactly(n, kind, data):
    entries = [entry(i) for i in range(n)]
    recorded = [leaf_hash(e) for e in entries]
    if kind == "altered":
        i = data.draw(st.integers(0, n - 1))
        damaged, expected = altered(entries, i), [(i, "altered")]
    elif kind == "removed":
        i = data.draw(st.integers(0, n - 1))
        damaged, expected = removed(entries, i), [(i, "removed")]
    elif kind == "inserted":
        i = data.draw(st.integers(0, n))
        damaged, expected = inserted(entries, i), [(i, "inserted")]
    else:
        if n < 2:
            return
        i = data.draw(st.integers(0, n - 2))
        j = data.draw(st.integers(i + 1, n - 1))
        damaged = swapped(entries, i, j)
        problems = locate_damage(recorded, [leaf_hash(e) for e in damaged])
        assert (problems[0].index, problems[0].kind) == (i, "reordered")
        assert {p.kind for p in problems} == {"reordered"} and len(problems) <= 2
        return
    got = locate_damage(recorded, [leaf_hash(e) for e in damaged])
    assert [(p.index, p.kind) for p in got] == expected


# --------------------------------------------------------------------------------------
# Without (trustworthy) recorded hashes: bracketing with signed checkpoints
# --------------------------------------------------------------------------------------


def test_without_recorded_hashes_damage_is_bracketed_by_checkpoints():
    checkpoints = (head(16), head(32), head(48))
    report = verify_export(
        export(altered(ENTRIES, 40), recorded=None, checkpoints=checkpoints), KEYS
    )
    assert not report.ok
    assert [(p.index, p.kind) for p in report.problems] == [(32, "unlocated")]
    assert "[32, 48)" in report.problems[0].detail
    bare = verify_export(export(altered(ENTRIES, 40), recorded=None), KEYS)
    assert [(p.index, p.kind) for p in bare.problems] == [(0, "unlocated")]


def test_recorded_hashes_that_do_not_match_the_head_are_not_used():
    recorded = list(RECORDED)
    recorded[20] = leaf_hash(altered(ENTRIES, 20)[20])  # attacker fixed up the hash too
    report = verify_export(
        export(altered(ENTRIES, 20), recorded=recorded, checkpoints=(head(16), head(24))), KEYS
    )
    assert kinds(report) == ["untrusted_hashes", "unlocated"]
    assert report.first_problem is not None and report.first_problem.index == 16
    short = verify_export(export(ENTRIES, recorded=RECORDED[:-1]), KEYS)
    assert kinds(short) == ["untrusted_hashes"]  # entries themselves are fine, still not ok
    assert not short.ok


def test_bad_checkpoint_signature_is_reported_and_ignored():
    forged = SignedTreeHead(head(16).head, bytes(64))
    report = verify_export(export(ENTRIES, checkpoints=(forged,)), KEYS)
    assert kinds(report) == ["bad_signature"]


def test_history_rewritten_and_resigned_is_caught_by_a_pinned_checkpoint():
    pinned = head(20)  # the auditor kept this one from an earlier audit
    rewritten = altered(ENTRIES, 5)
    rogue_log = MerkleLog()
    rogue_log.append_many(rewritten)
    # An insider with the signing key re-signs the rewritten log, hashes and all.
    rogue_head = SIGNER.sign(N, rogue_log.root())
    rogue_hashes = [rogue_log.leaf_hash_at(i) for i in range(N)]
    report = verify_export(
        export(rewritten, recorded=rogue_hashes, checkpoints=(pinned,), signed=rogue_head), KEYS
    )
    assert not report.ok
    assert set(kinds(report)) == {"inconsistent_heads"}
    located = report.first_problem
    assert located is not None and located.index == 0 and "[0, 20)" in located.detail


def test_two_signed_roots_for_one_size_are_a_contradiction():
    forked = SIGNER.sign(32, leaf_hash(b"fork"))
    report = verify_export(export(ENTRIES, checkpoints=(forked, head(16))), KEYS)
    assert set(kinds(report)) == {"inconsistent_heads"}
    located = report.first_problem
    assert located is not None and located.index == 16 and "[16, 32)" in located.detail


def test_rollback_below_a_pinned_checkpoint_is_caught():
    shorter_head = head(50)
    report = verify_export(
        export(ENTRIES[:50], recorded=RECORDED[:50], checkpoints=(HEAD,), signed=shorter_head),
        KEYS,
    )
    assert kinds(report) == ["inconsistent_heads"]
    assert "rolled back" in report.problems[0].detail


# --------------------------------------------------------------------------------------
# Consistency between two heads
# --------------------------------------------------------------------------------------


def test_verify_consistency_between_heads():
    old, new = head(20), HEAD
    proof = LOG.consistency_proof(20, N)
    assert verify_consistency_between(old, new, proof)
    assert verify_consistency_between(old, new, proof, KEYS)
    assert verify_consistency_between(old.head, new.head, proof)
    assert not verify_consistency_between(old.head, new.head, proof, KEYS)  # unsigned
    assert not verify_consistency_between(old, new, proof, keyring([OTHER_SIGNER.public_key]))
    assert not verify_consistency_between(new, old, proof)
    assert not verify_consistency_between(old, new, proof[:-1])
    assert not verify_consistency_between(head(21), new, proof)
    rogue = OTHER_SIGNER.sign(20, LOG.root(20))
    assert not verify_consistency_between(rogue, new, proof, KEYS)
    forked = SIGNER.sign(N, leaf_hash(b"fork"))
    assert not verify_consistency_between(old, forked, proof, KEYS)
