"""Direct access records: who viewed which citizen's data, and why (validated on the way in).

An officer opening a dossier sees the applicant's citizen ID, phone and address; the law on
personal data asks that such access can be accounted for. A record is refused with the field
named when it could not later answer "who, whose, why".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from motcua_audit.domain.entry import (
    EMPTY_PAYLOAD_SHA256,
    Actor,
    Entry,
    EntryKind,
    Role,
    citizen_commitment,
)
from motcua_kit import text
from motcua_kit.errors import AlreadyExists, InvalidArgument
from motcua_kit.text import normalise_text

RECORD_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
DOSSIER_CODE = re.compile(r"[A-Z0-9]+(?:-[A-Z0-9]+)*")
MAX_DOSSIER_CODE = 40
MAX_PURPOSE = 500
MAX_RESOURCE = 200
MAX_SUBJECT = 200
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class AccessRecord:
    """A validated access record, before it is given an actor and a place in the log."""

    record_id: str
    citizen_id: str
    dossier_code: str
    purpose: str
    resource: str
    on_behalf_of: Actor | None
    accessed_at: datetime | None

    def fingerprint(self, actor: Actor) -> str:
        """SHA-256 of what the record says, to tell a retry from a reused record id."""
        body = {
            "citizen_id": self.citizen_id,
            "dossier_code": self.dossier_code,
            "purpose": self.purpose,
            "resource": self.resource,
            "actor": [actor.subject, actor.role.value, actor.agency_code],
            "accessed_at": self.accessed_at.isoformat() if self.accessed_at else None,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def validate_access(
    *,
    record_id: str,
    citizen_id: str,
    dossier_code: str,
    purpose: str,
    resource: str,
    on_behalf_of: Actor | None,
    accessed_at: datetime | None,
    now: datetime,
) -> AccessRecord:
    """Check and normalise a RecordAccess request; the first bad field is named."""
    record_id = record_id.strip()
    if not RECORD_ID.fullmatch(record_id):
        raise InvalidArgument("record_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    citizen_id = text.citizen_id("citizen_id", citizen_id, required=False)
    dossier_code = dossier_code.strip()
    if dossier_code and (
        len(dossier_code) > MAX_DOSSIER_CODE or not DOSSIER_CODE.fullmatch(dossier_code)
    ):
        raise InvalidArgument("dossier_code", "is not a dossier code such as STP-261129-0001")
    if not citizen_id and not dossier_code:
        raise InvalidArgument("citizen_id", "citizen_id or dossier_code must say whose data")
    if not normalise_text(purpose):
        raise InvalidArgument("purpose", "is required: why the data was viewed")
    purpose = text.free_text("purpose", purpose, max_len=MAX_PURPOSE)
    resource = text.free_text("resource", resource, max_len=MAX_RESOURCE)
    if on_behalf_of is not None:
        on_behalf_of = _validate_actor(on_behalf_of)
    if accessed_at is not None and accessed_at > now + CLOCK_SKEW:
        raise InvalidArgument("accessed_at", "is in the future")
    return AccessRecord(
        record_id=record_id,
        citizen_id=citizen_id,
        dossier_code=dossier_code,
        purpose=purpose,
        resource=resource,
        on_behalf_of=on_behalf_of,
        accessed_at=accessed_at,
    )


def _validate_actor(actor: Actor) -> Actor:
    subject = actor.subject.strip()
    if not subject or len(subject) > MAX_SUBJECT:
        raise InvalidArgument("on_behalf_of.subject", f"is required (at most {MAX_SUBJECT} chars)")
    # Who acted: shown in the trail, so it must read as it is stored.
    text.identifying_text("on_behalf_of.subject", subject, max_len=MAX_SUBJECT)
    if actor.role is Role.UNKNOWN:
        raise InvalidArgument("on_behalf_of.role", "is required")
    agency = actor.agency_code.strip()
    if actor.role is Role.OFFICER and not agency:
        raise InvalidArgument("on_behalf_of.agency_code", "is required for an officer")
    return Actor(subject, actor.role, agency)


def acting_actor(
    subject: str, roles: frozenset[str], agency_code: str, on_behalf_of: Actor | None
) -> Actor:
    """Who the record names as actor: the caller, or for a service the person it acted for.

    Officers and admins record their own accesses; letting them name someone else would let
    anyone write another's trail.
    """
    if "service" in roles:
        return on_behalf_of or Actor(subject, Role.SERVICE, "")
    if on_behalf_of is not None:
        raise InvalidArgument("on_behalf_of", "only a caller with the service role may set it")
    role = Role.ADMIN if "admin" in roles else Role.OFFICER
    return Actor(subject, role, agency_code if role is Role.OFFICER else "")


def access_entry(
    record: AccessRecord, actor: Actor, source: str, event_type: str, now: datetime, salt: bytes
) -> tuple[Entry, tuple[str, bytes] | None]:
    """The log entry of an access record, and the (citizen ID, salt) kept beside it.

    The entry holds only a salted commitment to the citizen ID (``citizen_ref``), never the
    ID itself, so the log can be published; the ID and salt stay in the database to answer
    "whose accesses" and can be erased without touching the log.
    """
    subject = (record.citizen_id, salt) if record.citizen_id else None
    event_time = record.accessed_at or now
    if event_time.tzinfo is None:  # a naive time is UTC, as motcua stores it
        event_time = event_time.replace(tzinfo=UTC)
    entry = Entry(
        kind=EntryKind.ACCESS,
        event_id=record.record_id,
        event_source=source,
        event_type=event_type,
        event_subject=record.dossier_code,
        event_time=event_time,
        topic="",
        actor=actor,
        dossier_code=record.dossier_code,
        payload_sha256=EMPTY_PAYLOAD_SHA256,
        recorded_at=now,
        purpose=record.purpose,
        resource=record.resource,
        citizen_ref=citizen_commitment(record.citizen_id, salt) if record.citizen_id else b"",
    )
    return entry, subject


def reused(record_id: str, index: int | None) -> AlreadyExists:
    """The refusal of a record id sent again with other content (an id names one record)."""
    where = f" (entry {index})" if index is not None else " (not sequenced yet)"
    return AlreadyExists(
        f"record_id {record_id!r} was already used for a different record{where}; "
        "use a new id for a new record"
    )
