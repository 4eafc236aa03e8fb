"""Protobuf mapping, both ways: domain values to the API's responses and the events' messages,
and the payment events' messages to domain claims. The one place the contracts' shapes are
known; no rules live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from google.protobuf.message import Message

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua.payment.v1 import events_pb2 as payment_events_pb2
from motcua_dossier import events
from motcua_dossier.domain.catalogue import Catalogue, Procedure, UnknownProcedure
from motcua_dossier.domain.dossier import Actor, Dossier, Status
from motcua_dossier.domain.fee import PaymentClaim, PaymentRefusal
from motcua_dossier.domain.forms import IssuedDocument, Step
from motcua_dossier.domain.lifecycle import AppliedAction, DeadlineNotice
from motcua_dossier.domain.statistics import Statistics
from motcua_kit.actors import actor_to_proto
from motcua_kit.envelope import Event
from motcua_kit.proto import timestamp


def dossier_to_proto(d: Dossier, procedure_name: str = "") -> dossier_pb2.Dossier:
    """The one mapping from the domain dossier to its contract (API and events alike).

    The dossier knows its procedure by code; the name is the catalogue's
    (:func:`procedure_name_of`; events get it from :func:`fill_names`).
    """
    msg = dossier_pb2.Dossier(
        code=d.code,
        procedure_code=d.procedure_code,
        procedure_name=procedure_name,
        agency_code=d.agency_code,
        applicant=dossier_pb2.Applicant(
            full_name=d.applicant.full_name,
            citizen_id=d.applicant.citizen_id,
            phone=d.applicant.phone,
            email=d.applicant.email,
            address=d.applicant.address,
        ),
        documents=[
            dossier_pb2.Document(
                name=doc.name,
                media_type=doc.media_type,
                size_bytes=doc.size_bytes,
                sha256=doc.sha256,
                storage_uri=doc.storage_uri,
            )
            for doc in d.documents
        ],
        channel=int(d.channel),
        status=int(d.status),
        version=d.version,
        submitted_at=timestamp(d.submitted_at),
        appointment_date=d.appointment_date.isoformat(),
        submitted_by=actor_to_proto(d.submitted_by),
    )
    if d.fee_vnd is not None:
        msg.fee_vnd = d.fee_vnd
    if d.received_at is not None:
        msg.received_at.CopyFrom(timestamp(d.received_at))
    if d.completed_at is not None:
        msg.completed_at.CopyFrom(timestamp(d.completed_at))
    if d.original_appointment_date is not None:
        msg.original_appointment_date = d.original_appointment_date.isoformat()
    msg.overdue = d.overdue
    return msg


def procedure_name_of(catalogue: Catalogue, procedure_code: str) -> str:
    """The procedure's name, or empty for a code the catalogue no longer has."""
    try:
        return catalogue.procedure(procedure_code).name
    except UnknownProcedure:
        return ""


def fill_names(message: Message, catalogue: Catalogue) -> None:
    """Fill in the names the catalogue has on the dossier an event carries: its procedure's,
    which notices show beside the code ("Đăng ký khai sinh (HT-001)")."""
    dossier = getattr(message, "dossier", None)
    if isinstance(dossier, dossier_pb2.Dossier) and not dossier.procedure_name:
        dossier.procedure_name = procedure_name_of(catalogue, dossier.procedure_code)


_ONLINE = {"full": dossier_pb2.ONLINE_LEVEL_FULL, "partial": dossier_pb2.ONLINE_LEVEL_PARTIAL}


def procedure_to_proto(p: Procedure, agency_name: str) -> dossier_pb2.Procedure:
    msg = dossier_pb2.Procedure(
        code=p.code,
        name=p.name,
        agency_code=p.agency_code,
        agency_name=agency_name,
        processing_days=p.processing_days,
        required_documents=[
            dossier_pb2.RequiredDocument(name=r.name, mandatory=r.mandatory)
            for r in p.required_documents
        ],
        online_level=_ONLINE.get(p.online_level, dossier_pb2.ONLINE_LEVEL_UNSPECIFIED),
        workflow_id=p.workflow_id,
    )
    if p.fee_vnd is not None:
        msg.fee_vnd = p.fee_vnd
    return msg


def statistics_response(stats: Statistics) -> dossier_pb2.GetStatisticsResponse:
    return dossier_pb2.GetStatisticsResponse(
        received=stats.received,
        early=stats.early,
        on_time=stats.on_time,
        late=stats.late,
        in_progress=stats.in_progress,
        on_time_ratio=stats.on_time_ratio,
    )


# -- event messages ------------------------------------------------------------------------
def event(
    catalogue: Catalogue, event_type: str, code: str, message: Message, now: datetime
) -> Event:
    """A dossier event's envelope, with the procedure's name filled in (:func:`fill_names`)."""
    fill_names(message, catalogue)
    return Event.new(source=events.SOURCE, type=event_type, subject=code, message=message, time=now)


def submitted(dossier: Dossier) -> events_pb2.DossierSubmitted:
    return events_pb2.DossierSubmitted(dossier=dossier_to_proto(dossier))


def status_changed(
    done: AppliedAction, action: str, actor: Actor, now: datetime
) -> events_pb2.DossierStatusChanged:
    return events_pb2.DossierStatusChanged(
        dossier=dossier_to_proto(done.dossier),
        previous_status=int(done.previous_status),
        action=action,
        actor=actor_to_proto(actor),
        comment=done.comment,
        occurred_at=timestamp(now),
    )


def deadline(notice: DeadlineNotice) -> events_pb2.DossierDeadline:
    return events_pb2.DossierDeadline(
        dossier=dossier_to_proto(notice.dossier),
        due_date=notice.due_date.isoformat(),
        new_appointment_date=(
            notice.dossier.appointment_date.isoformat() if notice.kind == "overdue" else ""
        ),
        working_days=notice.working_days,
    )


def payment_refused(
    code: str,
    dossier: Dossier | None,
    claim: PaymentClaim,
    payment_event_id: str,
    refused: PaymentRefusal,
    now: datetime,
) -> events_pb2.PaymentRefused:
    return events_pb2.PaymentRefused(
        dossier_code=code,
        agency_code=dossier.agency_code if dossier else "",
        fee_vnd=(dossier.fee_vnd or 0) if dossier else 0,
        status=int(dossier.status) if dossier else 0,
        payment_id=claim.payment_id,
        payment_agency_code=claim.agency_code,
        payment_amount_vnd=claim.amount_vnd,
        payment_event_id=payment_event_id,
        reason=refused.value,
        occurred_at=timestamp(now),
    )


def payment_claim(message: Message | None) -> PaymentClaim:
    """What a payment event says of the payment."""
    assert isinstance(message, payment_events_pb2.PaymentEvent)
    p = message.payment
    return PaymentClaim(p.id, p.dossier_code, p.agency_code, p.amount_vnd)


# -- signed documents (ADR 0086) -------------------------------------------------------------
_DOCUMENT_KINDS = {
    "receipt": dossier_pb2.DOCUMENT_KIND_RECEIPT,
    "supplement": dossier_pb2.DOCUMENT_KIND_SUPPLEMENT_REQUEST,
    "refusal": dossier_pb2.DOCUMENT_KIND_REFUSAL,
    "apology": dossier_pb2.DOCUMENT_KIND_APOLOGY,
    "control": dossier_pb2.DOCUMENT_KIND_CONTROL_SHEET,
    "result": dossier_pb2.DOCUMENT_KIND_RESULT,
}


def issued_document_to_proto(d: IssuedDocument) -> dossier_pb2.IssuedDocument:
    """The document's metadata (never its bytes: GetDocument serves those)."""
    return dossier_pb2.IssuedDocument(
        id=d.id,
        dossier_code=d.dossier_code,
        kind=_DOCUMENT_KINDS[d.kind],
        media_type=d.media_type,
        size_bytes=d.size,
        sha256=d.sha256,
        form_number=d.form_number,
        issued_at=timestamp(d.issued_at),
        signature_level=d.signature_level,
        signer=d.signer,
        filename=d.filename,
        cause=d.cause,
    )


def document_issued(dossier: Dossier, document: IssuedDocument) -> events_pb2.DocumentIssued:
    return events_pb2.DocumentIssued(
        dossier=dossier_to_proto(dossier), document=issued_document_to_proto(document)
    )


def history(payloads: Sequence[bytes]) -> tuple[Step, ...]:
    """The status changes the dossier's DossierStatusChanged events record, in order."""
    steps = []
    for payload in payloads:
        changed = events_pb2.DossierStatusChanged.FromString(payload)
        steps.append(
            Step(
                previous_status=Status(changed.previous_status),
                status=Status(changed.dossier.status),
                actor=changed.actor.subject,
                at=changed.occurred_at.ToDatetime(tzinfo=UTC),
                appointment_date=date.fromisoformat(changed.dossier.appointment_date),
            )
        )
    return tuple(steps)
