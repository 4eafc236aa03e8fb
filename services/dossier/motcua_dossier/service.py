"""The dossier service: intake of dossiers (use cases), declared for the service host.

Use cases take an authenticated :class:`~motcua_kit.auth.Principal` and domain objects, run
in one transaction (state change + outbox event), and return domain objects; the gRPC
adapter translates at the edge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError

from motcua.dossier.v1 import dossier_pb2_grpc, events_pb2
from motcua_dossier import events
from motcua_dossier.adapters import db
from motcua_dossier.adapters.grpc_api import DossierApi, dossier_to_proto
from motcua_dossier.domain.calendar import WorkingCalendar
from motcua_dossier.domain.catalogue import Catalogue, Procedure, UnknownProcedure
from motcua_dossier.domain.dossier import Actor, Dossier, Status, Submission, dossier_code
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from motcua_kit.grpc_server import Registration
from motcua_kit.service import Dependency, Service, ServiceContext


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def system_clock() -> datetime:
    return datetime.now(UTC)


def _catalogue(ctx: ServiceContext) -> Catalogue:
    assert isinstance(ctx.settings, DossierSettings)
    return Catalogue.load(ctx.settings.reference_data_dir)


def _calendar(ctx: ServiceContext) -> WorkingCalendar:
    assert isinstance(ctx.settings, DossierSettings)
    return WorkingCalendar.load(ctx.settings.reference_data_dir)


class DossierService(Service):
    """Intake and processing of dossiers (hồ sơ thủ tục hành chính)."""

    name = "dossier"
    settings_class = DossierSettings
    metadata = db.metadata
    outbox_table = db.outbox
    inbox_table = db.inbox
    migrations = "motcua_dossier:migrations"
    publishes: ClassVar[tuple[str, ...]] = (events.TOPIC,)

    catalogue: Dependency[Catalogue] = Dependency(_catalogue)
    calendar: Dependency[WorkingCalendar] = Dependency(_calendar)
    clock: Dependency[Clock] = Dependency(lambda ctx: system_clock)
    repository: Dependency[db.DossierRepository] = Dependency(lambda ctx: db.DossierRepository())
    context: Dependency[ServiceContext] = Dependency(lambda ctx: ctx)

    def grpc_services(self) -> list[tuple[str, Registration]]:
        api = DossierApi(self)
        return [
            (
                "motcua.dossier.v1.DossierService",
                lambda server: dossier_pb2_grpc.add_DossierServiceServicer_to_server(api, server),
            )
        ]

    # -- use cases ---------------------------------------------------------------------------
    def submit(self, principal: Principal, submission: Submission) -> tuple[Dossier, bool]:
        """File a dossier; returns (dossier, replayed). Idempotent on the client's key."""
        try:
            procedure = self.catalogue.procedure(submission.procedure_code)
        except UnknownProcedure:
            raise InvalidArgument(
                "procedure_code", f"unknown procedure {submission.procedure_code!r}"
            ) from None
        self._authorise_submit(principal, submission, procedure.agency_code)
        scope = f"{principal.subject}\x1f{submission.idempotency_key}"
        fingerprint = submission.fingerprint()
        for attempt in (1, 2):
            try:
                return self._submit_once(principal, submission, procedure, scope, fingerprint)
            except IntegrityError:
                if attempt == 2:
                    raise
                # A concurrent call with the same key won the race; the retry replays it.
        raise AssertionError("unreachable")

    def _submit_once(
        self,
        principal: Principal,
        submission: Submission,
        procedure: Procedure,
        scope: str,
        fingerprint: str,
    ) -> tuple[Dossier, bool]:
        ctx = self.context
        with transaction(ctx.sessions) as session:
            earlier = self.repository.by_idempotency_scope(session, scope)
            if earlier is not None:
                if earlier.idempotency_fingerprint != fingerprint:
                    raise AlreadyExists(
                        "idempotency_key was already used for a different submission "
                        f"(dossier {earlier.code}); use a new key for a new dossier"
                    )
                return earlier, True
            now = self.clock()
            local_day = now.astimezone(ZoneInfo(self._tz())).date()
            sequence = self.repository.next_sequence(session, procedure.agency_code, local_day)
            dossier = Dossier(
                code=dossier_code(procedure.agency_code, local_day, sequence),
                procedure_code=procedure.code,
                agency_code=procedure.agency_code,
                applicant=submission.applicant,
                documents=submission.documents,
                channel=submission.channel,
                status=Status.NEW,
                version=1,
                submitted_at=now,
                appointment_date=self.calendar.appointment_date(now, procedure.processing_days),
                fee_vnd=procedure.fee_vnd,
                submitted_by=Actor(
                    principal.subject, principal.primary_role, principal.agency_code
                ),
                idempotency_fingerprint=fingerprint,
            )
            self.repository.add(session, dossier, scope)
            assert ctx.outbox is not None
            ctx.outbox.add(
                session,
                events.TOPIC,
                Event.new(
                    source=events.SOURCE,
                    type=events.SUBMITTED,
                    subject=dossier.code,
                    message=events_pb2.DossierSubmitted(dossier=dossier_to_proto(dossier)),
                    time=now,
                ),
            )
        return dossier, False

    def get(self, principal: Principal, code: str) -> Dossier:
        """One dossier, if the caller may see it (others look like it does not exist)."""
        if not code.strip():
            raise InvalidArgument("code", "is required")
        with self.context.sessions() as session:
            dossier = self.repository.get(session, code.strip())
        if dossier is None or not self._may_see(principal, dossier):
            raise NotFound(f"dossier {code.strip()} not found")
        return dossier

    # -- rules of who may do what --------------------------------------------------------------
    def _tz(self) -> str:
        settings = self.context.settings
        return settings.timezone if isinstance(settings, DossierSettings) else "Asia/Ho_Chi_Minh"

    @staticmethod
    def _authorise_submit(principal: Principal, submission: Submission, agency: str) -> None:
        if principal.has_any("admin", "service"):
            return
        if "officer" in principal.roles:
            if principal.agency_code != agency:
                raise PermissionDenied(
                    f"an officer of {principal.agency_code or 'no agency'} cannot file "
                    f"for agency {agency}"
                )
            return
        if "citizen" in principal.roles:
            if principal.citizen_id != submission.applicant.citizen_id:
                raise PermissionDenied("a citizen can file only with their own citizen ID")
            return
        raise PermissionDenied("this call needs one of the roles: citizen, officer, admin, service")

    @staticmethod
    def _may_see(principal: Principal, dossier: Dossier) -> bool:
        if principal.has_any("admin", "service"):
            return True
        if "officer" in principal.roles and principal.agency_code == dossier.agency_code:
            return True
        return "citizen" in principal.roles and principal.citizen_id == dossier.applicant.citizen_id
