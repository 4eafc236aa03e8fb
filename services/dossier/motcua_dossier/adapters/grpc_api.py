"""gRPC adapter: protobuf requests → domain calls → protobuf responses. No rules live here."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_dossier.domain.dossier import (
    Applicant,
    DocumentInput,
    Dossier,
    validate_submission,
)
from motcua_kit.auth import current_principal

if TYPE_CHECKING:
    from motcua_dossier.service import DossierService

_ROLE = {
    "citizen": common_pb2.ROLE_CITIZEN,
    "officer": common_pb2.ROLE_OFFICER,
    "admin": common_pb2.ROLE_ADMIN,
    "service": common_pb2.ROLE_SERVICE,
}


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def dossier_to_proto(d: Dossier) -> dossier_pb2.Dossier:
    """The one mapping from the domain dossier to its contract (API and events alike)."""
    msg = dossier_pb2.Dossier(
        code=d.code,
        procedure_code=d.procedure_code,
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
        submitted_at=_timestamp(d.submitted_at),
        appointment_date=d.appointment_date.isoformat(),
        submitted_by=common_pb2.Actor(
            subject=d.submitted_by.subject,
            role=_ROLE.get(d.submitted_by.role, common_pb2.ROLE_UNSPECIFIED),
            agency_code=d.submitted_by.agency_code,
        ),
    )
    if d.fee_vnd is not None:
        msg.fee_vnd = d.fee_vnd
    return msg


class DossierApi(dossier_pb2_grpc.DossierServiceServicer):
    """The DossierService gRPC API."""

    def __init__(self, service: DossierService) -> None:
        self._service = service

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
        return dossier_pb2.SubmitDossierResponse(
            dossier=dossier_to_proto(dossier), replayed=replayed
        )

    def GetDossier(
        self, request: dossier_pb2.GetDossierRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.GetDossierResponse:
        dossier = self._service.get(current_principal(), request.code)
        return dossier_pb2.GetDossierResponse(dossier=dossier_to_proto(dossier))
