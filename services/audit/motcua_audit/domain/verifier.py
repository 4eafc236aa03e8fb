"""Offline verification of an audit-log export, and localisation of any damage.

What an export carries (``LogExport``):

* ``entries`` -- the raw entry bytes in log order (what the log hashed as leaves);
* ``head`` -- a signed tree head the entries should reproduce;
* ``recorded_leaf_hashes`` (optional) -- the leaf hash the log recorded for each position,
  read from its node store (level 0);
* ``checkpoints`` (optional) -- earlier signed heads, e.g. ones the auditor pinned before.

Why this is sound: the verdict ``ok`` only comes from the signature and from recomputing
the root over the entries; nothing in the export is trusted by itself. The recorded leaf
hashes are used to *localise* damage only after they are authenticated: their MTH must
equal the signed head's root, so (SHA-256 being collision resistant) they are exactly the
hashes the log committed to. Then the exported entries' leaf hashes are diffed against
them (see ``locate_damage``), which names the first bad position and the kind of damage.
Without authenticated recorded hashes, signed heads at several sizes can only bracket the
first bad position between the largest head the entries still reproduce and the next one.
Checkpoints also catch a rewritten history that was re-signed with the log key: a
checkpoint must be reproduced by the prefix of the authenticated leaves.

Positions in problems are log indices (0-based). Entries with identical bytes have
identical leaf hashes, so damage among duplicate entries is only located up to that
ambiguity (real entries carry unique ids and timestamps).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from motcua_audit.domain.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    leaf_hashes,
    node_hash,
    verify_consistency,
)
from motcua_audit.domain.tree_head import SignedTreeHead, TreeHead, verify_tree_head

__all__ = [
    "Damage",
    "LogExport",
    "Problem",
    "VerificationReport",
    "locate_damage",
    "verify_consistency_between",
    "verify_export",
    "verify_leaf_hashes",
]


class Damage(StrEnum):
    """Kinds of problem a report can name (``str`` values, so they compare to plain strings)."""

    ALTERED = "altered"  # an entry's bytes changed
    REMOVED = "removed"  # an entry is missing
    INSERTED = "inserted"  # an extra entry that the log never committed to
    REORDERED = "reordered"  # an authentic entry at the wrong position
    BAD_SIGNATURE = "bad_signature"  # a head whose signature / key id does not verify
    UNLOCATED = "unlocated"  # root mismatch, bracketed but not pinned to one entry
    UNTRUSTED_HASHES = "untrusted_hashes"  # recorded leaf hashes do not match the head
    INCONSISTENT_HEADS = "inconsistent_heads"  # two validly signed heads disagree (fork)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``index`` is a log position (None when not about one position)."""

    index: int | None
    kind: str
    detail: str

    def as_tuple(self) -> tuple[int | None, str, str]:
        return (self.index, self.kind, self.detail)


@dataclass(frozen=True, slots=True)
class LogExport:
    """Everything an offline verifier gets from the log (see the module docstring)."""

    entries: Sequence[bytes]
    head: SignedTreeHead
    recorded_leaf_hashes: Sequence[bytes] | None = None
    checkpoints: Sequence[SignedTreeHead] = ()


@dataclass(slots=True)
class VerificationReport:
    """Outcome of ``verify_export``; problems are sorted by index, global ones first.

    ``leaf_hashes`` are those of the exported entries; ``computed_root`` (their MTH) is
    computed on first use, since a failed verification rarely needs it.
    """

    ok: bool
    problems: list[Problem] = field(default_factory=list)
    leaf_hashes: Sequence[bytes] = ()
    _root: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def computed_root(self) -> bytes:
        """MTH of the exported entries (what the head's root would have to be)."""
        if self._root is None:
            self._root = _Levels(self.leaf_hashes).root(len(self.leaf_hashes))
        return self._root

    @property
    def first_problem(self) -> Problem | None:
        """The first located problem if any, else the first problem at all."""
        located = [p for p in self.problems if p.index is not None]
        if located:
            return located[0]
        return self.problems[0] if self.problems else None


# --------------------------------------------------------------------------------------
# Localisation: diff two leaf-hash sequences
# --------------------------------------------------------------------------------------


def _anchors(origins: Sequence[int | None], n_log: int, shift: int) -> list[int]:
    """Export positions of a longest chain of authentic entries in log order.

    Weighted LIS over the entries' log positions, O(n log n) with a Fenwick tree of
    prefix maxima. Length dominates the weight (``big`` > n), and among chains of equal
    length those keeping more entries at their natural position win, so a swap of i and
    i+2 flags the two swapped entries rather than the untouched one between them.
    """
    big = len(origins) + 1
    tree: list[tuple[int, int]] = [(0, -1)] * (n_log + 1)  # (score, export position)
    prev: dict[int, int] = {}
    for p, o in enumerate(origins):
        if o is None:
            continue
        best, i = (0, -1), o  # query prefix max over log positions < o
        while i > 0:
            best = max(best, tree[i])
            i -= i & -i
        in_place = 1 if o in (p, p + shift) else 0
        prev[p] = best[1]
        cand = (best[0] + big + in_place, p)
        i = o + 1
        while i <= n_log:
            if tree[i] < cand:
                tree[i] = cand
            i += i & -i
    best = (0, -1)
    i = n_log
    while i > 0:
        best = max(best, tree[i])
        i -= i & -i
    chain: list[int] = []
    p = best[1]
    while p != -1:
        chain.append(p)
        p = prev[p]
    chain.reverse()
    return chain


_PAIRING_BUDGET = 1_000_000


def _pair_nearest(xs: Sequence[int], ys: Sequence[int]) -> list[tuple[int, int]]:
    """Order-preserving pairing of every x with a distinct y (len(xs) <= len(ys)).

    Each x takes the closest y among those it may skip to (leaving enough for the rest),
    so a replayed copy of an entry, or one of two identical entries being dropped, is
    blamed on the copy far from its recorded position. Linear pairing beyond a budget.
    """
    slack = len(ys) - len(xs)
    if len(xs) * (slack + 1) > _PAIRING_BUDGET:
        slack = 0
    pairs: list[tuple[int, int]] = []
    j = 0
    for x in xs:
        window = ys[j : j + slack + 1]
        t = min(range(len(window)), key=lambda k: abs(window[k] - x))
        pairs.append((x, window[t]))
        slack -= t
        j += t + 1
    return pairs


def _match_positions(recorded: Sequence[bytes], actual: Sequence[bytes]) -> list[int | None]:
    """For each exported hash, the log position it is taken to be (None: foreign)."""
    in_log: dict[bytes, list[int]] = {}
    for s, h in enumerate(recorded):
        in_log.setdefault(bytes(h), []).append(s)
    in_export: dict[bytes, list[int]] = {}
    for p, h in enumerate(actual):
        in_export.setdefault(bytes(h), []).append(p)
    origins: list[int | None] = [None] * len(actual)
    for h, ps in in_export.items():
        ss = in_log.get(h)
        if not ss:
            continue
        if len(ps) <= len(ss):
            for p, s in _pair_nearest(ps, ss):
                origins[p] = s
        else:
            for s, p in _pair_nearest(ss, ps):
                origins[p] = s
    return origins


def locate_damage(recorded: Sequence[bytes], actual: Sequence[bytes]) -> list[Problem]:
    """Explain how ``actual`` leaf hashes differ from the authentic ``recorded`` ones.

    1. Each exported entry is matched to a log position with the same hash (see
       ``_match_positions``); unmatched entries are foreign.
    2. The longest run of matched entries in log order is kept as anchors; any other
       matched entry is authentic but misplaced -> ``reordered``.
    3. Between consecutive anchors, foreign entries are paired in order with log
       positions that appear nowhere in the export: a pair is ``altered``; a leftover
       foreign entry is ``inserted`` (before the next anchor); a leftover position is
       ``removed``.

    A reordered entry is reported at the first log position its misplacement disturbs:
    the smaller of its own position and the position it was found at (in log terms).
    For a single altered/removed/inserted entry or a swap of two entries, the first
    problem is exactly that position and kind.

    Speed (an auditor checks exports of millions of entries, and the tamper tests run
    thousands of trials): the common prefix and suffix are in place by definition, so only
    the window between them is analysed; inside an equal-length window whose differing
    positions only exchange hashes among themselves, only those positions are.
    """
    recorded, actual = list(recorded), list(actual)
    if recorded == actual:
        return []
    n_log, n_export = len(recorded), len(actual)
    lo = 0
    limit = min(n_log, n_export)
    while lo < limit and recorded[lo] == actual[lo]:
        lo += 1
    hi = 0  # common suffix length, never overlapping the prefix
    while hi < limit - lo and recorded[n_log - 1 - hi] == actual[n_export - 1 - hi]:
        hi += 1
    r_win, a_win = recorded[lo : n_log - hi], actual[lo : n_export - hi]
    end = n_log - hi  # log position just after the window

    def at(k: int) -> int:
        return lo + k

    if len(r_win) == len(a_win):
        sparse = _sparse_differences(r_win, a_win)
        if sparse is not None:
            positions = [lo + k for k in sparse] + [end]
            problems = _explain(
                [r_win[k] for k in sparse],
                [a_win[k] for k in sparse],
                positions.__getitem__,
                end == n_log,
            )
            if all(p.kind in (Damage.ALTERED, Damage.REORDERED) for p in problems):
                return sorted(problems, key=_by_index)
    return sorted(_explain(r_win, a_win, at, end == n_log), key=_by_index)


def _by_index(problem: Problem) -> int:
    return -1 if problem.index is None else problem.index


def _sparse_differences(recorded: Sequence[bytes], actual: Sequence[bytes]) -> list[int] | None:
    """Positions where two equal-length windows differ, if analysing only them is exact.

    Exact when no hash found at a differing position also occurs at an untouched one:
    then untouched positions can only match themselves, and an in-place run is always
    the longest chain through them.
    """
    differing = [k for k, (r, a) in enumerate(zip(recorded, actual, strict=True)) if r != a]
    if len(differing) == len(recorded):
        return None
    touched = {recorded[k] for k in differing} | {actual[k] for k in differing}
    chosen = set(differing)
    if any(h in touched for k, h in enumerate(recorded) if k not in chosen):
        return None
    return differing


def _explain(
    recorded: Sequence[bytes],
    actual: Sequence[bytes],
    pos: Callable[[int], int],
    ends_log: bool,
) -> list[Problem]:
    """``locate_damage`` on a window; ``pos`` maps window positions (both sides) to the log's.

    ``pos(len(recorded))`` is the log position just after the window; ``ends_log`` says
    whether that is the end of the log.
    """
    n_log = len(recorded)
    origins = _match_positions(recorded, actual)
    placed = {o: p for p, o in enumerate(origins) if o is not None}

    chain = _anchors(origins, n_log, n_log - len(actual))
    anchor_set = set(chain)
    problems: list[Problem] = []

    previous_anchor: tuple[int, int] = (-1, -1)  # (export position, log position)
    bounds = [(p, origins[p]) for p in chain] + [(len(actual), n_log)]
    for q_b, b_opt in bounds:
        b = n_log if b_opt is None else b_opt
        q_a, a = previous_anchor
        foreign: list[int] = []
        for p in range(q_a + 1, q_b):
            o = origins[p]
            if o is None:
                foreign.append(p)
            elif p not in anchor_set:
                slot = a + (p - q_a)
                problems.append(
                    Problem(
                        pos(min(o, slot)),
                        Damage.REORDERED,
                        f"log entry {pos(o)} appears at export position {pos(p)}",
                    )
                )
        missing = [s for s in range(a + 1, b) if s not in placed]
        for p, s in zip(foreign, missing, strict=False):
            problems.append(
                Problem(
                    pos(s),
                    Damage.ALTERED,
                    f"export position {pos(p)} does not match log entry {pos(s)}",
                )
            )
        where = (
            "after the last log entry" if b == n_log and ends_log else f"before log entry {pos(b)}"
        )
        for p in foreign[len(missing) :]:
            problems.append(
                Problem(
                    pos(b), Damage.INSERTED, f"export position {pos(p)} is an extra entry {where}"
                )
            )
        for s in missing[len(foreign) :]:
            problems.append(Problem(pos(s), Damage.REMOVED, f"log entry {pos(s)} is missing"))
        previous_anchor = (q_b, b)
    return problems


# --------------------------------------------------------------------------------------
# Export verification
# --------------------------------------------------------------------------------------


class _Levels:
    """Every perfect subtree hash over a leaf sequence, level by level: MTH of any prefix.

    The same nodes ``MerkleLog`` stores, built with one list comprehension per level
    (about n hashes in all), so verifying 10,000 entries takes milliseconds.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
        self._levels = levels

    def size(self) -> int:
        return len(self._levels[0])

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves: fold of one perfect subtree per set bit."""
        if size == 0:
            return EMPTY_ROOT
        parts: list[bytes] = []
        pos = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                parts.append(self._levels[level][pos >> level])
                pos += 1 << level
        acc = parts[-1]
        for h in reversed(parts[:-1]):
            acc = node_hash(h, acc)
        return acc


def _reproduces(tree: _Levels, head: TreeHead) -> bool:
    return head.size <= tree.size() and hmac.compare_digest(tree.root(head.size), head.root_hash)


def _size_then_ok(judged: tuple[TreeHead, bool]) -> tuple[int, bool]:
    return (judged[0].size, judged[1])


def _bracket(
    tree: _Levels, heads: Sequence[SignedTreeHead], what: str, kind: Damage
) -> list[Problem]:
    """Use trusted heads of several sizes to bracket where ``tree`` first goes wrong.

    The first head (by size) that ``tree`` does not reproduce gives an upper bound, the
    largest reproduced head below it a lower bound. A reproduced head above a failing one
    means two validly signed heads contradict each other.
    """
    problems: list[Problem] = []
    lo = 0
    first_bad: TreeHead | None = None
    # By size; at equal sizes failing heads first, so two signed roots for one size are
    # reported as a contradiction rather than as an empty bracket.
    judged = sorted(((s.head, _reproduces(tree, s.head)) for s in heads), key=_size_then_ok)
    for head, reproduced in judged:
        if reproduced:
            if first_bad is None:
                lo = head.size
            else:
                problems.append(
                    Problem(
                        None,
                        Damage.INCONSISTENT_HEADS,
                        f"{what} reproduce the signed head of size {head.size} but not the "
                        f"smaller one of size {first_bad.size}: the signed heads contradict "
                        "each other",
                    )
                )
        elif first_bad is None:
            first_bad = head
    if first_bad is not None:
        hi = first_bad.size
        if hi > tree.size() and kind is Damage.INCONSISTENT_HEADS:
            detail = (
                f"a signed head of size {hi} exists but {what} end at {tree.size()}: "
                "the log was rolled back"
            )
        else:
            since = f"reproduce the signed head of size {lo} but not" if lo else "do not reproduce"
            detail = (
                f"{what} {since} the one of size {hi}: the first difference is at a "
                f"position in [{lo}, {hi})"
            )
        problems.append(Problem(lo, kind, detail))
    return problems


class _ActualTree:
    """The exported entries' tree, built once and only if some check needs it."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.leaf_hashes = leaf_hashes
        self._tree: _Levels | None = None

    def get(self) -> _Levels:
        if self._tree is None:
            self._tree = _Levels(self.leaf_hashes)
        return self._tree


def _authenticated_hashes(
    head: TreeHead,
    recorded: Sequence[bytes] | None,
    actual: _ActualTree,
    problems: list[Problem],
) -> tuple[list[bytes], _Levels] | None:
    """The leaf hashes the (verified) head commits to, and their tree, if knowable."""
    leaves = actual.leaf_hashes
    if recorded is not None:
        if len(recorded) == head.size and all(
            isinstance(h, bytes) and len(h) == HASH_SIZE for h in recorded
        ):
            hashes = list(recorded)
            # Intact exports (the usual case) hash one tree, not two.
            tree = actual.get() if hashes == list(leaves) else _Levels(hashes)
            if _reproduces(tree, head):
                return hashes, tree
        problems.append(
            Problem(
                None,
                Damage.UNTRUSTED_HASHES,
                "the recorded leaf hashes do not reproduce the signed head; not used",
            )
        )
    tree = actual.get()
    if _reproduces(tree, head):  # entries are intact, perhaps with extras after
        if tree.size() == head.size:
            return list(leaves), tree
        return list(leaves[: head.size]), _Levels(leaves[: head.size])
    return None


def verify_export(
    export: LogExport, public_keys: Mapping[str, Ed25519PublicKey]
) -> VerificationReport:
    """Check an export against its signed head (and checkpoints); locate any damage.

    ``ok`` is True only if every head verifies under ``public_keys``, the entries are
    exactly the leaves of the export's head, and every checkpoint is a prefix of them.
    """
    return verify_leaf_hashes(
        leaf_hashes(export.entries),
        export.head,
        public_keys,
        recorded_leaf_hashes=export.recorded_leaf_hashes,
        checkpoints=export.checkpoints,
    )


def verify_leaf_hashes(
    leaf_hashes: Sequence[bytes],
    head: SignedTreeHead,
    public_keys: Mapping[str, Ed25519PublicKey],
    *,
    recorded_leaf_hashes: Sequence[bytes] | None = None,
    checkpoints: Sequence[SignedTreeHead] = (),
) -> VerificationReport:
    """``verify_export`` for a caller that hashed the entries itself (e.g. while streaming
    a large export file with a progress bar). ``leaf_hashes[i]`` must be
    ``SHA-256(0x00 || entry i)`` of the exported entries, computed by the verifier.
    """
    problems: list[Problem] = []
    actual = _ActualTree(leaf_hashes)

    head_ok = verify_tree_head(head, public_keys)
    if not head_ok:
        problems.append(
            Problem(None, Damage.BAD_SIGNATURE, "the export's signed head does not verify")
        )
    trusted: list[SignedTreeHead] = [head] if head_ok else []
    for signed in checkpoints:
        if verify_tree_head(signed, public_keys):
            trusted.append(signed)
        else:
            problems.append(
                Problem(
                    None,
                    Damage.BAD_SIGNATURE,
                    f"checkpoint of size {signed.head.size} does not verify; ignored",
                )
            )

    authentic = (
        _authenticated_hashes(head.head, recorded_leaf_hashes, actual, problems)
        if head_ok
        else None
    )
    if authentic is not None:
        hashes, tree = authentic
        problems.extend(locate_damage(hashes, leaf_hashes))
        what = "the authenticated leaf hashes"
        problems.extend(_bracket(tree, trusted, what, Damage.INCONSISTENT_HEADS))
    else:
        problems.extend(_bracket(actual.get(), trusted, "the exported entries", Damage.UNLOCATED))

    problems = list(dict.fromkeys(problems))
    problems.sort(key=_by_index)
    report = VerificationReport(ok=not problems, problems=problems, leaf_hashes=leaf_hashes)
    if actual._tree is not None:
        report._root = actual._tree.root(actual._tree.size())
    return report


def verify_consistency_between(
    head_old: TreeHead | SignedTreeHead,
    head_new: TreeHead | SignedTreeHead,
    proof: Iterable[bytes],
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> bool:
    """True iff ``head_new`` extends ``head_old`` per an RFC 9162 consistency proof.

    With ``public_keys``, both heads must also be signed heads that verify (a plain
    ``TreeHead`` is then rejected). Without keys only the Merkle relation is checked --
    the caller must have verified the signatures already.
    """
    if public_keys is not None:
        for h in (head_old, head_new):
            if not isinstance(h, SignedTreeHead) or not verify_tree_head(h, public_keys):
                return False
    old = head_old.head if isinstance(head_old, SignedTreeHead) else head_old
    new = head_new.head if isinstance(head_new, SignedTreeHead) else head_new
    return verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
