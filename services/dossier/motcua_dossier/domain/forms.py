"""Which workflow move issues which one-stop-shop form, and what the form says (pure).

Circular 01/2018/TT-VPCP prescribes five papers; the dossier's workflow decides when each is
due (ADR 0086):

========================  ==========================================================
``receive``               Mẫu số 01 receipt and appointment slip + Mẫu số 05 control sheet
``reject``                Mẫu số 03 refusal (the comment is the reason)
``request_supplement``    Mẫu số 02 supplement request (the comment lists what is missing)
overdue (deadline scan)   Mẫu số 04 apology with the new appointment
``return_result``         Mẫu số 05 control sheet with every handover so far (+ the result)
========================  ==========================================================

The content is built here as the plain mapping ``motcua_documents.model.FormContent.build``
checks; rendering and signing are the adapter's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from motcua_documents.model import FormContent, FormError, FormKind
from motcua_dossier.domain.catalogue import Procedure
from motcua_dossier.domain.dossier import Actor, Dossier, Status
from motcua_kit.errors import InvalidArgument

#: The forms each workflow action issues, in issue order ("overdue" is the deadline scan's).
FORMS_OF: Mapping[str, tuple[FormKind, ...]] = {
    "receive": (FormKind.RECEIPT, FormKind.CONTROL),
    "reject": (FormKind.REFUSAL,),
    "request_supplement": (FormKind.SUPPLEMENT,),
    "return_result": (FormKind.CONTROL,),
    "overdue": (FormKind.APOLOGY,),
}

#: The annex's form number of each form ("Mẫu số 01").
ANNEX_NUMBER: Mapping[FormKind, str] = {
    FormKind.RECEIPT: "Mẫu số 01",
    FormKind.SUPPLEMENT: "Mẫu số 02",
    FormKind.REFUSAL: "Mẫu số 03",
    FormKind.APOLOGY: "Mẫu số 04",
    FormKind.CONTROL: "Mẫu số 05",
}


def forms_for(cause: str) -> tuple[FormKind, ...]:
    """The forms a workflow action (or "overdue") issues; none for the other actions."""
    return FORMS_OF.get(cause, ())


@dataclass(frozen=True)
class AgencyPaper:
    """What the forms print of an agency beyond the catalogue (data/documents.yaml)."""

    code: str
    name: str
    parent: str
    place: str
    phone: str
    counter: str


@dataclass(frozen=True)
class FormTexts:
    """The forms' fixed wording where the transition gives none (data/documents.yaml)."""

    supplement_reason: str
    apology_reason: str
    apology_signatory: str
    document_kind: str
    officer_title_counter: str
    officer_title_processing: str


@dataclass(frozen=True)
class Step:
    """One status change of a dossier, as its history keeps it: the control sheet's rows."""

    previous_status: Status
    status: Status
    actor: str
    at: datetime
    appointment_date: date


@dataclass(frozen=True)
class FormRequest:
    """What issues the forms: the dossier after the change, and the change itself."""

    dossier: Dossier
    procedure: Procedure
    agency: AgencyPaper
    cause: str
    actor: Actor | None
    comment: str
    now: datetime
    history: tuple[Step, ...] = ()
    # Overdue only: the appointment the dossier missed.
    missed_appointment: date | None = None
    # Issued before this request (numbers each form within the dossier).
    issued_before: int = 0


@dataclass(frozen=True)
class IssuedDocument:
    """A signed document as stored: ``kind`` is a form's (``FormKind``) or ``"result"``;
    ``content`` is empty when only the metadata was read."""

    id: str
    dossier_code: str
    agency_code: str
    kind: str
    form_number: str
    number: str
    media_type: str
    size: int
    sha256: str
    issued_at: datetime
    signature_level: str
    signer: str
    filename: str
    cause: str
    content: bytes = b""
    # Its rank among the dossier's documents (1, 2, ...): their order, and the form number's.
    ordinal: int = 0


RESULT = "result"


@dataclass(frozen=True)
class FormOrder:
    """One form to render and sign."""

    kind: FormKind
    ordinal: int
    number: str
    cause: str
    content: FormContent


_OUTCOME_EARLY, _OUTCOME_ON_TIME, _OUTCOME_LATE = "Trước hạn", "Đúng hạn", "Quá hạn"


def form_number(dossier_code: str, agency_code: str, ordinal: int) -> str:
    """``<YYMMDD-NNNN>.<k>/<AGENCY>-TNTKQ``: the dossier's own sequence and the form's rank
    among the dossier's papers — unique, and taken with no agency-wide lock (ADR 0086)."""
    own = dossier_code.removeprefix(f"{agency_code}-")
    return f"{own}.{ordinal}/{agency_code}-TNTKQ"


def holder(status: Status, agency: AgencyPaper, applicant: str) -> str:
    """Who holds the dossier in a state: the counter, the processing agency or the citizen."""
    if status in (Status.RECEIVED, Status.PROCESSED):
        return agency.counter
    if status == Status.PROCESSING:
        return agency.name
    return f"Người nộp hồ sơ: {applicant}"


def handovers(steps: Sequence[Step], agency: AgencyPaper, applicant: str, tz: ZoneInfo) -> list:
    """The control sheet's rows: each change that moved the dossier to another holder, with
    the outcome against the appointment then in force."""
    rows: list[dict[str, Any]] = []
    for step in steps:
        giver = holder(step.previous_status, agency, applicant)
        receiver = holder(step.status, agency, applicant)
        if giver == receiver:
            continue
        day = step.at.astimezone(tz).date()
        outcome = (
            _OUTCOME_EARLY
            if day < step.appointment_date
            else _OUTCOME_ON_TIME
            if day == step.appointment_date
            else _OUTCOME_LATE
        )
        rows.append(
            {
                "giver": giver,
                "receiver": receiver,
                "at": step.at,
                "outcome": outcome,
                "note": f"Cán bộ: {step.actor}" if step.actor else "",
            }
        )
    return rows[-50:]  # the form holds at most 50 rows: the latest


def _at_close(day: date, tz: ZoneInfo, close: time) -> datetime:
    return datetime.combine(day, close, tzinfo=tz)


def _requested(comment: str) -> list[str]:
    parts = [p.strip(" -•\t") for p in comment.replace(";", "\n").splitlines()]
    return [p for p in parts if p][:50]


def orders(
    request: FormRequest, texts: FormTexts, *, tz: ZoneInfo, office_close: time
) -> list[FormOrder]:
    """The forms ``request.cause`` issues, their content checked (a comment the form cannot
    carry is refused naming ``comment``)."""
    d = request.dossier
    kinds = forms_for(request.cause)
    received = d.received_at or d.submitted_at
    appointment = _at_close(d.appointment_date, tz, office_close)
    officer_name = request.actor.subject if request.actor else texts.apology_signatory
    counter_causes = ("receive", "reject", "return_result")
    title = (
        texts.officer_title_counter
        if request.cause in counter_causes
        else texts.officer_title_processing
        if request.actor
        else request.agency.name
    )
    documents = [
        {"name": doc.name, "kind": texts.document_kind, "copies": 1} for doc in d.documents
    ] or [
        {"name": r.name, "kind": "theo danh mục thủ tục", "copies": 1}
        for r in request.procedure.required_documents
        if r.mandatory
    ]
    base: dict[str, Any] = {
        "agency": {
            "code": request.agency.code,
            "name": request.agency.name,
            "parent": request.agency.parent,
            "place": request.agency.place,
        },
        "dossier_code": d.code,
        "procedure": request.procedure.name,
        "applicant": {
            "name": d.applicant.full_name,
            "address": d.applicant.address,
            "phone": d.applicant.phone,
            "email": d.applicant.email,
        },
        "officer": {"name": officer_name[:120], "title": title, "phone": request.agency.phone},
        "received_at": received,
        "issued_on": max(request.now.astimezone(tz).date(), received.astimezone(tz).date()),
        "result_channel": request.agency.counter,
    }
    out: list[FormOrder] = []
    for i, kind in enumerate(kinds, start=request.issued_before + 1):
        data = {**base, "kind": kind.value, "number": form_number(d.code, d.agency_code, i)}
        if appointment > received:
            data["appointment"] = appointment
        if kind is FormKind.RECEIPT:
            data["documents"] = documents
            data["working_days"] = max(request.procedure.processing_days, 1)
        elif kind is FormKind.REFUSAL:
            data["reason"] = request.comment
        elif kind is FormKind.SUPPLEMENT:
            data["requested"] = _requested(request.comment)
            data["reason"] = texts.supplement_reason
        elif kind is FormKind.APOLOGY:
            missed = request.missed_appointment or d.appointment_date
            data["appointment"] = _at_close(missed, tz, office_close)
            data["new_appointment"] = appointment
            data["reason"] = texts.apology_reason
        elif kind is FormKind.CONTROL:
            steps = handovers(request.history, request.agency, d.applicant.full_name, tz)
            data["handovers"] = steps
        out.append(FormOrder(kind, i, data["number"], request.cause, build(data)))
    return out


def build(data: Mapping[str, Any]) -> FormContent:
    """``FormContent.build``; what the officer wrote is refused naming ``comment``, anything
    else the mapping got wrong is a bug and raised as it is."""
    try:
        return FormContent.build(data)
    except FormError as exc:
        if exc.field == "reason" or exc.field.startswith("requested"):
            raise InvalidArgument(
                "comment", f"cannot be printed on the form: {exc.message}"
            ) from None
        raise
