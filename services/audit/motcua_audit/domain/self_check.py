"""The service's own re-verification of what its database holds (the "scrub").

A signed head protects auditors who kept it; this catches tampering (or corruption) of the
database *before* an auditor trips over it. The log is re-checked in aligned blocks of
``BLOCK`` leaves, one block per round, wrapping around: every entry's bytes must hash to its
recorded leaf, every perfect subtree inside the block must be the hash of its children, and
every stored ancestor of the block must be the hash of its two children. Over a full pass
every stored node has been recomputed once. Pure: the adapter reads the rows this plans.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from motcua_audit.domain.merkle import MerkleLog, NodeKey, leaf_hash, node_hash, verify_consistency
from motcua_audit.domain.tree_head import SignedTreeHead, verify_tree_head

BLOCK_LEVEL = 10
BLOCK = 1 << BLOCK_LEVEL


class Check(StrEnum):
    """What a finding is about; also the ``check`` label of the failure counter."""

    ENTRY_HASH = "entry_hash"  # an entry's bytes do not hash to its recorded leaf
    NODE_HASH = "node_hash"  # a stored node is not the hash of its children
    MISSING_NODE = "missing_node"  # a node the tree shape requires is absent
    TREE_HEAD_SIGNATURE = "tree_head_signature"  # a stored head does not verify
    TREE_HEAD_ROOT = "tree_head_root"  # the stored nodes no longer give a head's root
    CONSISTENCY = "consistency"  # the latest head does not extend the previous one


@dataclass(frozen=True, slots=True)
class Finding:
    check: Check
    index: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """The rows one round needs: entries ``[start, end)``, node ranges, ancestor keys."""

    start: int
    end: int
    node_ranges: dict[int, tuple[int, int]]
    ancestor_keys: tuple[NodeKey, ...]


def plan_block(start: int, log_size: int) -> BlockPlan:
    """What to read to check the block starting at leaf ``start`` (a multiple of BLOCK)."""
    if start % BLOCK or not 0 <= start < log_size:
        raise ValueError(f"block start {start} must be a multiple of {BLOCK} below {log_size}")
    end = min(start + BLOCK, log_size)
    ranges = {level: (start >> level, end >> level) for level in range(BLOCK_LEVEL + 1)}
    keys: list[NodeKey] = []
    level = BLOCK_LEVEL + 1
    while (1 << level) <= log_size:
        idx = start >> level
        if (idx + 1) << level <= log_size:
            keys += [(level, idx), (level - 1, 2 * idx), (level - 1, 2 * idx + 1)]
        level += 1
    return BlockPlan(start, end, ranges, tuple(keys))


def check_block(
    plan: BlockPlan,
    canonical: Sequence[bytes],
    leaf_column: Sequence[bytes],
    stored: Mapping[NodeKey, bytes],
) -> list[Finding]:
    """Findings for one block: ``canonical``/``leaf_column`` are the entry rows in order."""
    findings: list[Finding] = []
    count = plan.end - plan.start
    if len(canonical) != count or len(leaf_column) != count:
        findings.append(
            Finding(
                Check.MISSING_NODE,
                plan.start,
                f"expected {count} entry rows from {plan.start}, found {len(canonical)}",
            )
        )
        return findings
    level_hashes: list[bytes | None] = []
    for offset, (data, column) in enumerate(zip(canonical, leaf_column, strict=True)):
        index = plan.start + offset
        leaf = leaf_hash(data)
        node = stored.get((0, index))
        if node is None:
            findings.append(Finding(Check.MISSING_NODE, index, f"leaf node {index} is missing"))
        elif not hmac.compare_digest(leaf, node):
            findings.append(
                Finding(Check.ENTRY_HASH, index, f"entry {index} does not hash to its leaf node")
            )
        if not hmac.compare_digest(leaf, column):
            findings.append(
                Finding(Check.ENTRY_HASH, index, f"entry {index} does not match its leaf_hash")
            )
        level_hashes.append(node)
    below = level_hashes
    for level in range(1, BLOCK_LEVEL + 1):
        lo, hi = plan.node_ranges[level]
        current: list[bytes | None] = []
        for idx in range(lo, hi):
            left, right = below[2 * (idx - lo)], below[2 * (idx - lo) + 1]
            node = stored.get((level, idx))
            first = idx << level
            if node is None:
                findings.append(
                    Finding(Check.MISSING_NODE, first, f"node ({level}, {idx}) is missing")
                )
            elif left is not None and right is not None and node != node_hash(left, right):
                findings.append(
                    Finding(
                        Check.NODE_HASH,
                        first,
                        f"node ({level}, {idx}) is not the hash of its children",
                    )
                )
            current.append(node)
        below = current
    keys = plan.ancestor_keys
    for i in range(0, len(keys), 3):
        parent, left_key, right_key = keys[i], keys[i + 1], keys[i + 2]
        got = [stored.get(k) for k in (parent, left_key, right_key)]
        first = parent[1] << parent[0]
        missing = [k for k, v in zip((parent, left_key, right_key), got, strict=True) if v is None]
        if missing:
            findings.append(Finding(Check.MISSING_NODE, first, f"nodes {missing} are missing"))
        elif got[0] != node_hash(got[1], got[2]):  # type: ignore[arg-type]
            findings.append(
                Finding(
                    Check.NODE_HASH,
                    first,
                    f"node {parent} is not the hash of its children",
                )
            )
    return findings


def next_block(start: int, log_size: int) -> int:
    """Where the next round starts: the next block, or 0 after the last one."""
    following = start + BLOCK
    return following if following < log_size else 0


def check_head(
    latest: SignedTreeHead,
    public_keys: Mapping[str, Ed25519PublicKey],
    merkle: MerkleLog,
    previous: SignedTreeHead | None,
) -> list[Finding]:
    """Findings for the latest stored head: its signature, its root against the stored nodes,
    and that it extends ``previous`` (the head verified last time) rather than rolling back."""
    if not verify_tree_head(latest, public_keys):
        return [
            Finding(
                Check.TREE_HEAD_SIGNATURE,
                None,
                f"the stored head of size {latest.head.size} does not verify",
            )
        ]
    size = latest.head.size
    if size > merkle.size() or not hmac.compare_digest(merkle.root(size), latest.head.root_hash):
        return [
            Finding(
                Check.TREE_HEAD_ROOT,
                None,
                f"the stored nodes do not give the signed root of size {size}",
            )
        ]
    if previous is not None and previous.head.size > size:
        return [
            Finding(
                Check.CONSISTENCY,
                None,
                f"the latest head has size {size}, below the size "
                f"{previous.head.size} verified before: the log was rolled back",
            )
        ]
    if previous is not None:
        proof = merkle.consistency_proof(previous.head.size, size)
        if not verify_consistency(
            previous.head.size, size, previous.head.root_hash, latest.head.root_hash, proof
        ):
            return [
                Finding(
                    Check.CONSISTENCY,
                    None,
                    f"the head of size {size} does not extend the one of size "
                    f"{previous.head.size} verified before",
                )
            ]
    return []
