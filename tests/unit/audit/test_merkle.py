"""RFC 6962 / RFC 9162 Merkle log: known answers, a naive reference, properties, adversaries."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from motcua_audit.domain.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    MerkleLog,
    MissingNodeError,
    NodeKey,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

# --------------------------------------------------------------------------------------
# Certificate Transparency test vectors (the 8-leaf tree used across the CT code bases,
# e.g. transparency-dev/merkle proof/verify_test.go). Leaf indices here are 0-based.
# --------------------------------------------------------------------------------------

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [  # root of the first n leaves, n = 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [  # (index, size, proof)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
CT_CONSISTENCY = [  # (old_size, new_size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def hx(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# --------------------------------------------------------------------------------------
# Naive reference: the RFC's recursive definitions, transcribed literally.
# --------------------------------------------------------------------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over hashed leaves, straight from RFC 6962 section 2.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 9162 2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 9162 2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], b), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_root_from_path(leaf: bytes, m: int, n: int, proof: list[bytes]) -> bytes | None:
    """Recompute the root by mirroring PATH's recursion (independent of RFC 9162 2.1.3.2)."""
    if n == 1:
        return leaf if not proof else None
    if not proof:
        return None
    k = _k(n)
    *rest, top = proof
    if m < k:
        sub = ref_root_from_path(leaf, m, k, rest)
        return None if sub is None else node_hash(sub, top)
    sub = ref_root_from_path(leaf, m - k, n - k, rest)
    return None if sub is None else node_hash(top, sub)


def ref_verify_inclusion(leaf: bytes, m: int, n: int, proof: list[bytes], root: bytes) -> bool:
    if not 0 <= m < n or any(len(p) != 32 for p in proof):
        return False
    return ref_root_from_path(leaf, m, n, proof) == root


def _ref_cons(
    m: int, n: int, b: bool, proof: list[bytes], old_root: bytes
) -> tuple[bytes, bytes] | None:
    """(old-prefix hash, subtree hash) rebuilt by mirroring SUBPROOF's recursion."""
    if m == n:
        if b:
            return None if proof else (old_root, old_root)
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = _k(n)
    *rest, top = proof
    if m <= k:
        sub = _ref_cons(m, k, b, rest, old_root)
        return None if sub is None else (sub[0], node_hash(sub[1], top))
    sub = _ref_cons(m - k, n - k, False, rest, old_root)
    return None if sub is None else (node_hash(top, sub[0]), node_hash(top, sub[1]))


def ref_verify_consistency(
    m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    if not 0 <= m <= n or any(len(p) != 32 for p in proof):
        return False
    if m == 0:
        return not proof and old_root == EMPTY_ROOT and (n > 0 or new_root == EMPTY_ROOT)
    if m == n:
        return not proof and old_root == new_root
    got = _ref_cons(m, n, True, proof, old_root)
    return got is not None and got == (old_root, new_root)


# --------------------------------------------------------------------------------------
# Shared fixtures
# --------------------------------------------------------------------------------------

MAX_N = 300
BIG_LEAVES = [leaf_hash(b"entry-%d" % i) for i in range(MAX_N)]
BIG_LOG = MerkleLog()
BIG_LOG.append_leaf_hashes(BIG_LEAVES)


def ct_log() -> MerkleLog:
    log = MerkleLog()
    log.append_many(CT_LEAVES)
    return log


class CountingStore:
    """Wraps a store and counts what the log reads, to pin down O(log n)."""

    def __init__(self) -> None:
        self.inner = MemoryNodeStore()
        self.keys_read = 0
        self.get_calls = 0
        self.put_calls = 0

    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        self.get_calls += 1
        self.keys_read += len(keys)
        return self.inner.get_many(keys)

    def put_many(self, items):
        self.put_calls += 1
        self.inner.put_many(items)

    def size(self) -> int:
        return self.inner.size()

    def reset(self) -> None:
        self.keys_read = self.get_calls = self.put_calls = 0


# --------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------


def test_entries_must_be_bytes():
    # bytes(5) would silently hash five zero bytes; refuse instead.
    with pytest.raises(TypeError):
        leaf_hash(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MerkleLog().append("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        root_from_leaves([b"too short"])


def test_hash_primitives_use_rfc6962_domain_separation():
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    assert leaf_hash(b"").hex() == CT_ROOTS[1]


@pytest.mark.parametrize("n", range(9))
def test_ct_roots(n):
    hashes = [leaf_hash(e) for e in CT_LEAVES[:n]]
    assert root_from_leaves(hashes).hex() == CT_ROOTS[n]
    assert ref_mth(hashes).hex() == CT_ROOTS[n]
    assert ct_log().root(n).hex() == CT_ROOTS[n]


def test_ct_root_of_current_size_is_default():
    log = ct_log()
    assert log.size() == 8
    assert log.root().hex() == CT_ROOTS[8]
    assert MerkleLog().root() == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_ct_inclusion_vectors(index, size, proof):
    log = ct_log()
    expected = hx(proof)
    assert log.inclusion_proof(index, size) == expected
    leaf = leaf_hash(CT_LEAVES[index])
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(leaf, index, size, expected, root)


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_ct_consistency_vectors(old, new, proof):
    log = ct_log()
    expected = hx(proof)
    assert log.consistency_proof(old, new) == expected
    assert verify_consistency(
        old, new, bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]), expected
    )


def _inclusion_probes(index, size, proof, root, leaf):
    """Corruptions every correct verifier must reject (after transparency-dev/merkle)."""
    probes = {
        "index - 1": (leaf, index - 1, size, proof, root),
        "index + 1": (leaf, index + 1, size, proof, root),
        "index ^ 2": (leaf, index ^ 2, size, proof, root),
        "size * 2": (leaf, index, size * 2, proof, root),
        "size // 2": (leaf, index, size // 2, proof, root),
        "wrong leaf": (leaf_hash(b"WrongLeaf"), index, size, proof, root),
        "empty root": (leaf, index, size, proof, EMPTY_ROOT),
        "random root": (leaf, index, size, proof, SOME_HASH),
        "trailing empty": (leaf, index, size, [*proof, b""], root),
        "trailing root": (leaf, index, size, [*proof, root], root),
        "preceding empty": (leaf, index, size, [b"", *proof], root),
        "preceding root": (leaf, index, size, [root, *proof], root),
        "short leaf": (leaf[:31], index, size, proof, root),
        "short root": (leaf, index, size, proof, root[:31]),
    }
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes[f"flip proof[{i}]"] = (leaf, index, size, flipped, root)
    if proof:
        probes["removed last"] = (leaf, index, size, proof[:-1], root)
    if len(proof) > 1:
        probes["inserted"] = (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_ct_inclusion_rejects_corruptions(index, size, proof):
    probes = _inclusion_probes(
        index, size, hx(proof), bytes.fromhex(CT_ROOTS[size]), leaf_hash(CT_LEAVES[index])
    )
    accepted = [name for name, args in probes.items() if verify_inclusion(*args)]
    assert accepted == []


def _consistency_probes(m, n, r1, r2, proof):
    probes = {
        "m - 1": (m - 1, n, r1, r2, proof),
        "m + 1": (m + 1, n, r1, r2, proof),
        "m ^ 2": (m ^ 2, n, r1, r2, proof),
        "n * 2": (m, n * 2, r1, r2, proof),
        "n // 2": (m, n // 2, r1, r2, proof),
        "wrong root1": (m, n, SOME_HASH, r2, proof),
        "wrong root2": (m, n, r1, SOME_HASH, proof),
        "swapped roots": (m, n, r2, r1, proof),
        "empty proof": (m, n, r1, r2, []),
        "trailing empty": (m, n, r1, r2, [*proof, b""]),
        "trailing root1": (m, n, r1, r2, [*proof, r1]),
        "trailing root2": (m, n, r1, r2, [*proof, r2]),
        "preceding empty": (m, n, r1, r2, [b"", *proof]),
        "preceding root1": (m, n, r1, r2, [r1, *proof]),
        "preceding root2": (m, n, r1, r2, [r2, *proof]),
        "preceding proof[0]": (m, n, r1, r2, [proof[0], *proof]),
        "truncated": (m, n, r1, r2, proof[:-1]),
    }
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes[f"flip proof[{i}]"] = (m, n, r1, r2, flipped)
    return probes


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CT_CONSISTENCY if v[2]])
def test_ct_consistency_rejects_corruptions(old, new, proof):
    r1, r2 = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    probes = _consistency_probes(old, new, r1, r2, hx(proof))
    accepted = [name for name, args in probes.items() if verify_consistency(*args)]
    assert accepted == []


# --------------------------------------------------------------------------------------
# Verifier edge cases
# --------------------------------------------------------------------------------------


def test_inclusion_edge_cases():
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)  # single-leaf tree: root == leaf
    assert not verify_inclusion(leaf, 0, 1, [], SOME_HASH)
    assert not verify_inclusion(leaf, 0, 1, [leaf], leaf)  # extra element
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1), (5, 3)]:
        assert not verify_inclusion(leaf, index, size, [], leaf)
    # Wrong types never pass: bools for ints, a bytes object as the proof, str elements.
    assert not verify_inclusion(leaf, False, True, [], leaf)
    assert not verify_inclusion(leaf, 0, 2, leaf, leaf)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf, 0, 2, [leaf.hex()], leaf)  # type: ignore[list-item]
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert verify_inclusion(a, 0, 2, (p for p in [b]), node_hash(a, b))  # generator proof


def test_verifiers_stop_early_on_overlong_proofs(monkeypatch):
    """Work is bounded by log2(size), not by the attacker-chosen proof length."""
    import motcua_audit.domain.merkle as merkle

    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    junk = [SOME_HASH] * 100_000
    assert not verify_inclusion(leaf_hash(b"x"), 0, 2**20, junk, SOME_HASH)
    assert calls <= 21
    calls = 0
    assert not verify_consistency(3, 2**20, SOME_HASH, SOME_HASH, junk)
    assert calls <= 2 * 21


def test_consistency_edge_cases():
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, b, [])  # everything extends the empty tree
    assert not verify_consistency(0, 5, a, b, [])  # ...but only the real empty root
    assert not verify_consistency(0, 5, EMPTY_ROOT, b, [a])  # old_size 0 needs no proof
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not verify_consistency(0, 0, EMPTY_ROOT, b, [])  # size 0 has exactly one root
    assert not verify_consistency(1, 2, a, b, None)  # type: ignore[arg-type]
    assert not verify_consistency(1, 2, a, b, iter([b]))  # one-shot iterables are copied
    assert verify_consistency(3, 3, a, a, [])
    assert not verify_consistency(3, 3, a, b, [])
    assert not verify_consistency(3, 3, a, a, [a])
    assert not verify_consistency(2, 1, a, b, [])  # time travel
    assert not verify_consistency(1, 2, a, b, [])  # empty proof for a real extension
    assert not verify_consistency(-1, 2, a, b, [b])
    assert not verify_consistency(1, 2, a[:31], b, [b])
    assert not verify_consistency(1, 2, a, b, b)  # type: ignore[arg-type]  # bare bytes: not a proof


def test_consistency_rejects_forged_old_root():
    """A proof can't vouch for an old root that differs from the new tree's prefix.

    The attack shape of immudb's GHSA-672p-m5jq-mrh8: show one history to the old-root
    holder and another in the new tree. Every element must be bound into both roots.
    """
    honest = [leaf_hash(b"e%d" % i) for i in range(11)]
    forged = list(honest)
    forged[4] = leaf_hash(b"forged")
    old_forged = root_from_leaves(forged[:6])
    new_honest = root_from_leaves(honest)
    real = ref_subproof(6, honest, True)
    assert verify_consistency(6, 11, root_from_leaves(honest[:6]), new_honest, real)
    fake = ref_subproof(6, forged, True)  # a correct proof, but over the forged tree
    assert not verify_consistency(6, 11, old_forged, new_honest, real)
    assert not verify_consistency(6, 11, old_forged, new_honest, fake)
    # Splicing the elements of the two proofs doesn't help either.
    for i in range(len(real)):
        spliced = [*real[:i], fake[i], *real[i + 1 :]]
        assert not verify_consistency(6, 11, old_forged, new_honest, spliced)


# --------------------------------------------------------------------------------------
# Properties against the naive reference
# --------------------------------------------------------------------------------------

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def index_and_size(draw):
    n = draw(st.integers(1, MAX_N))
    return draw(st.integers(0, n - 1)), n


@st.composite
def old_and_new(draw):
    n = draw(st.integers(1, MAX_N))
    return draw(st.integers(1, n)), n


@FAST
@given(st.integers(0, MAX_N))
def test_root_at_any_past_size_is_mth_of_prefix(n):
    expected = ref_mth(BIG_LEAVES[:n])
    assert BIG_LOG.root(n) == expected
    assert root_from_leaves(BIG_LEAVES[:n]) == expected


@FAST
@given(index_and_size())
def test_inclusion_proofs_match_reference_and_verify(case):
    index, n = case
    proof = BIG_LOG.inclusion_proof(index, n)
    assert proof == ref_path(index, BIG_LEAVES[:n])
    assert verify_inclusion(BIG_LEAVES[index], index, n, proof, BIG_LOG.root(n))


@FAST
@given(old_and_new())
def test_consistency_proofs_match_reference_and_verify(case):
    m, n = case
    proof = BIG_LOG.consistency_proof(m, n)
    assert proof == (ref_subproof(m, BIG_LEAVES[:n], True) if m < n else [])
    assert verify_consistency(m, n, BIG_LOG.root(m), BIG_LOG.root(n), proof)


def test_every_proof_in_small_trees_verifies():
    """Exhaustive over all shapes up to 40 leaves (cheap, and catches edge shapes)."""
    for n in range(1, 41):
        root = BIG_LOG.root(n)
        for i in range(n):
            assert verify_inclusion(BIG_LEAVES[i], i, n, BIG_LOG.inclusion_proof(i, n), root)
        for m in range(0, n + 1):
            proof = BIG_LOG.consistency_proof(m, n)
            assert verify_consistency(m, n, BIG_LOG.root(m), root, proof)


def _mutate(draw, proof: list[bytes]) -> list[bytes]:
    """One adversarial change to a proof; never the identity."""
    choices = ["extend", "prepend"]
    if proof:
        choices += ["flip", "truncate", "drop", "replace"]
    if len(set(proof)) > 1:
        choices.append("swap")
    how = draw(st.sampled_from(choices))
    out = list(proof)
    if how == "flip":
        i = draw(st.integers(0, len(out) - 1))
        bit = draw(st.integers(0, 255))
        b = bytearray(out[i])
        b[bit // 8] ^= 1 << (bit % 8)
        out[i] = bytes(b)
    elif how == "truncate":
        out = out[: draw(st.integers(0, len(out) - 1))]
    elif how == "drop":
        del out[draw(st.integers(0, len(out) - 1))]
    elif how == "replace":
        i = draw(st.integers(0, len(out) - 1))
        out[i] = draw(st.binary(min_size=32, max_size=32).filter(lambda v: v != proof[i]))
    elif how == "extend":
        out += draw(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=3))
    elif how == "prepend":
        out = draw(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=3)) + out
    else:
        i, j = draw(
            st.tuples(st.integers(0, len(out) - 1), st.integers(0, len(out) - 1)).filter(
                lambda ij: out[ij[0]] != out[ij[1]]
            )
        )
        out[i], out[j] = out[j], out[i]
    return out


@FAST
@given(index_and_size(), st.data())
def test_mutated_inclusion_proofs_fail(case, data):
    index, n = case
    proof = BIG_LOG.inclusion_proof(index, n)
    bad = _mutate(data.draw, proof)
    assert not verify_inclusion(BIG_LEAVES[index], index, n, bad, BIG_LOG.root(n))


@FAST
@given(index_and_size())
def test_standard_inclusion_probes_fail(case):
    index, n = case
    probes = _inclusion_probes(
        index, n, BIG_LOG.inclusion_proof(index, n), BIG_LOG.root(n), BIG_LEAVES[index]
    )
    assert [name for name, args in probes.items() if verify_inclusion(*args)] == []


@FAST
@given(index_and_size(), st.integers(-2, MAX_N + 2), st.integers(-2, 2 * MAX_N))
def test_inclusion_verifier_agrees_with_reference_on_any_index_and_size(case, i2, n2):
    """Changing index/size must fail unless the RFC recursion gives the very same root.

    (It can: leaf 2 of a 3-leaf tree and leaf 1 of a 2-leaf tree share a path shape, so
    "any other (index, size) fails" is not a true property; agreement with the reference is.)
    """
    index, n = case
    assume((i2, n2) != (index, n))
    proof = BIG_LOG.inclusion_proof(index, n)
    root = BIG_LOG.root(n)
    leaf = BIG_LEAVES[index]
    assert verify_inclusion(leaf, i2, n2, proof, root) == ref_verify_inclusion(
        leaf, i2, n2, proof, root
    )


def test_inclusion_shape_aliasing_is_real():
    # Documents why the property above is phrased as agreement with the reference.
    proof = BIG_LOG.inclusion_proof(2, 3)
    assert verify_inclusion(BIG_LEAVES[2], 1, 2, proof, BIG_LOG.root(3))


@st.composite
def proper_old_and_new(draw):
    n = draw(st.integers(2, MAX_N))
    return draw(st.integers(1, n - 1)), n


@FAST
@given(proper_old_and_new(), st.data())
def test_mutated_consistency_proofs_fail(case, data):
    m, n = case
    proof = BIG_LOG.consistency_proof(m, n)
    bad = _mutate(data.draw, proof)
    assert not verify_consistency(m, n, BIG_LOG.root(m), BIG_LOG.root(n), bad)


@FAST
@given(proper_old_and_new())
def test_standard_consistency_probes_fail(case):
    m, n = case
    probes = _consistency_probes(
        m, n, BIG_LOG.root(m), BIG_LOG.root(n), BIG_LOG.consistency_proof(m, n)
    )
    assert [name for name, args in probes.items() if verify_consistency(*args)] == []


@FAST
@given(proper_old_and_new(), st.integers(-2, MAX_N), st.integers(-2, 2 * MAX_N))
def test_consistency_verifier_agrees_with_reference_on_any_sizes(case, m2, n2):
    m, n = case
    assume((m2, n2) != (m, n))
    proof = BIG_LOG.consistency_proof(m, n)
    r1, r2 = BIG_LOG.root(m), BIG_LOG.root(n)
    assert verify_consistency(m2, n2, r1, r2, proof) == ref_verify_consistency(
        m2, n2, r1, r2, proof
    )


@FAST
@given(proper_old_and_new(), st.data())
def test_no_consistency_proof_bridges_a_rewritten_prefix(case, data):
    """If leaf j < m was rewritten, no proof from either history links the two roots."""
    m, n = case
    j = data.draw(st.integers(0, m - 1))
    forged = list(BIG_LEAVES[:n])
    forged[j] = leaf_hash(b"rewritten")
    old_forged = root_from_leaves(forged[:m])
    new_honest = BIG_LOG.root(n)
    honest_proof = BIG_LOG.consistency_proof(m, n)
    forged_proof = ref_subproof(m, forged, True)
    assert not verify_consistency(m, n, old_forged, new_honest, honest_proof)
    assert not verify_consistency(m, n, old_forged, new_honest, forged_proof)
    assert not verify_consistency(m, n, BIG_LOG.root(m), root_from_leaves(forged), honest_proof)


# --------------------------------------------------------------------------------------
# Store behaviour and cost
# --------------------------------------------------------------------------------------


def test_append_returns_indices_and_batches_match_single_appends():
    one = MerkleLog()
    assert [one.append(b"e%d" % i) for i in range(37)] == list(range(37))
    many = MerkleLog()
    assert many.append_many(b"e%d" % i for i in range(20)) == range(0, 20)
    assert many.append_many([]) == range(20, 20)
    assert many.append_many(b"e%d" % i for i in range(20, 37)) == range(20, 37)
    assert one.size() == many.size() == 37
    assert one.store.get_many([(0, 0)]) == many.store.get_many([(0, 0)])
    assert isinstance(one.store, MemoryNodeStore) and isinstance(many.store, MemoryNodeStore)
    # Exactly the complete subtrees are stored: 2n - popcount(n) nodes.
    assert len(one.store) == len(many.store) == 2 * 37 - bin(37).count("1")
    for size in range(38):
        assert (
            one.root(size)
            == many.root(size)
            == ref_mth([leaf_hash(b"e%d" % i) for i in range(size)])
        )
    assert one.leaf_hash_at(5) == leaf_hash(b"e5")


def test_log_reopens_on_an_existing_store():
    store = MemoryNodeStore()
    MerkleLog(store).append_many(CT_LEAVES[:5])
    again = MerkleLog(store)
    again.append_many(CT_LEAVES[5:])
    assert again.root().hex() == CT_ROOTS[8]


def test_argument_errors():
    log = ct_log()
    with pytest.raises(ValueError):
        log.inclusion_proof(8, 8)
    with pytest.raises(ValueError):
        log.inclusion_proof(-1, 8)
    with pytest.raises(ValueError):
        log.inclusion_proof(0, 9)  # future size
    with pytest.raises(ValueError):
        log.consistency_proof(5, 4)
    with pytest.raises(ValueError):
        log.consistency_proof(1, 9)
    with pytest.raises(ValueError):
        log.root(9)
    with pytest.raises(ValueError):
        log.leaf_hash_at(8)
    with pytest.raises(ValueError):
        log.append_leaf_hashes([b"short"])
    assert log.size() == 8  # the failed append wrote nothing
    assert log.consistency_proof(0, 8) == [] and log.consistency_proof(8, 8) == []


def test_memory_store_is_append_only_and_atomic():
    store = MemoryNodeStore()
    h1, h2 = leaf_hash(b"1"), leaf_hash(b"2")
    store.put_many([(0, 0, h1)])
    store.put_many([(0, 0, h1)])  # idempotent rewrite of the same value is fine
    with pytest.raises(ValueError):
        store.put_many([(0, 1, h2), (0, 0, h2)])  # overwrite -> whole batch refused
    assert store.size() == 1 and store.get_many([(0, 1)]) == {}
    with pytest.raises(ValueError):
        store.put_many([(0, 1, b"short")])


def test_missing_nodes_are_reported_not_guessed():
    store = MemoryNodeStore()
    log = MerkleLog(store)
    log.append_many(CT_LEAVES)
    del store._nodes[(2, 1)]  # simulate a damaged store
    with pytest.raises(MissingNodeError):
        log.inclusion_proof(0, 8)
    with pytest.raises(MissingNodeError):
        log.consistency_proof(4, 8)
    assert log.root(8).hex() == CT_ROOTS[8]  # needs only node (3, 0)


@pytest.mark.parametrize("n", [4096, 3001])
def test_reads_are_logarithmic(n):
    store = CountingStore()
    log = MerkleLog(store)
    log.append_many(b"%d" % i for i in range(n))
    depth = math.ceil(math.log2(n))
    budget = 2 * depth + 2
    indices = sorted({0, 1, n // 2, n - 2, n - 1, *range(0, n, 97)})
    for size in (n, n - 1, n // 3 + 5):
        for i in (x for x in indices if x < size):
            store.reset()
            log.inclusion_proof(i, size)
            assert store.keys_read <= budget, (i, size, store.keys_read)
            assert store.get_calls == 1
        for m in (1, 2, 3, size // 2, size - 1):
            store.reset()
            log.consistency_proof(m, size)
            assert store.keys_read <= budget, (m, size, store.keys_read)
            assert store.get_calls == 1
        store.reset()
        log.root(size)
        assert store.keys_read <= depth + 1
    store.reset()
    log.append(b"one more")
    assert store.keys_read <= depth + 1
    assert (store.get_calls, store.put_calls) == (1, 1)


def test_batch_append_cost_does_not_depend_on_log_size():
    store = CountingStore()
    log = MerkleLog(store)
    log.append_many(b"%d" % i for i in range(5000))
    store.reset()
    log.append_many(b"x%d" % i for i in range(100))
    assert (store.get_calls, store.put_calls) == (1, 1)
    assert store.keys_read <= math.ceil(math.log2(5000)) + 1
