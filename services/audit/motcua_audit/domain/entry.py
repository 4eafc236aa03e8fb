"""One audit entry and its canonical bytes: exactly what the Merkle log hashes as a leaf.

Why a hand-made encoding and not protobuf: protobuf's "deterministic" serialisation is only
stable within one implementation and version; an auditor's verifier, written in any language
years later, must rebuild byte-identical leaves from a one-page description. So an entry is a
fixed magic, a version byte, and a fixed list of fields, each a 4-byte big-endian length and
the field's bytes. Nothing is optional and nothing is reordered; strings are UTF-8, times are
signed 64-bit big-endian microseconds since the Unix epoch (UTC), digests are raw 32 bytes.
The layout is in docs/audit-log.md; ``ENTRY_FIELDS`` below is the same list.

Personal data: an access record names *whose* data was viewed only through ``citizen_ref``,
a salted SHA-256 commitment (see ``citizen_commitment``), so the exported, never-rewritable
log carries no citizen ID in clear; the salt and ID stay in the service's database.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

__all__ = [
    "EMPTY_PAYLOAD_SHA256",
    "ENTRY_FIELDS",
    "ENTRY_MAGIC",
    "ENTRY_VERSION",
    "Actor",
    "Entry",
    "EntryFormatError",
    "EntryKind",
    "Role",
    "citizen_commitment",
    "from_micros",
    "to_micros",
]

ENTRY_MAGIC: Final = b"MOTCUA-ENTRY"
ENTRY_VERSION: Final = 1
DIGEST_SIZE: Final = 32
_LENGTH = struct.Struct(">I")
_I64 = struct.Struct(">q")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MAX_FIELD = 1 << 20  # 1 MiB: no legitimate attribute is larger; bounds a hostile decode

EMPTY_PAYLOAD_SHA256: Final = hashlib.sha256(b"").digest()
"""Payload digest of an entry without a payload (an access record)."""


class EntryKind(StrEnum):
    """What an entry records."""

    EVENT = "event"  # an event consumed from a motcua topic
    ACCESS = "access"  # a direct record: someone viewed a citizen's data (RecordAccess)


class Role(StrEnum):
    """The actor's role, spelled as in the JWT roles claim; empty when the source is unknown."""

    UNKNOWN = ""
    CITIZEN = "citizen"
    OFFICER = "officer"
    ADMIN = "admin"
    SERVICE = "service"


class EntryFormatError(ValueError):
    """Bytes that are not a version-1 canonical entry (decode is strict: one form per entry)."""


ENTRY_FIELDS: Final = (
    "kind",
    "event_id",
    "event_source",
    "event_type",
    "event_subject",
    "event_time",
    "topic",
    "actor_subject",
    "actor_role",
    "actor_agency",
    "dossier_code",
    "payload_sha256",
    "recorded_at",
    "purpose",
    "resource",
    "citizen_ref",
)
"""Field order of the canonical encoding (version 1)."""


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICRO


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def citizen_commitment(citizen_id: str, salt: bytes) -> bytes:
    """SHA-256(salt || citizen ID): binds an access record to a citizen without naming them.

    A 12-digit ID alone would fall to brute force (10**12 guesses), so the commitment is
    salted with 16+ random bytes kept beside the entry; whoever is given (ID, salt) can check
    it, and deleting the salt row leaves a verifiable log that no longer identifies anyone.
    """
    if len(salt) < 16:
        raise ValueError("the salt must be at least 16 bytes")
    return hashlib.sha256(bytes(salt) + citizen_id.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: token subject, role, and agency (tenant) code for officers."""

    subject: str = ""
    role: Role = Role.UNKNOWN
    agency_code: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit entry. ``encode()`` is the leaf; ``Entry.decode(encode(e)) == e``.

    For events the ``event_*`` fields are the CloudEvents attributes as received; for access
    records they are the record's own (id = the caller's record id, source names the caller).
    """

    kind: EntryKind
    event_id: str
    event_source: str
    event_type: str
    event_subject: str
    event_time: datetime
    topic: str
    actor: Actor
    dossier_code: str
    payload_sha256: bytes
    recorded_at: datetime
    purpose: str = ""
    resource: str = ""
    citizen_ref: bytes = b""

    def __post_init__(self) -> None:
        if len(self.payload_sha256) != DIGEST_SIZE:
            raise ValueError("payload_sha256 must be 32 bytes")
        if self.citizen_ref and len(self.citizen_ref) != DIGEST_SIZE:
            raise ValueError("citizen_ref must be empty or 32 bytes")
        for name in ("event_time", "recorded_at"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")

    def encode(self) -> bytes:
        """The canonical bytes (layout in the module docstring and docs/audit-log.md)."""
        fields = (
            self.kind.value.encode(),
            self.event_id.encode(),
            self.event_source.encode(),
            self.event_type.encode(),
            self.event_subject.encode(),
            _I64.pack(to_micros(self.event_time)),
            self.topic.encode(),
            self.actor.subject.encode(),
            self.actor.role.value.encode(),
            self.actor.agency_code.encode(),
            self.dossier_code.encode(),
            bytes(self.payload_sha256),
            _I64.pack(to_micros(self.recorded_at)),
            self.purpose.encode(),
            self.resource.encode(),
            bytes(self.citizen_ref),
        )
        parts = [ENTRY_MAGIC, bytes([ENTRY_VERSION])]
        for value in fields:
            parts.append(_LENGTH.pack(len(value)))
            parts.append(value)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        """Parse canonical bytes; anything but the exact version-1 form is refused."""
        raw = _split(bytes(data))
        try:
            text = {
                name: raw[i].decode("utf-8")
                for i, name in enumerate(ENTRY_FIELDS)
                if name not in ("event_time", "payload_sha256", "recorded_at", "citizen_ref")
            }
        except UnicodeDecodeError as exc:
            raise EntryFormatError(f"a text field is not UTF-8: {exc}") from None
        try:
            kind = EntryKind(text["kind"])
            role = Role(text["actor_role"])
        except ValueError as exc:
            raise EntryFormatError(str(exc)) from None
        times = {}
        for name in ("event_time", "recorded_at"):
            value = raw[ENTRY_FIELDS.index(name)]
            if len(value) != _I64.size:
                raise EntryFormatError(f"{name} must be 8 bytes")
            try:
                times[name] = from_micros(_I64.unpack(value)[0])
            except OverflowError:
                raise EntryFormatError(f"{name} is out of range") from None
        try:
            entry = cls(
                kind=kind,
                event_id=text["event_id"],
                event_source=text["event_source"],
                event_type=text["event_type"],
                event_subject=text["event_subject"],
                event_time=times["event_time"],
                topic=text["topic"],
                actor=Actor(text["actor_subject"], role, text["actor_agency"]),
                dossier_code=text["dossier_code"],
                payload_sha256=raw[ENTRY_FIELDS.index("payload_sha256")],
                recorded_at=times["recorded_at"],
                purpose=text["purpose"],
                resource=text["resource"],
                citizen_ref=raw[ENTRY_FIELDS.index("citizen_ref")],
            )
        except (ValueError, OverflowError) as exc:
            raise EntryFormatError(str(exc)) from None
        # One entry, one encoding: a decode that would re-encode differently is not canonical.
        if not hmac.compare_digest(entry.encode(), data):
            raise EntryFormatError("not the canonical encoding of its fields")
        return entry


def _split(data: bytes) -> list[bytes]:
    head = len(ENTRY_MAGIC) + 1
    if len(data) < head or data[: len(ENTRY_MAGIC)] != ENTRY_MAGIC:
        raise EntryFormatError("not a motcua audit entry (magic)")
    if data[len(ENTRY_MAGIC)] != ENTRY_VERSION:
        raise EntryFormatError(f"unsupported entry version {data[len(ENTRY_MAGIC)]}")
    out: list[bytes] = []
    pos = head
    for name in ENTRY_FIELDS:
        if pos + _LENGTH.size > len(data):
            raise EntryFormatError(f"truncated before field {name}")
        (size,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if size > _MAX_FIELD or pos + size > len(data):
            raise EntryFormatError(f"field {name} overruns the entry")
        out.append(data[pos : pos + size])
        pos += size
    if pos != len(data):
        raise EntryFormatError("trailing bytes after the last field")
    return out
