"""gRPC adapter: protobuf requests → use cases → protobuf responses. No rules live here.

Who may call what: reading proofs, heads and public keys is open to every authenticated
caller (they reveal hashes only); entry contents are for admins and services (any entry) and
officers (their agency's dossier trails); recording an access is for officers, admins and
services; signing a head on demand is for admins and services.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

import grpc
from cryptography.hazmat.primitives import serialization

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.common.v1 import common_pb2
from motcua_audit.adapters.db import StoredEntry
from motcua_audit.domain.access import validate_access
from motcua_audit.domain.entry import Actor, EntryKind, Role
from motcua_audit.domain.merkle import HASH_SIZE
from motcua_audit.domain.tree_head import SignedTreeHead, public_key_to_pem
from motcua_kit.auth import current_principal
from motcua_kit.errors import InvalidArgument, PermissionDenied
from motcua_kit.proto import timestamp
from motcua_kit.text import is_ascii_number

if TYPE_CHECKING:
    from motcua_audit.service import AuditService

DEFAULT_PAGE = 100
MAX_PAGE = 1000

_KIND = {EntryKind.EVENT: audit_pb2.ENTRY_KIND_EVENT, EntryKind.ACCESS: audit_pb2.ENTRY_KIND_ACCESS}
_ROLE = {
    Role.UNKNOWN: common_pb2.ROLE_UNSPECIFIED,
    Role.CITIZEN: common_pb2.ROLE_CITIZEN,
    Role.OFFICER: common_pb2.ROLE_OFFICER,
    Role.ADMIN: common_pb2.ROLE_ADMIN,
    Role.SERVICE: common_pb2.ROLE_SERVICE,
}


def head_to_proto(signed: SignedTreeHead) -> audit_pb2.SignedTreeHead:
    h = signed.head
    return audit_pb2.SignedTreeHead(
        tree_size=h.size,
        root_hash=h.root_hash,
        timestamp_ms=h.timestamp_ms,
        key_id=h.key_id,
        signature=signed.signature,
    )


def entry_to_proto(
    stored: StoredEntry, proof: audit_pb2.InclusionProof | None = None
) -> audit_pb2.AuditEntry:
    """Every field from the canonical bytes (the source of truth), plus the bytes themselves."""
    e = stored.entry
    return audit_pb2.AuditEntry(
        index=stored.index,
        event_id=e.event_id,
        event_type=e.event_type,
        event_source=e.event_source,
        event_time=timestamp(e.event_time),
        dossier_code=e.dossier_code,
        payload_sha256=e.payload_sha256.hex(),
        recorded_at=timestamp(e.recorded_at),
        topic=e.topic,
        kind=_KIND[e.kind],
        actor=common_pb2.Actor(
            subject=e.actor.subject, role=_ROLE[e.actor.role], agency_code=e.actor.agency_code
        ),
        canonical_entry=stored.canonical,
        leaf_hash=stored.leaf_hash,
        purpose=e.purpose,
        resource=e.resource,
        citizen_ref=e.citizen_ref,
        event_subject=e.event_subject,
        inclusion_proof=proof,
    )


_ROLE_OF = {v: k for k, v in _ROLE.items()}


def role_from_proto(role: int) -> Role:
    return _ROLE_OF.get(role, Role.UNKNOWN)


def actor_from_proto(actor: common_pb2.Actor) -> Actor:
    return Actor(actor.subject, role_from_proto(actor.role), actor.agency_code)


class AuditApi(audit_pb2_grpc.AuditServiceServicer):
    """AuditService over gRPC."""

    def __init__(self, service: AuditService) -> None:
        self._service = service

    def GetDossierTrail(
        self, request: audit_pb2.GetDossierTrailRequest, context: grpc.ServicerContext
    ) -> audit_pb2.GetDossierTrailResponse:
        principal = current_principal()
        principal.require_any("officer", "admin", "service")
        code = request.dossier_code.strip()
        if not code:
            raise InvalidArgument("dossier_code", "is required")
        if not principal.has_any("admin", "service") and (
            code.split("-", 1)[0] != principal.agency_code
        ):
            raise PermissionDenied("an officer reads only the trails of their own agency")
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
        principal.require_any("officer", "admin", "service")
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
        current_principal().require_any("admin", "service")
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
        current_principal().require_any("admin", "service")
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
            keys=[
                audit_pb2.PublicKey(
                    key_id=k.key_id,
                    raw=k.key.public_bytes(
                        serialization.Encoding.Raw, serialization.PublicFormat.Raw
                    ),
                    pem=public_key_to_pem(k.key).decode("ascii"),
                    current=k.current,
                )
                for k in self._service.key_ring.published()
            ]
        )
