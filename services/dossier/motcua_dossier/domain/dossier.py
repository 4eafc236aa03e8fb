"""The dossier (hồ sơ) and the rules of filing one: pure Python, no I/O.

A :class:`Submission` is what a citizen, an officer at the counter or the portal files; it is
validated and normalised (Unicode NFC, trimmed, phone in national form) before anything is
written. A :class:`Dossier` is what is stored and published.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from enum import IntEnum

from motcua_kit import text
from motcua_kit.errors import AlreadyExists, InvalidArgument
from motcua_kit.text import normalise_text as normalise_text  # one rule, re-exported


class Status(IntEnum):
    """The national dossier status list (danh mục trạng thái hồ sơ); values are its codes."""

    NEW = 1
    RECEIVED = 2
    NOT_RECEIVED = 3
    PROCESSING = 4
    SUPPLEMENT_REQUESTED = 5
    PAYMENT_REQUIRED = 6
    WITHDRAWN = 7
    STOPPED = 8
    PROCESSED = 9
    RESULT_RETURNED = 10


class Channel(IntEnum):
    """How the dossier reached the agency; values match the protobuf enum."""

    ONLINE = 1
    IN_PERSON = 2
    POST = 3


MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
MAX_DOCUMENTS = 50
MAX_TEXT = 500

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def validate_comment(field_name: str, value: str) -> str:
    """An officer's comment or a citizen's reason: free text, emoji allowed, no bidi controls."""
    return text.free_text(field_name, value, max_len=None)


def normalise_phone(field_name: str, value: str) -> str:
    """A Vietnamese mobile number in national form 0XXXXXXXXX (accepts +84 / 84 prefixes)."""
    return text.phone_number(field_name, value, mobile_only=True)


@dataclass(frozen=True)
class Applicant:
    """The person filing (người nộp hồ sơ)."""

    full_name: str
    citizen_id: str
    phone: str
    email: str
    address: str

    @classmethod
    def validated(
        cls, full_name: str, citizen_id: str, phone: str, email: str, address: str
    ) -> Applicant:
        cid = text.citizen_id("applicant.citizen_id", citizen_id)
        mail = normalise_text(email).lower()
        if mail and (len(mail) > 254 or not _EMAIL.fullmatch(mail)):
            raise InvalidArgument("applicant.email", "is not a valid email address")
        if not phone.strip():
            raise InvalidArgument("applicant.phone", "is required")
        return cls(
            full_name=text.identifying_text("applicant.full_name", full_name, max_len=200),
            citizen_id=cid,
            phone=normalise_phone("applicant.phone", phone),
            email=mail,
            address=text.identifying_text("applicant.address", address, max_len=MAX_TEXT),
        )


@dataclass(frozen=True)
class Document:
    """Metadata of one attached document; the bytes live in object storage."""

    name: str
    media_type: str
    size_bytes: int
    sha256: str
    storage_uri: str = ""

    @classmethod
    def validated(
        cls, index: int, name: str, media_type: str, size_bytes: int, sha256: str, storage_uri: str
    ) -> Document:
        prefix = f"documents[{index}]"
        mtype = media_type.strip().lower()
        if not _MEDIA_TYPE.fullmatch(mtype):
            raise InvalidArgument(
                f"{prefix}.media_type", "must be a media type like application/pdf"
            )
        if size_bytes <= 0:
            raise InvalidArgument(f"{prefix}.size_bytes", "must be greater than 0")
        if size_bytes > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(f"{prefix}.size_bytes", f"must be at most {MAX_DOCUMENT_BYTES}")
        digest = sha256.strip().lower()
        if not _SHA256.fullmatch(digest):
            raise InvalidArgument(f"{prefix}.sha256", "must be 64 hexadecimal characters")
        return cls(
            name=text.free_text(f"{prefix}.name", name, max_len=300, required=True),
            media_type=mtype,
            size_bytes=size_bytes,
            sha256=digest,
            storage_uri=normalise_text(storage_uri),
        )


@dataclass(frozen=True)
class Actor:
    """Who did something: recorded on every change."""

    subject: str
    role: str
    agency_code: str = ""


@dataclass(frozen=True)
class Submission:
    """A validated, normalised request to file a dossier."""

    procedure_code: str
    applicant: Applicant
    documents: tuple[Document, ...]
    channel: Channel
    idempotency_key: str

    def fingerprint(self) -> str:
        """SHA-256 of the request body without the key: equal bodies, equal fingerprints."""
        body = asdict(self)
        body.pop("idempotency_key")
        body["channel"] = int(self.channel)
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class DocumentInput:
    name: str
    media_type: str
    size_bytes: int
    sha256: str
    storage_uri: str = ""


def validate_submission(
    *,
    procedure_code: str,
    applicant: Applicant,
    documents: list[DocumentInput],
    channel: int,
    idempotency_key: str,
) -> Submission:
    """Check every field of a submission; the first problem is refused, naming its field."""
    code = procedure_code.strip()
    if not code:
        raise InvalidArgument("procedure_code", "is required")
    if channel not in {c.value for c in Channel}:
        raise InvalidArgument(
            "channel", "must be one of CHANNEL_ONLINE, CHANNEL_IN_PERSON, CHANNEL_POST"
        )
    key = idempotency_key.strip()
    if not key:
        raise InvalidArgument("idempotency_key", "is required (choose one per submission)")
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidArgument("idempotency_key", "must be 1-128 printable ASCII characters")
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidArgument("documents", f"at most {MAX_DOCUMENTS} documents")
    docs = tuple(
        Document.validated(i, d.name, d.media_type, d.size_bytes, d.sha256, d.storage_uri)
        for i, d in enumerate(documents)
    )
    return Submission(code, applicant, docs, Channel(channel), key)


def dossier_code(agency_code: str, day: date, sequence: int) -> str:
    """``<AGENCY>-<YYMMDD>-<NNNN>``: the agency's daily sequence, four digits or more."""
    if sequence < 1:
        raise ValueError("sequence starts at 1")
    return f"{agency_code}-{day:%y%m%d}-{sequence:04d}"


@dataclass(frozen=True)
class Dossier:
    """A filed dossier as stored and published."""

    code: str
    procedure_code: str
    agency_code: str
    applicant: Applicant
    documents: tuple[Document, ...]
    channel: Channel
    status: Status
    version: int
    submitted_at: datetime
    appointment_date: date
    fee_vnd: int | None
    submitted_by: Actor
    idempotency_fingerprint: str = field(default="", compare=False)
    received_at: datetime | None = None
    completed_at: datetime | None = None
    original_appointment_date: date | None = None
    overdue: bool = False
    # Since when the clock is stopped, waiting on the citizen (supplement, payment).
    paused_since: datetime | None = None
    due_soon_notified: bool = False
    overdue_notified: bool = False


def key_reused(earlier: Dossier) -> AlreadyExists:
    """The refusal of another submission under a key already used (a key names one
    submission; the same body again replays ``earlier``, the dossier it filed)."""
    return AlreadyExists(
        "idempotency_key was already used for a different submission "
        f"(dossier {earlier.code}); use a new key for a new dossier"
    )
