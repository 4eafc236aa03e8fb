"""gRPC adapter: protobuf requests → domain calls → protobuf responses. No rules live here.

Requests are parsed and validated here; responses are built by :mod:`.messages`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import grpc

from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_dossier import documents
from motcua_dossier.adapters.db import DossierQuery
from motcua_dossier.adapters.messages import (
    dossier_to_proto,
    issued_document_to_proto,
    procedure_name_of,
    procedure_to_proto,
    statistics_response,
)
from motcua_dossier.domain.dossier import (
    Applicant,
    Document,
    DocumentInput,
    Dossier,
    normalise_text,
    validate_comment,
    validate_submission,
)
from motcua_kit import text
from motcua_kit.auth import current_principal
from motcua_kit.errors import InvalidArgument
from motcua_kit.grpc_server import malformed_field

if TYPE_CHECKING:
    from motcua_dossier.service import DossierService

MAX_PAGE = 100
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        principal = current_principal()
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
        query = DossierQuery(
            applicant_citizen_id=request.applicant_citizen_id.strip(),
            agency_code=request.agency_code.strip(),
            status=int(request.status),
            procedure_code=request.procedure_code.strip(),
            applicant_name=normalise_text(request.applicant_name),
            overdue_only=request.overdue_only,
            page_size=request.page_size or 20,
        )
        items, token = self._service.list_dossiers(principal, query, request.page_token)
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
        return statistics_response(stats)

    # -- signed documents (ADR 0086) ------------------------------------------------------------
    def ReturnResult(
        self,
        request_iterator: Iterator[dossier_pb2.ReturnResultRequest],
        context: grpc.ServicerContext,
    ) -> dossier_pb2.ReturnResultResponse:
        principal = current_principal()
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("header", "the first message must be the header")
        upload = self._upload_header(first.header)
        documents.check_result_caller(self._service, principal, upload.code)
        data = bytearray()
        for i, message in enumerate(request_iterator, start=1):
            if message.WhichOneof("part") != "chunk":
                raise InvalidArgument(f"chunk[{i}]", "only the first message is the header")
            if len(message.chunk) > documents.MAX_UPLOAD_CHUNK:
                raise InvalidArgument(f"chunk[{i}]", "a chunk is at most 1 MiB")
            data += message.chunk
            if len(data) > upload.size_bytes:
                raise InvalidArgument(
                    "size_bytes", f"is {upload.size_bytes} but more bytes were sent"
                )
        dossier, document = documents.return_result(self._service, principal, upload, bytes(data))
        return dossier_pb2.ReturnResultResponse(
            dossier=self._dossier(dossier), document=issued_document_to_proto(document)
        )

    def _upload_header(self, h: dossier_pb2.ReturnResultHeader) -> documents.ResultUpload:
        """The header, field by field: the first problem is refused naming its field."""
        bad = malformed_field(h)
        if bad:
            raise InvalidArgument(f"header.{bad[0]}", bad[1])
        code = h.code.strip()
        if not code:
            raise InvalidArgument("code", "is required")
        if h.expected_version <= 0:
            raise InvalidArgument("expected_version", "is required (the version you last read)")
        filename = text.free_text("filename", h.filename, max_len=200, required=True)
        if "/" in filename or "\\" in filename or not filename.lower().endswith(".pdf"):
            raise InvalidArgument("filename", "must be a file name ending in .pdf, without a path")
        if h.media_type.strip().lower() != documents.PDF:
            raise InvalidArgument("media_type", "must be application/pdf")
        limit = self._service.settings.result_max_bytes
        if not 0 < h.size_bytes <= limit:
            raise InvalidArgument("size_bytes", f"must be between 1 and {limit} bytes")
        if not _SHA256.fullmatch(h.sha256):
            raise InvalidArgument("sha256", "must be 64 lower-case hexadecimal characters")
        return documents.ResultUpload(
            code=code,
            expected_version=h.expected_version,
            comment=validate_comment("comment", h.comment),
            filename=filename,
            size_bytes=h.size_bytes,
            sha256=h.sha256,
        )

    def ListDocuments(
        self, request: dossier_pb2.ListDocumentsRequest, context: grpc.ServicerContext
    ) -> dossier_pb2.ListDocumentsResponse:
        found = documents.list_documents(self._service, current_principal(), request.code)
        return dossier_pb2.ListDocumentsResponse(
            documents=[issued_document_to_proto(d) for d in found]
        )

    def GetDocument(
        self, request: dossier_pb2.GetDocumentRequest, context: grpc.ServicerContext
    ) -> Iterator[dossier_pb2.GetDocumentResponse]:
        # Everything is decided before the first message; the kit's interceptors hold the
        # principal and map refusals until the stream ends.
        document = documents.get_document(self._service, current_principal(), request.document_id)
        first = dossier_pb2.GetDocumentResponse(document=issued_document_to_proto(document))
        return iter(
            [
                first,
                *(
                    dossier_pb2.GetDocumentResponse(chunk=c)
                    for c in documents.chunks(document.content)
                ),
            ]
        )
