"""Use cases: issued documents — counting the ones recorded without a resource, and
GetDocumentProof, the entry that recorded a paper's SHA-256 with its inclusion proof (ADR 0087).

Open to every authenticated caller (:mod:`~motcua_audit.domain.permissions`): to ask, one
must already hold the paper (its hash is the question), and the answer reveals only hashes
plus an entry whose fields (document id, dossier code, the dossier service as actor, times)
the holder can already read on the paper itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from motcua_audit import events, metrics
from motcua_audit.adapters import db
from motcua_audit.domain.entry import Entry
from motcua_audit.domain.tree_head import SignedTreeHead
from motcua_audit.sequencer import SequencingTimeout
from motcua_kit.db import on_commit
from motcua_kit.errors import NotFound

if TYPE_CHECKING:
    from motcua_audit.service import AuditService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentProof:
    """The entry that recorded the document, its audit path, and the head it is against."""

    entry: db.StoredEntry
    path: list[bytes]
    head: SignedTreeHead


def count_unindexed(session: Session, staged: Iterable[Entry]) -> None:
    """document_issued entries whose payload named no valid id or hash are recorded without a
    resource (never dropped, never a crash): count and log them once the staging commits."""
    bad = [
        e
        for e in staged
        if e.event_type == events.DOCUMENT_ISSUED and db.document_sha256(e) is None
    ]
    if not bad:
        return

    def report() -> None:
        metrics.DOCUMENTS_WITHOUT_RESOURCE.inc(len(bad))
        for e in bad:
            log.warning(
                "document_issued event recorded without a document resource: its payload's "
                "document.id is empty or document.sha256 is not 64 lower-case hex",
                extra={"event_id": e.event_id, "dossier_code": e.dossier_code},
            )

    on_commit(session, report)


def document_proof(svc: AuditService, sha256_hex: str) -> DocumentProof:
    """The first sequenced entry recording ``sha256_hex``, proved against a covering head.

    An entry still staged (consumed, not sequenced yet) is sequenced here first, as
    RecordAccess does, so a paper checked right after it was issued is found.
    """
    stored = _sequenced_entry(svc, sha256_hex)
    head = svc.latest_tree_head(covering=stored.index + 1)
    with svc.context.sessions() as session:
        path = svc.entries.log(session).inclusion_proof(stored.index, head.head.size)
    return DocumentProof(stored, path, head)


def _sequenced_entry(svc: AuditService, sha256_hex: str) -> db.StoredEntry:
    with svc.context.sessions() as session:
        stored = svc.entries.by_document_sha256(session, sha256_hex)
        if stored is not None:
            return stored
        if not svc.entries.document_staged(session, sha256_hex):
            raise NotFound(f"no entry records a document with SHA-256 {sha256_hex}")

    def still_staged() -> bool:
        with svc.context.sessions() as session:
            return svc.entries.document_staged(session, sha256_hex)

    timeout = svc.settings.record_access_sequencing_timeout_seconds
    try:
        svc.sequencer.sequence_until(still_staged, time.monotonic() + timeout)
    except SequencingTimeout:
        raise NotFound(
            f"the document with SHA-256 {sha256_hex} is recorded but not in the log yet; "
            "ask again shortly"
        ) from None
    with svc.context.sessions() as session:
        stored = svc.entries.by_document_sha256(session, sha256_hex)
    if stored is None:  # left staging as a duplicate of an entry with another hash: never
        raise NotFound(f"no entry records a document with SHA-256 {sha256_hex}")
    return stored
