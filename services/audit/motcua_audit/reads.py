"""Use cases: the auditors' reads — inclusion and consistency proofs, dossier trails, pages.

Each read checks the request against the log's size first (:mod:`.domain.proofs`); a proof
against "the latest head" signs a fresh head when none covers what is asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motcua_audit.adapters import db
from motcua_audit.domain.proofs import (
    Proof,
    check_consistency_request,
    check_inclusion_request,
    page_bounds,
)
from motcua_audit.domain.tree_head import SignedTreeHead
from motcua_kit.errors import NotFound

if TYPE_CHECKING:
    from motcua_audit.service import AuditService


def inclusion_proof(
    svc: AuditService, index: int | None, leaf_hash: bytes | None, tree_size: int
) -> Proof:
    """Proof of one entry (by index or leaf hash) in ``tree_size`` (0: latest head)."""
    with svc.context.sessions() as session:
        if leaf_hash is not None:
            found = svc.entries.index_of_leaf(session, leaf_hash)
            if found is None:
                raise NotFound("no entry has this leaf hash")
            index = found
        assert index is not None
        check_inclusion_request(index, tree_size, svc.entries.size(session))
    head = None
    if tree_size == 0:
        head = svc.latest_tree_head(covering=index + 1)
        tree_size = head.head.size
    with svc.context.sessions() as session:
        merkle = svc.entries.log(session)
        path = merkle.inclusion_proof(index, tree_size)
        leaf = merkle.leaf_hash_at(index)
    return Proof(index, tree_size, leaf, path, head)


def consistency_proof(
    svc: AuditService, first_size: int, second_size: int
) -> tuple[int, int, list[bytes], SignedTreeHead | None]:
    """(first, second, proof, head of second when it was 0)."""
    head = None
    if second_size == 0:
        head = svc.latest_tree_head()
        second_size = head.head.size
    with svc.context.sessions() as session:
        check_consistency_request(first_size, second_size, svc.entries.size(session))
        proof = svc.entries.log(session).consistency_proof(first_size, second_size)
    return first_size, second_size, proof, head


def dossier_trail(
    svc: AuditService, dossier_code: str
) -> tuple[list[tuple[db.StoredEntry, list[bytes]]], SignedTreeHead]:
    """Every entry of one dossier with its inclusion proof against one covering head."""
    with svc.context.sessions() as session:
        trail = svc.entries.trail(session, dossier_code)
    covering = trail[-1].index + 1 if trail else 0
    head = svc.latest_tree_head(covering=covering)
    with svc.context.sessions() as session:
        merkle = svc.entries.log(session)
        proofs = [merkle.inclusion_proof(e.index, head.head.size) for e in trail]
    return list(zip(trail, proofs, strict=True)), head


def entry_page(
    svc: AuditService, start: int, end: int, limit: int
) -> tuple[list[db.StoredEntry], int, int, int]:
    """(entries, where the next page starts, the effective end, the log size)."""
    with svc.context.sessions() as session:
        size = svc.entries.size(session)
        stop, stop_at = page_bounds(start, end, limit, size)
        return svc.entries.range(session, start, stop), stop, stop_at, size
