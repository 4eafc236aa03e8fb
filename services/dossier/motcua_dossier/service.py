"""The dossier service: intake and processing of dossiers, declared for the service host.

Use cases take an authenticated :class:`~motcua_kit.auth.Principal` and domain values, run in
one transaction (state change + outbox event), and return domain objects; the gRPC adapter
translates at the edge, the domain decides, the repository persists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import ClassVar, Protocol
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc, events_pb2
from motcua.payment.v1 import events_pb2 as payment_events_pb2
from motcua_dossier import events
from motcua_dossier.adapters import db
from motcua_dossier.adapters.grpc_api import DossierApi, dossier_to_proto, fill_names, role_to_proto
from motcua_dossier.domain.calendar import WorkingCalendar
from motcua_dossier.domain.catalogue import Catalogue, Procedure, UnknownProcedure
from motcua_dossier.domain.dossier import (
    Actor,
    Document,
    Dossier,
    Status,
    Submission,
    dossier_code,
    normalise_text,
)
from motcua_dossier.domain.fee import PaymentClaim, PaymentRefusal, payment_refusal
from motcua_dossier.domain.lifecycle import (
    Transition,
    acting_role,
    apply_action,
    check_deadline,
    completion_outcome,
)
from motcua_dossier.domain.workflow import Workflow
from motcua_dossier.settings import DossierSettings
from motcua_kit.auth import Principal
from motcua_kit.db import on_commit, transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.proto import timestamp
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler, timer

log = logging.getLogger(__name__)

DOSSIERS = Gauge("motcua_dossiers", "Dossiers by agency and national status", ["agency", "state"])
COMPLETED = Counter(
    "motcua_dossiers_completed_total",
    "Dossiers processed, by agency and outcome (early, on_time, late)",
    ["agency", "outcome"],
)
PAYMENTS_REFUSED = Counter(
    "motcua_dossier_payments_refused_total",
    "Payment successes kept out of a dossier: not of its own open fee request, by reason",
    ["reason"],
)
TERMINAL = frozenset({Status.NOT_RECEIVED, Status.WITHDRAWN, Status.STOPPED})
PAYMENT_SERVICE = Actor("motcua-payment", "service", "")
SCANNER = Actor("motcua-dossier-deadlines", "service", "")
MAX_PAGE = 100


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def system_clock() -> datetime:
    return datetime.now(UTC)


def _catalogue(ctx: ServiceContext) -> Catalogue:
    assert isinstance(ctx.settings, DossierSettings)
    return Catalogue.load(ctx.settings.reference_data_dir)


def _calendar(ctx: ServiceContext) -> WorkingCalendar:
    assert isinstance(ctx.settings, DossierSettings)
    return WorkingCalendar.load(ctx.settings.reference_data_dir, timezone=ctx.settings.timezone)


@dataclass(frozen=True)
class Statistics:
    received: int
    early: int
    on_time: int
    late: int
    in_progress: int

    @property
    def on_time_ratio(self) -> float:
        done = self.early + self.on_time + self.late
        return (self.early + self.on_time) / done if done else 0.0


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
            registration(
                dossier_pb2,
                "DossierService",
                dossier_pb2_grpc.add_DossierServiceServicer_to_server,
                api,
            )
        ]

    @property
    def settings(self) -> DossierSettings:
        settings = self.context.settings
        assert isinstance(settings, DossierSettings)
        return settings

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
        self._authorise_submit(principal, submission, procedure.agency_code)
        scope = f"{principal.subject}\x1f{submission.idempotency_key}"
        fingerprint = submission.fingerprint()
        try:
            return self._submit_once(principal, submission, procedure, scope, fingerprint)
        except IntegrityError:
            # A concurrent call with the same key won the race; replay it.
            return self._submit_once(principal, submission, procedure, scope, fingerprint)

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
            local_day = self._local_day(now)
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
            self._publish(
                session,
                events.SUBMITTED,
                dossier.code,
                events_pb2.DossierSubmitted(dossier=dossier_to_proto(dossier)),
                now,
            )
        return dossier, False

    # -- reading -----------------------------------------------------------------------------
    def get(self, principal: Principal, code: str) -> Dossier:
        """One dossier, if the caller may see it (others look like it does not exist)."""
        code = code.strip()
        if not code:
            raise InvalidArgument("code", "is required")
        with self.context.sessions() as session:
            dossier = self.repository.get(session, code)
        if dossier is None or not self._may_see(principal, dossier):
            raise NotFound(f"dossier {code} not found")
        return dossier

    def list_dossiers(
        self, principal: Principal, request: dossier_pb2.ListDossiersRequest
    ) -> tuple[list[Dossier], str]:
        """A page of the dossiers the caller may see, matching the filters."""
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}")
        query = db.DossierQuery(
            applicant_citizen_id=request.applicant_citizen_id.strip(),
            agency_code=request.agency_code.strip(),
            status=int(request.status),
            procedure_code=request.procedure_code.strip(),
            applicant_name=normalise_text(request.applicant_name),
            overdue_only=request.overdue_only,
            page_size=request.page_size or 20,
        )
        if not principal.has_any("admin", "service"):
            if "officer" in principal.roles:
                if query.agency_code and query.agency_code != principal.agency_code:
                    raise PermissionDenied("an officer lists only their own agency's dossiers")
                query = _replace(query, agency_code=principal.agency_code)
            elif "citizen" in principal.roles:
                if query.applicant_citizen_id not in ("", principal.citizen_id):
                    raise PermissionDenied("a citizen lists only their own dossiers")
                query = _replace(query, applicant_citizen_id=principal.citizen_id)
            else:
                raise PermissionDenied("listing dossiers needs a role")
        fingerprint = hashlib.sha256(repr(_replace(query, after=None)).encode()).hexdigest()[:16]
        if request.page_token:
            query = _replace(query, after=_decode_token(request.page_token, fingerprint))
        today = self._local_day(self.clock())
        with self.context.sessions() as session:
            items, last = self.repository.search(session, query, today)
        token = _encode_token(last, fingerprint) if last else ""
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
        agency = agency_code.strip()
        if not principal.has_any("admin", "service"):
            if "officer" not in principal.roles:
                raise PermissionDenied("statistics are for officers, admins and services")
            if agency and agency != principal.agency_code:
                raise PermissionDenied("an officer sees only their own agency's statistics")
            agency = principal.agency_code
        tz = ZoneInfo(self.settings.timezone)
        first = _parse_date("from_date", start)
        last = _parse_date("to_date", end)
        if first and last and last < first:
            raise InvalidArgument("to_date", "must not be before from_date")
        query = db.StatisticsQuery(
            agency_code=agency,
            procedure_code=procedure_code.strip(),
            received_from=datetime.combine(first, time(), tz) if first else None,
            received_before=(
                datetime.combine(last + timedelta(days=1), time(), tz) if last else None
            ),
        )
        counts = {"early": 0, "on_time": 0, "late": 0}
        received = in_progress = 0
        with self.context.sessions() as session:
            rows = self.repository.for_statistics(session, query)
        for d in rows:
            received += 1
            outcome = completion_outcome(d, self.calendar)
            if outcome:
                counts[outcome] += 1
            elif d.status not in TERMINAL:
                in_progress += 1
        return Statistics(received, counts["early"], counts["on_time"], counts["late"], in_progress)

    # -- changing state ----------------------------------------------------------------------
    def transition(
        self,
        principal: Principal,
        code: str,
        action: str,
        comment: str,
        expected_version: int,
        documents: tuple[Document, ...] = (),
    ) -> Dossier:
        """Apply a workflow action for the caller, checking the version they last read."""
        code, action = code.strip(), action.strip()
        if not code:
            raise InvalidArgument("code", "is required")
        if not action:
            raise InvalidArgument("action", "is required")
        if expected_version <= 0:
            raise InvalidArgument("expected_version", "is required (the version you last read)")
        with transaction(self.context.sessions) as session:
            dossier = self.repository.get(session, code)
            if dossier is None or not self._may_see(principal, dossier):
                raise NotFound(f"dossier {code} not found")
            workflow = self._workflow(dossier)
            if action not in {a.name for a in workflow.actions}:
                known = ", ".join(a.name for a in workflow.actions)
                raise InvalidArgument("action", f"unknown action {action!r}; known: {known}")
            if dossier.version != expected_version:
                raise Aborted(
                    f"dossier {code} is at version {dossier.version}, not {expected_version}; "
                    "re-read it and retry"
                )
            role = acting_role(principal.roles, workflow, action)
            actor = Actor(principal.subject, role, principal.agency_code)
            done = self._apply(session, dossier, action, actor, comment, documents)
        self._count_completion(done)
        return done.dossier

    def _workflow(self, dossier: Dossier) -> Workflow:
        procedure = self.catalogue.procedure(dossier.procedure_code)
        return self.catalogue.workflow(procedure.workflow_id)

    def _apply(
        self,
        session: Session,
        dossier: Dossier,
        action: str,
        actor: Actor,
        comment: str,
        documents: tuple[Document, ...] = (),
    ) -> Transition:
        done, event = self._transition(dossier, action, actor, comment, self.clock(), documents)
        self._save(session, done.dossier, dossier.version)
        outbox = self.context.outbox
        assert outbox is not None
        outbox.add(session, events.TOPIC, event)
        return done

    def _save(self, session: Session, dossier: Dossier, expected_version: int) -> None:
        """Write a changed dossier, refused when someone changed it since it was read."""
        if not self.repository.update(session, dossier, expected_version):
            current = self.repository.get(session, dossier.code)
            version = current.version if current else "unknown"
            raise Aborted(
                f"dossier {dossier.code} changed concurrently (now at version {version}); "
                "re-read it and retry"
            )

    def _transition(
        self,
        dossier: Dossier,
        action: str,
        actor: Actor,
        comment: str,
        now: datetime,
        documents: tuple[Document, ...] = (),
    ) -> tuple[Transition, Event]:
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
        event = self._event(
            events.ACTION_EVENTS.get(action, events.STATUS_CHANGED),
            dossier.code,
            events_pb2.DossierStatusChanged(
                dossier=dossier_to_proto(done.dossier),
                previous_status=int(done.previous_status),
                action=action,
                actor=common_pb2.Actor(
                    subject=actor.subject,
                    role=role_to_proto(actor.role),
                    agency_code=actor.agency_code,
                ),
                comment=done.comment,
                occurred_at=timestamp(now),
            ),
            now,
        )
        return done, event

    def _count_completion(self, done: Transition) -> None:
        if done.dossier.status == Status.PROCESSED:
            outcome = completion_outcome(done.dossier, self.calendar)
            if outcome:
                COMPLETED.labels(done.dossier.agency_code, outcome).inc()

    def _publish(
        self, session: Session, event_type: str, code: str, message: Message, now: datetime
    ) -> None:
        outbox = self.context.outbox
        assert outbox is not None
        outbox.add(session, events.TOPIC, self._event(event_type, code, message, now))

    def _event(self, event_type: str, code: str, message: Message, now: datetime) -> Event:
        """A dossier event, with the procedure's and agency's names filled in."""
        fill_names(message, self.catalogue)
        return Event.new(
            source=events.SOURCE, type=event_type, subject=code, message=message, time=now
        )

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
        """The two handlers above for a batch of payment events, in order. The batch's
        dossiers (locked, in code order) and announced payments are read with one query each;
        announcements, settlements and events are written with one statement each, and each
        dossier that moved with one update."""
        claims = [(event, _claim(message)) for event, message in received]
        found = self.repository.get_many(session, sorted({e.subject for e, _c in claims}))
        announced = self.repository.fee_payments(session, [c.payment_id for _e, c in claims])
        now = self.clock()
        read_versions: dict[str, int] = {}
        new_claims: list[PaymentClaim] = []
        settled: list[str] = []
        published: list[Event] = []
        refusals: list[PaymentRefusal] = []
        for event, claim in claims:
            dossier = found.get(event.subject)
            if event.type == events.PAYMENT_REQUESTED:
                refused = payment_refusal(dossier, claim, announced=True)
                if refused is not None:
                    log.warning(
                        "payment %s announced for %s not taken: %s",
                        claim.payment_id,
                        event.subject,
                        refused.value,
                    )
                    continue
                new_claims.append(claim)
                announced[claim.payment_id] = (claim, False)
                continue
            fact = announced.get(claim.payment_id)
            known = fact[1] if fact is not None and fact[0] == claim else None
            if known:
                log.info(
                    "payment %s already settled %s: nothing to do", claim.payment_id, event.subject
                )
                continue
            refused = payment_refusal(dossier, claim, announced=known is not None)
            if refused is not None:
                published.append(self._refusal(event, claim, dossier, refused, now))
                refusals.append(refused)
                continue
            assert dossier is not None
            done, moved = self._transition(
                dossier, "pay", PAYMENT_SERVICE, f"payment event {event.id}", now
            )
            read_versions.setdefault(dossier.code, dossier.version)
            found[dossier.code] = done.dossier
            announced[claim.payment_id] = (claim, True)
            settled.append(claim.payment_id)
            published.append(moved)
            self._count_completion(done)
        self.repository.add_fee_payments(session, new_claims, now)
        for code, version in read_versions.items():
            self._save(session, found[code], version)
        self.repository.fee_payments_settled(session, settled, now)
        outbox = self.context.outbox
        assert outbox is not None
        outbox.add_many(session, events.TOPIC, published)
        if refusals:
            on_commit(session, lambda: _count_refusals(refusals))

    def _refusal(
        self,
        event: Event,
        claim: PaymentClaim,
        dossier: Dossier | None,
        refused: PaymentRefusal,
        now: datetime,
    ) -> Event:
        """A payment kept out of the dossier: logged, and audited through its event."""
        log.error(
            "payment %s refused for dossier %s: %s (%d VND, agency %s)",
            claim.payment_id,
            event.subject,
            refused.value,
            claim.amount_vnd,
            claim.agency_code,
        )
        return self._event(
            events.PAYMENT_REFUSED,
            event.subject,
            events_pb2.PaymentRefused(
                dossier_code=event.subject,
                agency_code=dossier.agency_code if dossier else "",
                fee_vnd=(dossier.fee_vnd or 0) if dossier else 0,
                status=int(dossier.status) if dossier else 0,
                payment_id=claim.payment_id,
                payment_agency_code=claim.agency_code,
                payment_amount_vnd=claim.amount_vnd,
                payment_event_id=event.id,
                reason=refused.value,
                occurred_at=timestamp(now),
            ),
            now,
        )

    # -- timers ------------------------------------------------------------------------------
    @timer("deadline_scan_seconds")
    def scan_deadlines(self) -> int:
        """Emit due-soon and overdue events, once each per dossier; returns how many."""
        today = self._local_day(self.clock())
        sent = 0
        with transaction(self.context.sessions) as session:
            for dossier in self.repository.running(session):
                notice = check_deadline(
                    dossier,
                    today,
                    self.calendar,
                    due_soon_days=self.settings.due_soon_days,
                    extension_days=self.settings.overdue_extension_days,
                )
                if notice is None:
                    continue
                if not self.repository.update(session, notice.dossier, dossier.version):
                    continue  # changed meanwhile; the next scan looks again
                self._publish(
                    session,
                    events.OVERDUE if notice.kind == "overdue" else events.DUE_SOON,
                    dossier.code,
                    events_pb2.DossierDeadline(
                        dossier=dossier_to_proto(notice.dossier),
                        due_date=notice.due_date.isoformat(),
                        new_appointment_date=(
                            notice.dossier.appointment_date.isoformat()
                            if notice.kind == "overdue"
                            else ""
                        ),
                        working_days=notice.working_days,
                    ),
                    self.clock(),
                )
                sent += 1
        return sent

    @timer("gauge_refresh_seconds")
    def refresh_gauges(self) -> None:
        """Dossiers by agency and state, for dashboards."""
        with self.context.sessions() as session:
            for agency, status, count in self.repository.count_by_state(session):
                DOSSIERS.labels(agency, str(status)).set(count)

    # -- who may do what ---------------------------------------------------------------------
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


def _count_refusals(refusals: Sequence[PaymentRefusal]) -> None:
    for refused in refusals:
        PAYMENTS_REFUSED.labels(refused.value).inc()


def _claim(message: Message | None) -> PaymentClaim:
    """What a payment event says of the payment."""
    assert isinstance(message, payment_events_pb2.PaymentEvent)
    p = message.payment
    return PaymentClaim(p.id, p.dossier_code, p.agency_code, p.amount_vnd)


def _replace(query: db.DossierQuery, **changes: object) -> db.DossierQuery:
    return replace(query, **changes)  # type: ignore[arg-type]


def _encode_token(last: tuple[datetime, str], fingerprint: str) -> str:
    at, code = last
    raw = json.dumps({"at": at.isoformat(), "code": code, "q": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
        at, code, q = datetime.fromisoformat(doc["at"]), str(doc["code"]), doc["q"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None
    if q != fingerprint:
        raise InvalidArgument("page_token", "belongs to a query with other filters")
    return at, code


def _parse_date(field: str, value: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidArgument(field, "must be a date YYYY-MM-DD") from None
