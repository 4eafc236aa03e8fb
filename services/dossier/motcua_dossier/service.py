"""The dossier service: intake and processing of dossiers, declared for the service host.

Use cases take an authenticated :class:`~motcua_kit.auth.Principal` and domain values, run in
one transaction (state change + outbox event), and return domain objects; the gRPC adapter
translates at the edge, the domain decides (authorisation in :mod:`.domain.access`), the
repository persists and :mod:`.adapters.messages` builds the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua.payment.v1 import events_pb2 as payment_events_pb2
from motcua_dossier import deadlines, documents, events, payments
from motcua_dossier.adapters import db, messages
from motcua_dossier.adapters.grpc_api import DossierApi
from motcua_dossier.domain import paging
from motcua_dossier.domain.access import authorise_submit, listing_scope, may_see, statistics_agency
from motcua_dossier.domain.calendar import WorkingCalendar
from motcua_dossier.domain.catalogue import Catalogue, Procedure, UnknownProcedure
from motcua_dossier.domain.dossier import Actor, Document, Dossier, Status, Submission, key_reused
from motcua_dossier.domain.forms import IssuedDocument
from motcua_dossier.domain.lifecycle import (
    AppliedAction,
    acting_role,
    apply_action,
    check_action_applies,
    check_action_request,
    completion_outcome,
    file_dossier,
)
from motcua_dossier.domain.statistics import Statistics, receipt_period, tally
from motcua_dossier.domain.workflow import Workflow
from motcua_dossier.metrics import COMPLETED, DOSSIERS
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import Aborted, InvalidArgument, NotFound
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler, timer


def _catalogue(ctx: ServiceContext[DossierSettings]) -> Catalogue:
    return Catalogue.load(ctx.settings.reference_data_dir, event_of=events.action_event)


def _calendar(ctx: ServiceContext[DossierSettings]) -> WorkingCalendar:
    return WorkingCalendar.load(ctx.settings.reference_data_dir, timezone=ctx.settings.timezone)


class DossierService(Service[DossierSettings]):
    """Intake and processing of dossiers (hồ sơ thủ tục hành chính)."""

    name = "dossier"
    metadata = db.metadata
    outbox_table = db.outbox
    inbox_table = db.inbox
    migrations = "motcua_dossier:migrations"
    publishes = (events.TOPIC,)

    catalogue: Dependency[Catalogue] = Dependency(_catalogue)
    calendar: Dependency[WorkingCalendar] = Dependency(_calendar)
    repository: Dependency[db.DossierRepository] = Dependency(lambda ctx: db.DossierRepository())
    papers: Dependency[documents.Papers] = Dependency(lambda ctx: documents.Papers(ctx.settings))

    def on_start(self) -> None:
        """With a keyring, every agency that receives dossiers must have a key (ADR 0086)."""
        self.papers.check(self.catalogue)

    def grpc_services(self) -> list[tuple[str, Registration]]:
        api = DossierApi(self)
        return [
            registration(
                dossier_pb2,
                "DossierService",
                dossier_pb2_grpc.add_DossierServiceServicer_to_server,
                api,
            )
        ]

    def _local_day(self, moment: datetime) -> date:
        return moment.astimezone(ZoneInfo(self.settings.timezone)).date()

    # -- intake ------------------------------------------------------------------------------
    def submit(self, principal: Principal, submission: Submission) -> tuple[Dossier, bool]:
        """File a dossier; returns (dossier, replayed). Idempotent on the client's key."""
        try:
            procedure = self.catalogue.procedure(submission.procedure_code)
        except UnknownProcedure:
            raise InvalidArgument(
                "procedure_code", f"unknown procedure {submission.procedure_code!r}"
            ) from None
        authorise_submit(principal, submission, procedure.agency_code)
        submitted_by = Actor(principal.subject, principal.primary_role, principal.agency_code)

        def create(session: Session, scope: str) -> Dossier:
            now = self.clock()
            local_day = self._local_day(now)
            dossier = file_dossier(
                submission,
                procedure,
                local_day=local_day,
                sequence=self.repository.next_sequence(session, procedure.agency_code, local_day),
                now=now,
                appointment_date=self.calendar.appointment_date(now, procedure.processing_days),
                submitted_by=submitted_by,
            )
            self.repository.add(session, dossier, scope)
            self.publish(session, events.SUBMITTED, dossier.code, messages.submitted(dossier), now)
            return dossier

        return self.idempotent(
            f"{principal.subject}\x1f{submission.idempotency_key}",
            submission.fingerprint(),
            find=lambda session, scope: (
                (d, d.idempotency_fingerprint)
                if (d := self.repository.by_idempotency_scope(session, scope)) is not None
                else None
            ),
            create=create,
            refuse=key_reused,
        )

    # -- reading -----------------------------------------------------------------------------
    def get(self, principal: Principal, code: str) -> Dossier:
        """One dossier, if the caller may see it (others look like it does not exist)."""
        code = code.strip()
        if not code:
            raise InvalidArgument("code", "is required")
        with self.context.sessions() as session:
            dossier = self.repository.get(session, code)
        if dossier is None or not may_see(principal, dossier):
            raise NotFound(f"dossier {code} not found")
        return dossier

    def list_dossiers(
        self, principal: Principal, query: db.DossierQuery, page_token: str
    ) -> tuple[list[Dossier], str]:
        """A page of the dossiers the caller may see, matching the filters."""
        agency, citizen = listing_scope(principal, query.agency_code, query.applicant_citizen_id)
        query = replace(query, agency_code=agency, applicant_citizen_id=citizen)
        fingerprint = paging.fingerprint(replace(query, after=None))
        if page_token:
            query = replace(query, after=paging.decode_token(page_token, fingerprint))
        today = self._local_day(self.clock())
        with self.context.sessions() as session:
            items, last = self.repository.search(session, query, today)
        token = paging.encode_token(last, fingerprint) if last else ""
        return items, token

    def procedures(self, agency_code: str) -> list[Procedure]:
        agency = agency_code.strip()
        if agency:
            try:
                self.catalogue.agency(agency)
            except KeyError:
                raise InvalidArgument("agency_code", f"unknown agency {agency!r}") from None
        return list(self.catalogue.procedures(agency or None))

    def procedure(self, code: str) -> Procedure:
        if not code.strip():
            raise InvalidArgument("code", "is required")
        try:
            return self.catalogue.procedure(code.strip())
        except UnknownProcedure:
            raise NotFound(f"procedure {code.strip()} not found") from None

    def statistics(
        self, principal: Principal, agency_code: str, procedure_code: str, start: str, end: str
    ) -> Statistics:
        """Received / early / on time / late / in progress for a period of receipt."""
        agency = statistics_agency(principal, agency_code.strip())
        received_from, received_before = receipt_period(start, end, self.settings.timezone)
        query = db.StatisticsQuery(
            agency_code=agency,
            procedure_code=procedure_code.strip(),
            received_from=received_from,
            received_before=received_before,
        )
        with self.context.sessions() as session:
            rows = self.repository.for_statistics(session, query)
        return tally(rows, self.calendar)

    # -- changing state ----------------------------------------------------------------------
    def transition(
        self,
        principal: Principal,
        code: str,
        action: str,
        comment: str,
        expected_version: int,
        documents: tuple[Document, ...] = (),
        result: IssuedDocument | None = None,
    ) -> Dossier:
        """Apply a workflow action for the caller, checking the version they last read; the
        signed papers it issues (and ReturnResult's ``result``) are stored with it."""
        code, action = code.strip(), action.strip()
        check_action_request(code, action, expected_version)
        with transaction(self.context.sessions) as session:
            dossier = self.repository.get(session, code)
            if dossier is None or not may_see(principal, dossier):
                raise NotFound(f"dossier {code} not found")
            workflow = self._workflow(dossier)
            check_action_applies(dossier, workflow, action, expected_version)
            role = acting_role(principal.roles, workflow, action)
            actor = Actor(principal.subject, role, principal.agency_code)
            done, event = self.apply(dossier, action, actor, comment, self.clock(), documents)
            papers = self.papers.for_action(self, session, done, result)
            self.save(session, done.dossier, dossier.version)
            issued = self.papers.store(self, session, done.dossier, papers)
            self.publish_events(session, [event, *issued])
        self.count_completion(done)
        return done.dossier

    def _workflow(self, dossier: Dossier) -> Workflow:
        procedure = self.catalogue.procedure(dossier.procedure_code)
        return self.catalogue.workflow(procedure.workflow_id)

    def save(self, session: Session, dossier: Dossier, expected_version: int) -> None:
        """Write a changed dossier, refused when someone changed it since it was read."""
        if not self.repository.update(session, dossier, expected_version):
            current = self.repository.get(session, dossier.code)
            version = current.version if current else "unknown"
            raise Aborted(
                f"dossier {dossier.code} changed concurrently (now at version {version}); "
                "re-read it and retry"
            )

    def apply(
        self,
        dossier: Dossier,
        action: str,
        actor: Actor,
        comment: str,
        now: datetime,
        documents: tuple[Document, ...] = (),
    ) -> tuple[AppliedAction, Event]:
        """Apply a workflow action in memory: the transition and the event it publishes."""
        procedure = self.catalogue.procedure(dossier.procedure_code)
        workflow = self.catalogue.workflow(procedure.workflow_id)
        done = apply_action(
            dossier,
            workflow,
            action,
            actor,
            comment=comment,
            now=now,
            calendar=self.calendar,
            processing_days=procedure.processing_days,
            documents=documents,
        )
        event_type = workflow.table.row(int(done.previous_status), action).event
        message = messages.status_changed(done, action, actor, now)
        return done, self.event(event_type, dossier.code, message, now)

    def count_completion(self, done: AppliedAction) -> None:
        if done.dossier.status == Status.PROCESSED:
            outcome = completion_outcome(done.dossier, self.calendar)
            if outcome:
                COMPLETED.labels(done.dossier.agency_code, outcome).inc()

    def publish(
        self, session: Session, event_type: str, subject: str, message: Message, time: datetime
    ) -> None:
        """The kit's publish, with the procedure's name filled in (:func:`.messages.fill_names`)."""
        messages.fill_names(message, self.catalogue)
        super().publish(session, event_type, subject, message, time)

    def event(self, event_type: str, code: str, message: Message, now: datetime) -> Event:
        """A dossier event, with the procedure's and agency's names filled in."""
        return messages.event(self.catalogue, event_type, code, message, now)

    # -- reacting to other services ------------------------------------------------------------
    @event_handler(
        events.PAYMENT_TOPIC,
        events.PAYMENT_REQUESTED,
        payment_events_pb2.PaymentEvent,
        batch="on_payment_events",
    )
    def on_payment_requested(self, event: Event, message: Message | None, session: Session) -> None:
        """A payment was opened for a dossier: remember it if it is for the fee asked."""
        self.on_payment_events([(event, message)], session)

    @event_handler(
        events.PAYMENT_TOPIC,
        events.PAYMENT_SUCCEEDED,
        payment_events_pb2.PaymentEvent,
        batch="on_payment_events",
    )
    def on_payment_succeeded(self, event: Event, message: Message | None, session: Session) -> None:
        """The fee is paid: the dossier leaves "payment required", once, and only for a
        payment of its own open fee request; any other success is refused and recorded."""
        self.on_payment_events([(event, message)], session)

    def on_payment_events(
        self, received: Sequence[tuple[Event, Message | None]], session: Session
    ) -> None:
        """The two handlers above for a batch of payment events, in order
        (:func:`.payments.on_payment_events`)."""
        payments.on_payment_events(self, received, session)

    # -- timers ------------------------------------------------------------------------------
    @timer("deadline_scan_seconds")
    def scan_deadlines(self) -> int:
        """Emit due-soon and overdue events, once each per dossier; returns how many
        (:func:`.deadlines.scan_deadlines`)."""
        return deadlines.scan_deadlines(self, self._local_day(self.clock()))

    @timer("gauge_refresh_seconds")
    def refresh_gauges(self) -> None:
        """Dossiers by agency and state, for dashboards."""
        with self.context.sessions() as session:
            for agency, status, count in self.repository.count_by_state(session):
                DOSSIERS.labels(agency, str(status)).set(count)
