"""What a one-stop-shop form says, as a pure value: no PDF, no key, no I/O.

Every field is checked on construction (``FormContent.build``) and a bad one raises
``FormError`` naming it (``documents[1].copies``), the way gRPC INVALID_ARGUMENT names a field.
Text is normalised to NFC on the way in, so what is drawn, hashed and extracted is one string.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

VIETNAM = timezone(timedelta(hours=7), "ICT")
DOSSIER_CODE = re.compile(r"^[A-Z0-9][A-Z0-9.\-_/]{2,63}$")
AGENCY_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{1,63}$")
MAX_TEXT = 2000


class FormKind(StrEnum):
    """The five forms of Circular 01/2018/TT-VPCP (annex Mẫu số 01–05)."""

    RECEIPT = "receipt"
    SUPPLEMENT = "supplement"
    REFUSAL = "refusal"
    APOLOGY = "apology"
    CONTROL = "control"


class FormError(ValueError):
    """A form's content is wrong; ``field`` names where, the way the gRPC layer reports it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _text(value: object, name: str, *, required: bool = True, limit: int = 300) -> str:
    if value is None or value == "":
        if required:
            raise FormError(name, "is required")
        return ""
    if not isinstance(value, str):
        raise FormError(name, f"must be text, not {type(value).__name__}")
    text = unicodedata.normalize("NFC", " ".join(value.split()))
    if not text and required:
        raise FormError(name, "is required")
    if len(text) > limit:
        raise FormError(name, f"is {len(text)} characters long, at most {limit}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs") for c in text):
        raise FormError(name, "holds a control or private-use character")
    return text


def _moment(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise FormError(name, "must be a date and time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise FormError(name, "must carry its time zone (Vietnam is UTC+07:00)")
    return value.astimezone(VIETNAM)


@dataclass(frozen=True)
class Agency:
    """The issuing agency: ``code`` ties it to its signing certificate (organizationIdentifier)."""

    code: str
    name: str
    parent: str
    place: str


@dataclass(frozen=True)
class Applicant:
    """The citizen or organisation the dossier belongs to."""

    name: str
    address: str = ""
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class ReceivedDocument:
    """One paper of the dossier as received: its name, its kind (original, copy), how many."""

    name: str
    kind: str
    copies: int


@dataclass(frozen=True)
class Officer:
    """The officer who issues the form."""

    name: str
    title: str
    phone: str = ""


@dataclass(frozen=True)
class Handover:
    """One step of the process control sheet: who gave the dossier to whom, when, how it went."""

    giver: str
    receiver: str
    at: datetime
    outcome: str
    note: str = ""


OUTCOMES = ("Trước hạn", "Đúng hạn", "Quá hạn")


@dataclass(frozen=True)
class FormContent:
    """The whole content of one form; build it with ``FormContent.build`` to have it checked."""

    kind: FormKind
    number: str
    agency: Agency
    dossier_code: str
    procedure: str
    applicant: Applicant
    received_at: datetime
    issued_on: date
    officer: Officer
    documents: tuple[ReceivedDocument, ...] = ()
    appointment: datetime | None = None
    working_days: int | None = None
    new_appointment: datetime | None = None
    reason: str = ""
    requested: tuple[str, ...] = ()
    handovers: tuple[Handover, ...] = ()
    result_channel: str = "Bộ phận Tiếp nhận và Trả kết quả"

    @classmethod
    def build(cls, data: Mapping[str, Any]) -> FormContent:
        """Check ``data`` (plain values, as from a request) field by field; NFC throughout."""
        known = set(cls.__dataclass_fields__)
        for key in data:
            if key not in known:
                raise FormError(str(key), "is not a field of a form")
        try:
            kind = FormKind(str(data.get("kind")))
        except ValueError:
            raise FormError("kind", f"must be one of {[k.value for k in FormKind]}") from None
        agency_raw = _mapping(data.get("agency"), "agency")
        agency_code = _text(agency_raw.get("code"), "agency.code", limit=64)
        if not AGENCY_CODE.match(agency_code):
            raise FormError("agency.code", "must be lower-case letters, digits and '-'")
        agency = Agency(
            code=agency_code,
            name=_text(agency_raw.get("name"), "agency.name", limit=120),
            parent=_text(agency_raw.get("parent"), "agency.parent", limit=120),
            place=_text(agency_raw.get("place"), "agency.place", limit=60),
        )
        code = _text(data.get("dossier_code"), "dossier_code", limit=64)
        if not DOSSIER_CODE.match(code):
            raise FormError("dossier_code", "must be 3-64 of A-Z, 0-9 and . - _ /")
        applicant_raw = _mapping(data.get("applicant"), "applicant")
        applicant = Applicant(
            name=_text(applicant_raw.get("name"), "applicant.name", limit=120),
            address=_text(applicant_raw.get("address"), "applicant.address", required=False),
            phone=_text(applicant_raw.get("phone"), "applicant.phone", required=False, limit=20),
            email=_text(applicant_raw.get("email"), "applicant.email", required=False, limit=254),
        )
        if applicant.phone and not re.fullmatch(r"\+?[0-9 ]{8,20}", applicant.phone):
            raise FormError("applicant.phone", "must be digits, optionally with a leading +")
        if applicant.email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", applicant.email):
            raise FormError("applicant.email", "is not an email address")
        officer_raw = _mapping(data.get("officer"), "officer")
        officer = Officer(
            name=_text(officer_raw.get("name"), "officer.name", limit=120),
            title=_text(officer_raw.get("title"), "officer.title", limit=120),
            phone=_text(officer_raw.get("phone"), "officer.phone", required=False, limit=20),
        )
        received_at = _moment(data.get("received_at"), "received_at")
        issued_on = data.get("issued_on")
        if not isinstance(issued_on, date) or isinstance(issued_on, datetime):
            raise FormError("issued_on", "must be a date")
        if issued_on < received_at.date():
            raise FormError("issued_on", "is before the dossier was received")
        documents = tuple(
            _document(item, f"documents[{i}]")
            for i, item in enumerate(_sequence(data.get("documents", ()), "documents"))
        )
        appointment = data.get("appointment")
        if appointment is not None:
            appointment = _moment(appointment, "appointment")
            if appointment <= received_at:
                raise FormError("appointment", "must be after the dossier was received")
        new_appointment = data.get("new_appointment")
        if new_appointment is not None:
            new_appointment = _moment(new_appointment, "new_appointment")
            if appointment is None or new_appointment <= appointment:
                raise FormError("new_appointment", "must be after the first appointment")
        working_days = data.get("working_days")
        if working_days is not None and (
            not isinstance(working_days, int) or isinstance(working_days, bool) or working_days < 1
        ):
            raise FormError("working_days", "must be a whole number of working days, at least 1")
        requested = tuple(
            _text(item, f"requested[{i}]", limit=MAX_TEXT)
            for i, item in enumerate(_sequence(data.get("requested", ()), "requested"))
        )
        handovers = tuple(
            _handover(item, f"handovers[{i}]")
            for i, item in enumerate(_sequence(data.get("handovers", ()), "handovers"))
        )
        content = cls(
            kind=kind,
            number=_text(data.get("number"), "number", limit=40),
            agency=agency,
            dossier_code=code,
            procedure=_text(data.get("procedure"), "procedure", limit=300),
            applicant=applicant,
            received_at=received_at,
            issued_on=issued_on,
            officer=officer,
            documents=documents,
            appointment=appointment,
            working_days=working_days,
            new_appointment=new_appointment,
            reason=_text(data.get("reason"), "reason", required=False, limit=MAX_TEXT),
            requested=requested,
            handovers=handovers,
            result_channel=_text(
                data.get("result_channel", cls.result_channel), "result_channel", limit=200
            ),
        )
        if kind is FormKind.SUPPLEMENT and not officer.phone:
            raise FormError("officer.phone", "is required on a supplement request")
        return content

    def require(self, names: Sequence[str]) -> None:
        """Raise ``FormError`` for the first of ``names`` that this form needs and lacks."""
        for name in names:
            value = getattr(self, name)
            if value is None or value == "" or value == ():
                raise FormError(name, f"is required on the {self.kind.value} form")

    def context(self) -> dict[str, Any]:
        """The placeholders the templates may use: text only, dates spelled as on paper."""
        return {
            "number": self.number,
            "place": self.agency.place,
            "issued_on": spell_date(self.issued_on),
            "agency_name": self.agency.name,
            "agency_parent": self.agency.parent,
            "dossier_code": self.dossier_code,
            "procedure": self.procedure,
            "applicant_name": self.applicant.name,
            "applicant_address": self.applicant.address,
            "applicant_phone": self.applicant.phone,
            "applicant_email": self.applicant.email,
            "officer_name": self.officer.name,
            "officer_title": self.officer.title,
            "officer_phone": self.officer.phone,
            "received_at": spell_moment(self.received_at),
            "appointment": spell_moment(self.appointment) if self.appointment else "",
            "new_appointment": spell_moment(self.new_appointment) if self.new_appointment else "",
            "working_days": str(self.working_days or ""),
            "dossier_sets": "1",
            "reason": self.reason,
            "result_channel": self.result_channel,
            "documents": [
                {"name": d.name, "kind": d.kind, "copies": str(d.copies)} for d in self.documents
            ],
            "requested": [{"text": t} for t in self.requested],
            "handovers": [
                {
                    "giver": h.giver,
                    "receiver": h.receiver,
                    "at": spell_moment(h.at),
                    "outcome": h.outcome,
                    "note": f"; Ghi chú: {h.note}" if h.note else "",
                }
                for h in self.handovers
            ],
        }


def spell_date(day: date) -> str:
    """``ngày 05 tháng 03 năm 2026``: the date as Vietnamese administrative papers write it."""
    return f"ngày {day.day:02d} tháng {day.month:02d} năm {day.year}"


def spell_moment(moment: datetime) -> str:
    """``08 giờ 30 phút, ngày 05 tháng 03 năm 2026`` in Vietnam's time."""
    local = moment.astimezone(VIETNAM)
    return f"{local.hour:02d} giờ {local.minute:02d} phút, {spell_date(local.date())}"


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FormError(name, "is required")
    return value


def _sequence(value: object, name: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise FormError(name, "must be a list")
    if len(value) > 50:
        raise FormError(name, f"has {len(value)} entries, at most 50")
    return value


def _document(item: object, name: str) -> ReceivedDocument:
    raw = _mapping(item, name)
    copies = raw.get("copies")
    if not isinstance(copies, int) or isinstance(copies, bool) or not 1 <= copies <= 99:
        raise FormError(f"{name}.copies", "must be a whole number from 1 to 99")
    return ReceivedDocument(
        name=_text(raw.get("name"), f"{name}.name", limit=200),
        kind=_text(raw.get("kind"), f"{name}.kind", limit=60),
        copies=copies,
    )


def _handover(item: object, name: str) -> Handover:
    raw = _mapping(item, name)
    outcome = _text(raw.get("outcome"), f"{name}.outcome", limit=20)
    if outcome not in OUTCOMES:
        raise FormError(f"{name}.outcome", f"must be one of {list(OUTCOMES)}")
    return Handover(
        giver=_text(raw.get("giver"), f"{name}.giver", limit=120),
        receiver=_text(raw.get("receiver"), f"{name}.receiver", limit=120),
        at=_moment(raw.get("at"), f"{name}.at"),
        outcome=outcome,
        note=_text(raw.get("note"), f"{name}.note", required=False, limit=300),
    )
