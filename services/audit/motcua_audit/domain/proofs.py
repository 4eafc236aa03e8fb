"""What may be asked of a log of a given size: inclusion and consistency proofs, entry pages.

Pure checks of a request against the log's current size, so that a proof is never computed
for a tree the log has not reached; the service reads the size, these decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from motcua_audit.domain.tree_head import SignedTreeHead
from motcua_kit.errors import InvalidArgument


@dataclass(frozen=True)
class Proof:
    """An inclusion proof and the head it is against (None when a size was asked for)."""

    index: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]
    head: SignedTreeHead | None


def check_inclusion_request(index: int, tree_size: int, size: int) -> None:
    """Entry ``index`` in the tree of ``tree_size`` (0: the latest head's) of a log of ``size``."""
    if index < 0 or index >= size:
        raise InvalidArgument("index", f"must be in [0, {size}) (the log size)")
    if tree_size < 0 or tree_size > size:
        raise InvalidArgument("tree_size", f"must be in [0, {size}] (the log size)")
    if tree_size and index >= tree_size:
        raise InvalidArgument("index", f"must be below tree_size {tree_size}")


def check_consistency_request(first_size: int, second_size: int, size: int) -> None:
    """Tree ``first_size`` within tree ``second_size``, both within a log of ``size``."""
    if second_size < 0 or second_size > size:
        raise InvalidArgument("second_size", f"must be in [0, {size}] (the log size)")
    if first_size < 0 or first_size > second_size:
        raise InvalidArgument("first_size", f"must be in [0, {second_size}]")


def page_bounds(start: int, end: int, limit: int, size: int) -> tuple[int, int]:
    """(where the page stops, the effective end) for at most ``limit`` entries from ``start``
    below ``end`` (0: the log size)."""
    stop_at = size if end == 0 else min(end, size)
    return max(min(start + limit, stop_at), start), stop_at
