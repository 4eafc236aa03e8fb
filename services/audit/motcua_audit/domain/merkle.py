"""RFC 6962 / RFC 9162 Merkle tree: hashing, an append-only log over a node store, and proofs.

Why this shape: the audit log must stay tamper-evident while growing without bound, so the
log never rebuilds the tree. It stores the hash of every *complete* (perfect) subtree once,
keyed by ``(level, index)`` -- level ``l`` index ``i`` covers leaves ``[i * 2**l, (i+1) * 2**l)``.
Those nodes never change after they are written, and any subtree hash of any past tree
size is the right-to-left fold of at most ``log2(n) + 1`` of them (one per set bit of the
subtree's width). Appends, roots at past sizes and both proof kinds therefore need
``O(log n)`` store reads, and every read a call needs is known up front, so it is fetched
with a single batched ``NodeStore.get_many`` call (one SQL round trip for a table-backed
store).

The verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step and reject any
malformed input instead of raising, because their input comes from untrusted parties.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryNodeStore",
    "MerkleLog",
    "MissingNodeError",
    "NodeKey",
    "NodeStore",
    "leaf_hash",
    "leaf_hasher",
    "leaf_hashes",
    "node_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH({}) -- the root of the empty tree (RFC 6962 section 2.1)."""

NodeKey = tuple[int, int]
"""``(level, index)`` of a perfect subtree: 2**level leaves starting at index * 2**level."""


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry); the prefix keeps leaves and interior nodes from colliding."""
    if not isinstance(entry, bytes | bytearray | memoryview):
        raise TypeError(f"entry must be bytes, not {type(entry).__name__}")  # bytes(5) != b"5"
    return hashlib.sha256(_LEAF_PREFIX + bytes(entry)).digest()


def leaf_hasher() -> Callable[[bytes], bytes]:
    """:func:`leaf_hash` for many entries of trusted type (no per-call checks): copying a
    digest primed with the 0x00 prefix is about twice as fast as hashing 0x00 || entry afresh
    (no concatenation, no new digest context per entry)."""
    prefix = hashlib.sha256(_LEAF_PREFIX)

    def hash_leaf(entry: bytes) -> bytes:
        h = prefix.copy()
        h.update(entry)
        return h.digest()

    return hash_leaf


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """The leaf hash of each entry, in order (:func:`leaf_hasher`)."""
    hash_leaf = leaf_hasher()
    return [hash_leaf(e) for e in entries]


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), the interior node hash of RFC 6962."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, without recursion or a store.

    Keeps a stack of perfect-subtree roots (strictly decreasing height), merging equal
    heights as leaves arrive, then folds the stack right-to-left. That fold is exactly the
    RFC 6962 recursion "split at the largest power of two smaller than n".
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        if not _is_hash(h):
            raise ValueError("leaf hashes must be 32 bytes each")
        level, cur = 0, bytes(h)
        while stack and stack[-1][0] == level:
            cur = node_hash(stack.pop()[1], cur)
            level += 1
        stack.append((level, cur))
    return _fold([h for _, h in stack])


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Fold perfect-subtree roots of decreasing size right-to-left into one MTH."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    """A non-negative int that is not a bool (True would silently mean 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --------------------------------------------------------------------------------------
# Node store
# --------------------------------------------------------------------------------------


class NodeStore(Protocol):
    """Persistence for perfect-subtree hashes; the only thing the log needs from storage.

    Contract (a SQL table ``(level, idx, hash)`` with primary key ``(level, idx)`` fits):

    * ``get_many`` returns the hashes it has for the requested keys (missing keys are simply
      absent from the result); callers batch every key one operation needs into one call.
    * ``put_many`` writes all items or none (one transaction). Nodes are immutable: writing a
      key that already exists with a *different* hash must fail.
    * ``size`` is the number of leaves, i.e. ``1 + max(index)`` at level 0 (0 when empty).
      Because ``put_many`` is atomic and a leaf is written together with the parents it
      completes, ``size`` never points past a half-written append.

    The log assumes a single writer; concurrent appenders must be serialised outside.
    """

    def get_many(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]: ...

    def put_many(self, items: Iterable[tuple[int, int, bytes]]) -> None: ...

    def size(self) -> int: ...


class MissingNodeError(LookupError):
    """A node the tree shape says must exist is absent: the store is corrupt or truncated."""


class MemoryNodeStore:
    """Dict-backed ``NodeStore`` for tests, the offline verifier and small logs."""

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._leaves = 0

    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        return {k: self._nodes[k] for k in keys if k in self._nodes}

    def put_many(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        staged: dict[NodeKey, bytes] = {}
        for level, index, value in items:
            key = (level, index)
            if level < 0 or index < 0 or not _is_hash(value):
                raise ValueError(f"invalid node {key!r}")
            old = self._nodes.get(key, staged.get(key))
            if old is not None and old != value:
                raise ValueError(f"node {key!r} is immutable and already has another hash")
            staged[key] = bytes(value)
        # Validate everything first so a failed batch leaves the store untouched.
        self._nodes.update(staged)
        while (0, self._leaves) in self._nodes:
            self._leaves += 1

    def size(self) -> int:
        return self._leaves

    def __len__(self) -> int:
        """Number of stored nodes (leaves and interior), for tests and diagnostics."""
        return len(self._nodes)


# --------------------------------------------------------------------------------------
# Tree shape helpers: which perfect subtrees make up a range, which ranges make a proof
# --------------------------------------------------------------------------------------

_Range = tuple[int, int]  # [start, end) leaf range of an RFC 6962 subtree


def _range_keys(start: int, end: int) -> list[NodeKey]:
    """Perfect subtrees, left to right, whose fold is MTH(D[start:end]).

    Only valid for the ranges RFC 6962 recursion produces: ``start`` is a multiple of a power
    of two >= ``end - start``. Then the width's binary digits, high to low, are the sizes of
    the perfect subtrees the recursion splits off.
    """
    keys: list[NodeKey] = []
    pos, width = start, end - start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            if pos & ((1 << level) - 1):
                raise AssertionError(f"range [{start}, {end}) is not an RFC 6962 subtree")
            keys.append((level, pos >> level))
            pos += 1 << level
    return keys


def _inclusion_ranges(index: int, size: int) -> list[_Range]:
    """The subtrees whose hashes form PATH(index, D[0:size]) (RFC 9162 2.1.3.1), in order."""
    path: list[_Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    path.reverse()  # the recursion emits the deepest sibling first
    return path


def _consistency_ranges(old_size: int, new_size: int) -> list[_Range]:
    """The subtrees whose hashes form PROOF(m, D[0:n]) = SUBPROOF(m, D[n], true) (2.1.4.1)."""
    path: list[_Range] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
            m -= k
            complete = False
    if not complete:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        path.append((lo, hi))
    path.reverse()
    return path


# --------------------------------------------------------------------------------------
# The log
# --------------------------------------------------------------------------------------


class MerkleLog:
    """Append-only RFC 6962 log over a ``NodeStore``; every operation is O(log n) reads.

    The object holds no tree state of its own (the store is the source of truth), so many
    readers can share a store and a restarted process needs no rebuild.
    """

    def __init__(self, store: NodeStore | None = None) -> None:
        self._store: NodeStore = store if store is not None else MemoryNodeStore()

    @property
    def store(self) -> NodeStore:
        return self._store

    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._store.size()

    # -- writing -------------------------------------------------------------------------

    def append(self, entry: bytes) -> int:
        """Append one entry; returns its leaf index."""
        return self.append_leaf_hashes([leaf_hash(entry)]).start

    def append_many(self, entries: Iterable[bytes]) -> range:
        """Append entries in order with one read batch and one atomic write; returns indices."""
        return self.append_leaf_hashes(leaf_hash(e) for e in entries)

    def append_leaf_hashes(self, leaf_hashes: Iterable[bytes]) -> range:
        """Append already-hashed leaves (e.g. rebuilding from an export's recorded hashes).

        Reads the current frontier -- the perfect subtrees of the current size, one per set
        bit -- then merges each new leaf into it, collecting every newly completed node.
        """
        n = self._store.size()
        frontier = _range_keys(0, n)
        stack = [(lv, ix, h) for (lv, ix), h in zip(frontier, self._fetch(frontier), strict=True)]
        new_nodes: list[tuple[int, int, bytes]] = []
        count = 0
        for h in leaf_hashes:
            if not _is_hash(h):
                raise ValueError("leaf hash must be 32 bytes")
            level, index, cur = 0, n + count, bytes(h)
            new_nodes.append((level, index, cur))
            while stack and stack[-1][0] == level:
                cur = node_hash(stack.pop()[2], cur)
                level, index = level + 1, index >> 1
                new_nodes.append((level, index, cur))
            stack.append((level, index, cur))
            count += 1
        if new_nodes:
            self._store.put_many(new_nodes)
        return range(n, n + count)

    # -- reading -------------------------------------------------------------------------

    def leaf_hash_at(self, index: int) -> bytes:
        """The recorded leaf hash of entry ``index`` (what an export ships per entry)."""
        if not _is_count(index) or index >= self.size():
            raise ValueError(f"leaf index {index!r} is not below the log size")
        return self._fetch([(0, index)])[0]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all), from popcount(size) nodes."""
        size = self.size() if size is None else size
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return _fold(self._fetch(_range_keys(0, size)))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        self._check_size(size)
        if not _is_count(index) or index >= size:
            raise ValueError(f"leaf index {index!r} is not below tree size {size}")
        return self._hash_ranges(_inclusion_ranges(index, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof that the ``old_size`` tree is a prefix of ``new_size``.

        Empty when ``old_size`` is 0 or equal to ``new_size`` (nothing to prove).
        """
        self._check_size(new_size)
        if not _is_count(old_size) or old_size > new_size:
            raise ValueError(f"old size {old_size!r} must be in [0, {new_size}]")
        if old_size in (0, new_size):
            return []
        return self._hash_ranges(_consistency_ranges(old_size, new_size))

    # -- internals -----------------------------------------------------------------------

    def _check_size(self, size: int) -> None:
        if not _is_count(size):
            raise ValueError(f"tree size must be a non-negative int, got {size!r}")
        current = self.size()
        if size > current:
            raise ValueError(f"tree size {size} exceeds the log size {current}")

    def _fetch(self, keys: Sequence[NodeKey]) -> list[bytes]:
        """Read the given nodes in one batch; a missing node means a corrupt store."""
        if not keys:
            return []
        unique = list(dict.fromkeys(keys))
        found = self._store.get_many(unique)
        missing = [k for k in unique if k not in found]
        if missing:
            raise MissingNodeError(f"node store lacks nodes {missing}")
        return [bytes(found[k]) for k in keys]

    def _hash_ranges(self, ranges: Sequence[_Range]) -> list[bytes]:
        """Hashes of several subtrees with a single batched read."""
        per_range = [_range_keys(start, end) for start, end in ranges]
        flat = [k for keys in per_range for k in keys]
        by_key = dict(zip(flat, self._fetch(flat), strict=True))
        return [_fold([by_key[k] for k in keys]) for keys in per_range]


# --------------------------------------------------------------------------------------
# Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2)
# --------------------------------------------------------------------------------------


def _as_path(proof: object) -> list[bytes] | None:
    """The proof as a list of 32-byte hashes, or None if it is anything else."""
    if isinstance(proof, bytes | bytearray | memoryview | str):
        return None
    try:
        path = list(proof)  # type: ignore[call-overload]
    except TypeError:
        return None
    if not all(_is_hash(p) for p in path):
        return None
    return [bytes(p) for p in path]


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Iterable[bytes], root: bytes
) -> bool:
    """True iff ``proof`` shows leaf ``index`` with ``leaf_hash`` is in the ``size`` tree ``root``.

    RFC 9162 2.1.3.2 verbatim; the ``sn == 0`` checks reject proofs that are too long and the
    final ``sn == 0`` rejects proofs that are too short, so only the one exact-length path
    can succeed. Every element must be a 32-byte hash.
    """
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_count(index) and _is_count(size)):
        return False
    if index >= size:  # step 1
        return False
    path = _as_path(proof)
    if path is None:
        return False
    fn, sn = index, size - 1  # step 2
    r = bytes(leaf_hash)  # step 3
    for p in path:  # step 4
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, bytes(root))  # step 5


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Iterable[bytes]
) -> bool:
    """True iff ``proof`` shows the ``old_size`` tree ``old_root`` is a prefix of ``new_root``.

    RFC 9162 2.1.4.2 with its preconditions made explicit: ``old_size > new_size`` fails;
    equal sizes need an empty proof and equal roots; ``old_size == 0`` needs an empty proof
    and ``old_root`` must be the empty-tree hash (stricter than some implementations, which
    ignore that root). Otherwise the proof is replayed to rebuild *both* roots from the same
    elements, so no element can be used for one root and skipped for the other -- the gap
    behind immudb's GHSA-672p-m5jq-mrh8.
    """
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not (_is_count(old_size) and _is_count(new_size)) or old_size > new_size:
        return False
    path = _as_path(proof)
    if path is None:
        return False
    old_root, new_root = bytes(old_root), bytes(new_root)
    if old_size == 0:  # every tree extends the empty one, whose root is fixed
        if path or not hmac.compare_digest(old_root, EMPTY_ROOT):
            return False
        return new_size > 0 or hmac.compare_digest(new_root, EMPTY_ROOT)
    if old_size == new_size:
        return not path and hmac.compare_digest(old_root, new_root)
    if not path:  # step 1
        return False
    if old_size & (old_size - 1) == 0:  # step 2: old tree is perfect, its root is implied
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # step 7: both roots must match and the path must have been used up exactly
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
