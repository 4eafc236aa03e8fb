"""The audit service: records every motcua event once, and serves each dossier's trail."""

from __future__ import annotations

from typing import ClassVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.orm import Session

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.dossier.v1 import events_pb2
from motcua_audit.adapters import db
from motcua_audit.settings import AuditSettings
from motcua_kit.auth import current_principal
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument, PermissionDenied
from motcua_kit.grpc_server import Registration
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler

DOSSIER_TOPIC = "motcua.dossier.v1"
DOSSIER_SUBMITTED = "vn.motcua.dossier.submitted.v1"


def _ts(value: object) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


class AuditService(Service):
    """Consumes every event topic; each event becomes one entry, however often delivered."""

    name = "audit"
    settings_class = AuditSettings
    metadata = db.metadata
    inbox_table = db.inbox
    migrations = "motcua_audit:migrations"
    publishes: ClassVar[tuple[str, ...]] = ()

    entries: Dependency[db.EntryRepository] = Dependency(lambda ctx: db.EntryRepository())
    context: Dependency[ServiceContext] = Dependency(lambda ctx: ctx)

    @event_handler(DOSSIER_TOPIC)
    @event_handler(DOSSIER_TOPIC, DOSSIER_SUBMITTED, events_pb2.DossierSubmitted)
    def record_dossier_event(self, event: Event, message: Message | None, session: Session) -> None:
        """A dossier event: append it to the log (the inbox makes it once per event id).

        Known types must parse as their documented message, so garbage claiming to be a
        dossier event goes to the dead-letter topic instead of into the trail; types this
        version does not know yet are still recorded, by digest.
        """
        self.entries.append(session, DOSSIER_TOPIC, event)

    def grpc_services(self) -> list[tuple[str, Registration]]:
        api = AuditApi(self)
        return [
            (
                "motcua.audit.v1.AuditService",
                lambda server: audit_pb2_grpc.add_AuditServiceServicer_to_server(api, server),
            )
        ]


class AuditApi(audit_pb2_grpc.AuditServiceServicer):
    """AuditService over gRPC: officers, admins and services read trails."""

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
        with self._service.context.sessions() as session:
            trail = self._service.entries.trail(session, code)
        return audit_pb2.GetDossierTrailResponse(
            entries=[
                audit_pb2.AuditEntry(
                    index=e.index,
                    event_id=e.event_id,
                    event_type=e.event_type,
                    event_source=e.event_source,
                    event_time=_ts(e.event_time),
                    dossier_code=e.dossier_code,
                    payload_sha256=e.payload_sha256,
                    recorded_at=_ts(e.recorded_at),
                    topic=e.topic,
                )
                for e in trail
            ]
        )
