"""gRPC adapter: protobuf requests → use cases → protobuf responses. No rules live here.

Who may call what is :mod:`motcua_audit.domain.permissions`' (every call needs an
authenticated caller); responses are built by :mod:`.messages`.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

import grpc

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua_audit.adapters.messages import (
    actor_from_proto,
    entry_to_proto,
    head_to_proto,
    public_keys_to_proto,
)
from motcua_audit.domain import permissions
from motcua_audit.domain.access import validate_access
from motcua_audit.domain.documents import is_sha256_hex
from motcua_audit.domain.merkle import HASH_SIZE
from motcua_kit.auth import current_principal
from motcua_kit.errors import InvalidArgument
from motcua_kit.text import is_ascii_number

if TYPE_CHECKING:
    from motcua_audit.service import AuditService

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class AuditApi(audit_pb2_grpc.AuditServiceServicer):
    """AuditService over gRPC."""

    def __init__(self, service: AuditService) -> None:
        self._service = service

    def GetDossierTrail(
        self, request: audit_pb2.GetDossierTrailRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetDossierTrailResponse:
        principal = current_principal()
        permissions.require_recorder(principal)
        code = request.dossier_code.strip()
        if not code:
            raise InvalidArgument("dossier_code", "is required")
        permissions.check_trail_agency(principal, code)
        trail, head = self._service.dossier_trail(code)
        size = head.head.size
        return audit_pb2.GetDossierTrailResponse(
            entries=[
                entry_to_proto(
                    stored,
                    audit_pb2.InclusionProof(
                        leaf_index=stored.index, tree_size=size, audit_path=path
                    ),
                )
                for stored, path in trail
            ],
            tree_head=head_to_proto(head),
        )

    def RecordAccess(
        self, request: audit_pb2.RecordAccessRequest, context: grpc.ServicerContext
    ) -> audit_pb2.RecordAccessResponse:
        principal = current_principal()
        permissions.require_recorder(principal)
        record = validate_access(
            record_id=request.record_id,
            citizen_id=request.citizen_id,
            dossier_code=request.dossier_code,
            purpose=request.purpose,
            resource=request.resource,
            on_behalf_of=(
                actor_from_proto(request.on_behalf_of) if request.HasField("on_behalf_of") else None
            ),
            accessed_at=(
                request.accessed_at.ToDatetime(tzinfo=UTC)
                if request.HasField("accessed_at")
                else None
            ),
            now=self._service.clock(),
        )
        stored, replayed = self._service.record_access(principal, record)
        return audit_pb2.RecordAccessResponse(entry=entry_to_proto(stored), replayed=replayed)

    def GetTreeHead(
        self, request: audit_pb2.GetTreeHeadRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetTreeHeadResponse:
        current_principal()
        return audit_pb2.GetTreeHeadResponse(
            tree_head=head_to_proto(self._service.latest_tree_head())
        )

    def SignTreeHead(
        self, request: audit_pb2.SignTreeHeadRequest, context: grpc.ServicerContext
    ) -> audit_pb2.SignTreeHeadResponse:
        permissions.require_operator(current_principal())
        return audit_pb2.SignTreeHeadResponse(
            tree_head=head_to_proto(self._service.sign_tree_head())
        )

    def GetInclusionProof(
        self, request: audit_pb2.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetInclusionProofResponse:
        current_principal()
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidArgument("index", "index or leaf_hash is required")
        if target == "leaf_hash" and len(request.leaf_hash) != HASH_SIZE:
            raise InvalidArgument("leaf_hash", "must be 32 bytes")
        proof = self._service.inclusion_proof(
            index=request.index if target == "index" else None,
            leaf_hash=request.leaf_hash if target == "leaf_hash" else None,
            tree_size=request.tree_size,
        )
        return audit_pb2.GetInclusionProofResponse(
            proof=audit_pb2.InclusionProof(
                leaf_index=proof.index, tree_size=proof.tree_size, audit_path=proof.path
            ),
            leaf_hash=proof.leaf_hash,
            tree_head=head_to_proto(proof.head) if proof.head is not None else None,
        )

    def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetConsistencyProofResponse:
        current_principal()
        first, second, proof, head = self._service.consistency_proof(
            request.first_size, request.second_size
        )
        return audit_pb2.GetConsistencyProofResponse(
            first_size=first,
            second_size=second,
            proof=proof,
            tree_head=head_to_proto(head) if head is not None else None,
        )

    def GetEntries(
        self, request: audit_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetEntriesResponse:
        permissions.require_operator(current_principal())
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"must be in [0, {MAX_PAGE}] (0: {DEFAULT_PAGE})")
        if request.start_index < 0:
            raise InvalidArgument("start_index", "must not be negative")
        if request.end_index < 0:
            raise InvalidArgument("end_index", "must not be negative (0: the log size)")
        if request.end_index and request.end_index < request.start_index:
            raise InvalidArgument("end_index", "must not be below start_index")
        start = request.start_index
        if request.page_token:
            # int() alone would take " 7", "+7", "1_0" and "٧": none is a token this API issued.
            if not is_ascii_number(request.page_token):
                raise InvalidArgument("page_token", "is not a token this API returned")
            start = int(request.page_token)
            if start < request.start_index or (request.end_index and start > request.end_index):
                raise InvalidArgument("page_token", "does not belong to this range")
        listed, stop, end, size = self._service.entry_page(
            start, request.end_index, request.page_size or DEFAULT_PAGE
        )
        return audit_pb2.GetEntriesResponse(
            entries=[entry_to_proto(e) for e in listed],
            next_page_token=str(stop) if stop < end else "",
            tree_size=size,
        )

    def GetPublicKeys(
        self, request: audit_pb2.GetPublicKeysRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetPublicKeysResponse:
        current_principal()
        return audit_pb2.GetPublicKeysResponse(
            keys=public_keys_to_proto(self._service.key_ring.published())
        )

    def GetDocumentProof(
        self, request: audit_pb2.GetDocumentProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetDocumentProofResponse:
        current_principal()  # any authenticated caller: see domain/permissions.py
        if not is_sha256_hex(request.sha256):
            raise InvalidArgument(
                "sha256", "must be 64 lower-case hex digits (the SHA-256 of the document's bytes)"
            )
        found = self._service.document_proof(request.sha256)
        return audit_pb2.GetDocumentProofResponse(
            entry=entry_to_proto(
                found.entry,
                audit_pb2.InclusionProof(
                    leaf_index=found.entry.index,
                    tree_size=found.head.head.size,
                    audit_path=found.path,
                ),
            ),
            tree_head=head_to_proto(found.head),
        )
