"""Use case: RecordAccess, a direct record of who viewed whose data, idempotent on its id.

The record is staged in the caller's transaction, then sequenced before the call returns
(the caller runs sequencer batches itself), so the answer carries the entry's index. A record
id sent again with the same content replays its entry; with other content it is refused
(:func:`~motcua_audit.domain.access.reused`).
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from motcua_audit import events
from motcua_audit.adapters import db
from motcua_audit.domain import permissions
from motcua_audit.domain.access import AccessRecord, access_entry, acting_actor, reused
from motcua_audit.domain.entry import Actor
from motcua_audit.sequencer import SequencingTimeout
from motcua_kit.errors import Aborted

if TYPE_CHECKING:
    from motcua_audit.service import AuditService
    from motcua_kit.auth import Principal


def record_access(
    svc: AuditService, principal: Principal, record: AccessRecord
) -> tuple[db.StoredEntry, bool]:
    """Record an access; returns (entry, replayed)."""
    permissions.require_recorder(principal)
    actor = acting_actor(
        principal.subject, principal.roles, principal.agency_code, record.on_behalf_of
    )
    source = events.ACCESS_SOURCE_PREFIX + principal.subject
    fingerprint = record.fingerprint(actor)
    done, replayed = svc.idempotent(
        (source, record.record_id),
        fingerprint,
        find=partial(_earlier, svc),
        create=lambda session, _scope: _stage_access(
            svc, session, record, actor, source, fingerprint
        ),
        refuse=lambda earlier: reused(record.record_id, _index(earlier)),
    )
    if isinstance(done, db.StoredEntry):
        return done, True
    # Staged (by this call, or sent before and not sequenced yet: a replay once it is).
    stored = _sequenced(svc, source, record.record_id)
    if stored.fingerprint != fingerprint:  # a concurrent call with other content won
        raise reused(record.record_id, stored.index)
    # Ours, unless it was a replay or a concurrent call with the same content won.
    return stored, replayed or stored.canonical != done.canonical


def _earlier(
    svc: AuditService, session: Session, scope: tuple[str, str]
) -> tuple[db.StagedEntry | db.StoredEntry, str | None] | None:
    """What the record id already holds: staged, or in the log.

    Staging first, then the log: a row moves from one to the other in one commit, so in this
    order a record sequenced in between is seen in one of them.
    """
    staged = svc.entries.staged_by_source_and_id(session, *scope)
    found = staged if staged is not None else svc.entries.by_source_and_id(session, *scope)
    return None if found is None else (found, found.fingerprint)


def _index(entry: db.StagedEntry | db.StoredEntry) -> int | None:
    return entry.index if isinstance(entry, db.StoredEntry) else None


def _sequenced(svc: AuditService, source: str, record_id: str) -> db.StoredEntry:
    """The entry of a staged record once it is in the log, sequencing it here if need be.

    RecordAccess promises the entry's index: this caller runs sequencer batches itself
    (taking turns at the log's lock with every other writer) rather than wait for a loop.
    """

    def still_staged() -> bool:
        with svc.context.sessions() as session:
            return svc.entries.staged_by_source_and_id(session, source, record_id) is not None

    timeout = svc.settings.record_access_sequencing_timeout_seconds
    try:
        svc.sequencer.sequence_until(still_staged, time.monotonic() + timeout)
    except SequencingTimeout:
        raise Aborted(
            f"record {record_id!r} is accepted but not in the log yet; send it again with "
            "the same record_id for its entry"
        ) from None
    with svc.context.sessions() as session:
        stored = svc.entries.by_source_and_id(session, source, record_id)
    if stored is None:  # left staging without reaching the log: never, by construction
        raise RuntimeError(f"record {record_id!r} left staging but is not in the log")
    return stored


def _stage_access(
    svc: AuditService,
    session: Session,
    record: AccessRecord,
    actor: Actor,
    source: str,
    fingerprint: str,
) -> db.StagedEntry:
    # 16 random bytes per record: the citizen commitment must not be guessable from the ID.
    salt = os.urandom(16) if record.citizen_id else b""
    entry, subject = access_entry(record, actor, source, events.ACCESS_TYPE, svc.clock(), salt)
    return svc.stage(session, entry, fingerprint, subject)
