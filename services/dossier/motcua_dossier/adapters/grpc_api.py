"""gRPC adapter: protobuf requests → domain calls → protobuf responses. No rules live here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import Message

from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_dossier.domain.catalogue import Catalogue, Procedure, UnknownProcedure
from motcua_dossier.domain.dossier import (
    Applicant,
    Document,
    DocumentInput,
    Dossier,
    validate_comment,
    validate_submission,
)
from motcua_kit.auth import current_principal
from motcua_kit.errors import InvalidArgument
from motcua_kit.proto import timestamp

if TYPE_CHECKING:
    from motcua_dossier.service import DossierService

_ROLE = {
    "citizen": common_pb2.ROLE_CITIZEN,
    "officer": common_pb2.ROLE_OFFICER,
    "admin": common_pb2.ROLE_ADMIN,
    "service": common_pb2.ROLE_SERVICE,
}


def role_to_proto(role: str) -> common_pb2.Role.ValueType:
    return _ROLE.get(role, common_pb2.ROLE_UNSPECIFIED)


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
        submitted_by=common_pb2.Actor(
            subject=d.submitted_by.subject,
            role=role_to_proto(d.submitted_by.role),
            agency_code=d.submitted_by.agency_code,
        ),
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


def _documents(docs: Iterable[dossier_pb2.Document]) -> tuple[Document, ...]:
    return tuple(
        Document.validated(i, d.name, d.media_type, d.size_bytes, d.sha256, d.storage_uri)
        for i, d in enumerate(docs)
    )


class DossierApi(dossier_pb2_grpc.DossierServiceServicer):
    """The DossierService gRPC API."""

    def __init__(self, service: DossierService) -> None:
        self._service = service

    def _dossier(self, d: Dossier) -> dossier_pb2.Dossier:
        return dossier_to_proto(d, procedure_name_of(self._service.catalogue, d.procedure_code))

    def SubmitDossier(
        self, request: dossier_pb2.SubmitDossierRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.SubmitDossierResponse:
        a = request.applicant
        applicant = Applicant.validated(a.full_name, a.citizen_id, a.phone, a.email, a.address)
        submission = validate_submission(
            procedure_code=request.procedure_code,
            applicant=applicant,
            documents=[
                DocumentInput(d.name, d.media_type, d.size_bytes, d.sha256, d.storage_uri)
                for d in request.documents
            ],
            channel=request.channel,
            idempotency_key=request.idempotency_key,
        )
        dossier, replayed = self._service.submit(current_principal(), submission)
        return dossier_pb2.SubmitDossierResponse(dossier=self._dossier(dossier), replayed=replayed)

    def GetDossier(
        self, request: dossier_pb2.GetDossierRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.GetDossierResponse:
        dossier = self._service.get(current_principal(), request.code)
        return dossier_pb2.GetDossierResponse(dossier=self._dossier(dossier))

    def ListDossiers(
        self, request: dossier_pb2.ListDossiersRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.ListDossiersResponse:
        items, token = self._service.list_dossiers(current_principal(), request)
        return dossier_pb2.ListDossiersResponse(
            dossiers=[self._dossier(d) for d in items], next_page_token=token
        )

    def TransitionDossier(
        self, request: dossier_pb2.TransitionDossierRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.TransitionDossierResponse:
        dossier = self._service.transition(
            current_principal(),
            request.code,
            request.action,
            validate_comment("comment", request.comment),
            request.expected_version,
        )
        return dossier_pb2.TransitionDossierResponse(dossier=self._dossier(dossier))

    def SubmitSupplement(
        self, request: dossier_pb2.SubmitSupplementRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.SubmitSupplementResponse:
        if not request.documents:
            raise InvalidArgument("documents", "a supplement needs at least one document")
        dossier = self._service.transition(
            current_principal(),
            request.code,
            "supplement",
            validate_comment("comment", request.comment),
            request.expected_version,
            documents=_documents(request.documents),
        )
        return dossier_pb2.SubmitSupplementResponse(dossier=self._dossier(dossier))

    def WithdrawDossier(
        self, request: dossier_pb2.WithdrawDossierRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.WithdrawDossierResponse:
        dossier = self._service.transition(
            current_principal(),
            request.code,
            "withdraw",
            validate_comment("reason", request.reason),
            request.expected_version,
        )
        return dossier_pb2.WithdrawDossierResponse(dossier=self._dossier(dossier))

    def ListProcedures(
        self, request: dossier_pb2.ListProceduresRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.ListProceduresResponse:
        current_principal()
        catalogue = self._service.catalogue
        return dossier_pb2.ListProceduresResponse(
            procedures=[
                procedure_to_proto(p, catalogue.agency(p.agency_code).name)
                for p in self._service.procedures(request.agency_code)
            ]
        )

    def GetProcedure(
        self, request: dossier_pb2.GetProcedureRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.GetProcedureResponse:
        current_principal()
        p = self._service.procedure(request.code)
        agency = self._service.catalogue.agency(p.agency_code).name
        return dossier_pb2.GetProcedureResponse(procedure=procedure_to_proto(p, agency))

    def GetStatistics(
        self, request: dossier_pb2.GetStatisticsRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.GetStatisticsResponse:
        stats = self._service.statistics(
            current_principal(),
            request.agency_code,
            request.procedure_code,
            request.from_date,
            request.to_date,
        )
        return dossier_pb2.GetStatisticsResponse(
            received=stats.received,
            early=stats.early,
            on_time=stats.on_time,
            late=stats.late,
            in_progress=stats.in_progress,
            on_time_ratio=stats.on_time_ratio,
        )
