"""The payment service: fees for dossiers, paid through gateways, declared for the service host.

Use cases run in one transaction each (state change + history + outbox event); gateway calls
that go over the network (query, cancel, refund) happen *between* transactions, never while a
row lock is held. Entrypoints:

* ``on_payment_requested`` — the dossier service asked for the fee: create the payment;
* the gRPC API (:class:`~motcua_payment.adapters.grpc_api.PaymentApi`);
* the HTTP callback endpoint (IPN and return), started with the gRPC server;
* timers ``reconcile`` and ``expire`` (intervals from the settings; callable directly).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from motcua.dossier.v1 import dossier_pb2
from motcua.dossier.v1 import events_pb2 as dossier_events_pb2
from motcua.payment.v1 import events_pb2, payment_pb2, payment_pb2_grpc
from motcua_kit.auth import Principal
from motcua_kit.consumer import PermanentError
from motcua_kit.db import on_commit, transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Refusal,
)
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.proto import timestamp
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler, timer
from motcua_kit.tracing import tracer
from motcua_payment import events
from motcua_payment.adapters import callback_http, db
from motcua_payment.adapters.callback_http import CallbackServer
from motcua_payment.adapters.grpc_api import (
    ORIGIN_TO_PROTO,
    PAYMENT_STATE_TO_PROTO,
    ROLE_FROM_PROTO,
    PaymentApi,
    actor_to_proto,
    payment_to_proto,
    refund_to_proto,
)
from motcua_payment.domain.callbacks import (
    CallbackRejected,
    Notice,
    Outcome,
    RejectionReason,
    check_fresh,
    check_matches,
    settling_trigger,
)
from motcua_payment.domain.fees import (
    DossierFee,
    FeeState,
    PaymentOrder,
    authorise_payment_for,
    payment_request,
)
from motcua_payment.domain.payment import (
    SYSTEM,
    Actor,
    Origin,
    Payer,
    Payment,
    PaymentRequest,
    Receipt,
    Refund,
    cancel_reason,
    new_id,
    new_pay_token,
    normalise_text,
    receipt_number,
    valid_pay_token,
    validate_agency_code,
    validate_amount,
    validate_dossier_code,
    validate_idempotency_key,
    validate_payment_id,
)
from motcua_payment.domain.states import (
    OPEN_STATES,
    IllegalTransition,
    PaymentState,
    RefundState,
    State,
    Trigger,
    allowed,
)
from motcua_payment.gateways.base import Gateway, GatewayUnavailable, HttpAnswer
from motcua_payment.gateways.vnpay import VnpayStyleGateway
from motcua_payment.metrics import (
    CALLBACK_REJECTIONS,
    CALLBACKS_ACCEPTED,
    GATEWAY_ERRORS,
    PAYMENTS,
    RECONCILIATIONS,
    REFUNDS,
    SETTLEMENT_SECONDS,
)
from motcua_payment.settings import PaymentSettings

log = logging.getLogger(__name__)
_tracer = tracer("motcua.payment.timers")

_MAX_QUERY_FIELDS = 64


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def system_clock() -> datetime:
    return datetime.now(UTC)


def _gateways(ctx: ServiceContext) -> Mapping[str, Gateway]:
    """The configured gateway adapters by name (the sandbox speaks the VNPay-style protocol)."""
    s = ctx.settings
    assert isinstance(s, PaymentSettings)
    gateway = VnpayStyleGateway(
        s.gateway,
        s.gateway_base_url,
        s.gateway_merchant_code,
        s.hash_secret,  # read on use: a rotated secret file is picked up without a restart
        timeout=s.gateway_timeout_seconds,
    )
    return {gateway.name: gateway}


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.subject, principal.primary_role, principal.agency_code)


def _query_pairs(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            query,
            keep_blank_values=True,
            strict_parsing=bool(query),
            max_num_fields=_MAX_QUERY_FIELDS,
        )
    except ValueError as exc:
        raise CallbackRejected(RejectionReason.MALFORMED, f"unreadable query: {exc}") from None


def _fee_of(dossier: dossier_pb2.Dossier) -> DossierFee:
    """The fact a dossier event states: the dossier, its agency and its applicant."""
    applicant = dossier.applicant
    try:
        return DossierFee(
            dossier_code=validate_dossier_code("dossier.code", dossier.code),
            agency_code=validate_agency_code("dossier.agency_code", dossier.agency_code),
            procedure_code=dossier.procedure_code,
            payer=Payer.validated(
                applicant.full_name, applicant.citizen_id, applicant.phone, applicant.email
            ),
        )
    except InvalidArgument as exc:
        raise PermanentError(f"unusable dossier event: {exc.message}") from exc


def _check_no_live_payment(code: str, existing: list[Payment]) -> None:
    """One open or paid payment per dossier: a second one would take the fee twice."""
    live = _live(existing)
    if live is not None and live.state in OPEN_STATES:
        raise FailedPrecondition(
            f"dossier {code} already has an open payment {live.id}; pay or cancel it first"
        )
    if live is not None:
        number = live.receipt.number if live.receipt else "-"
        raise FailedPrecondition(f"dossier {code} is already paid (receipt {number})")


def _live(payments: list[Payment]) -> Payment | None:
    """The dossier's payment that still counts: open, or paid and not fully refunded."""
    for p in reversed(payments):
        if p.state in OPEN_STATES:
            return p
        if p.state is PaymentState.SUCCEEDED and p.refunded_vnd < p.amount_vnd:
            return p
    return None


@dataclass(frozen=True)
class _NewPayment:
    """A payment to create: the request, the idempotency scope and who asked, from where."""

    request: PaymentRequest
    scope: str
    fingerprint: str
    actor: Actor
    origin: Origin


class PaymentService(Service):
    """Procedure fees (lệ phí thủ tục hành chính) for dossiers, through payment gateways."""

    name = "payment"
    settings_class = PaymentSettings
    metadata = db.metadata
    outbox_table = db.outbox
    inbox_table = db.inbox
    migrations = "motcua_payment:migrations"
    publishes: ClassVar[tuple[str, ...]] = (events.TOPIC,)

    clock: Dependency[Clock] = Dependency(lambda ctx: system_clock)
    repository: Dependency[db.PaymentRepository] = Dependency(lambda ctx: db.PaymentRepository())
    gateways: Dependency[Mapping[str, Gateway]] = Dependency(_gateways)
    context: Dependency[ServiceContext] = Dependency(lambda ctx: ctx)

    _callbacks: CallbackServer | None = None

    # -- wiring ------------------------------------------------------------------------------
    @property
    def settings(self) -> PaymentSettings:
        s = self.context.settings
        assert isinstance(s, PaymentSettings)
        return s

    def on_start(self) -> None:
        """Refuse to start without a usable secret; open the HTTP callback endpoint."""
        try:
            self.settings.hash_secret()
        except (ValueError, OSError) as exc:
            raise SystemExit(f"payment: {exc}") from None
        self.start_callbacks()

    def on_stop(self) -> None:
        self.stop_callbacks()

    def grpc_services(self) -> list[tuple[str, Registration]]:
        api = PaymentApi(self)
        return [
            registration(
                payment_pb2,
                "PaymentService",
                payment_pb2_grpc.add_PaymentServiceServicer_to_server,
                api,
            )
        ]

    def start_callbacks(self) -> CallbackServer:
        """Start the HTTP callback endpoint (once); the host's stop closes it."""
        if self._callbacks is None:
            s = self.settings
            self._callbacks = CallbackServer(
                s.bind_host,
                s.callback_port,
                self.handle_notification,
                self.handle_return,
                self.handle_pay_link,
            ).start()
            log.info("payment callbacks listening", extra={"callback_port": self._callbacks.port})
        return self._callbacks

    def stop_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            callbacks.stop()

    def _gateway(self, name: str) -> Gateway:
        try:
            return self.gateways[name]
        except KeyError:
            raise FailedPrecondition(f"payment gateway {name!r} is not configured") from None

    # -- what the dossier service tells ------------------------------------------------------
    @event_handler(
        events.DOSSIER_TOPIC, events.DOSSIER_SUBMITTED, dossier_events_pb2.DossierSubmitted
    )
    def on_dossier_submitted(self, event: Event, message: Message | None, session: Session) -> None:
        """A dossier was filed: it is known from now on (its fee is asked for later, or never)."""
        assert isinstance(message, dossier_events_pb2.DossierSubmitted)
        if self.repository.fee(session, message.dossier.code) is None:
            self.repository.save_fee(session, _fee_of(message.dossier), self.clock())

    @event_handler(
        events.DOSSIER_TOPIC, events.DOSSIER_PAID, dossier_events_pb2.DossierStatusChanged
    )
    @event_handler(
        events.DOSSIER_TOPIC, events.DOSSIER_WITHDRAWN, dossier_events_pb2.DossierStatusChanged
    )
    @event_handler(
        events.DOSSIER_TOPIC, events.DOSSIER_STOPPED, dossier_events_pb2.DossierStatusChanged
    )
    def on_dossier_left_payment(
        self, event: Event, message: Message | None, session: Session
    ) -> None:
        """The dossier left "payment required": its fee request is closed, nothing more is paid."""
        assert isinstance(message, dossier_events_pb2.DossierStatusChanged)
        fee = self.repository.fee(session, message.dossier.code, lock=True)
        if fee is not None and fee.state is FeeState.OPEN:
            self.repository.save_fee(session, fee.closed(), self.clock())

    @event_handler(
        events.DOSSIER_TOPIC,
        events.DOSSIER_PAYMENT_REQUESTED,
        dossier_events_pb2.DossierStatusChanged,
        batch="on_payments_requested",
    )
    def on_payment_requested(self, event: Event, message: Message | None, session: Session) -> None:
        """The dossier reached "payment required": open its fee request and create a payment.

        The request's amount, agency and payer are the dossier's own, and every later payment
        of the dossier is bound to them. A dossier without a fee gets none; a dossier that
        already has an open or paid payment gets no second one. A payload that cannot make a
        valid payment is dead-lettered.
        """
        self.on_payments_requested([(event, message)], session)

    def on_payments_requested(
        self, requested: Sequence[tuple[Event, Message | None]], session: Session
    ) -> None:
        """:meth:`on_payment_requested` for a batch of events, in order: their dossiers' fee
        facts and payments are read (and locked) in one query each, and the new fee requests,
        payments, history rows and events are written with one statement each."""
        wanted: list[tuple[Event, dossier_events_pb2.DossierStatusChanged]] = []
        for event, message in requested:
            assert isinstance(message, dossier_events_pb2.DossierStatusChanged)
            if not message.dossier.HasField("fee_vnd") or message.dossier.fee_vnd == 0:
                log.info("dossier %s has no fee: no payment", message.dossier.code)
                continue
            wanted.append((event, message))
        if not wanted:
            return
        codes = sorted({m.dossier.code for _e, m in wanted})
        self.repository.fees(session, codes, lock=True)  # serialise with API creates
        existing = self.repository.for_dossiers(session, codes, lock=True)
        fees: dict[str, DossierFee] = {}
        new: list[_NewPayment] = []
        opened: set[str] = set()
        for event, message in wanted:
            dossier = message.dossier
            try:
                known = _fee_of(dossier)
                fee = known.requested(dossier.fee_vnd, event.id, known.payer)
                request = payment_request(PaymentOrder(dossier.code), fee)
            except InvalidArgument as exc:
                raise PermanentError(f"unusable payment_requested event: {exc.message}") from exc
            fees[dossier.code] = fee
            live = _live(existing.get(request.dossier_code, []))
            if live is not None or request.dossier_code in opened:
                log.info("dossier %s already has a live payment: no new one", dossier.code)
                continue
            opened.add(request.dossier_code)
            actor = Actor(
                message.actor.subject or "motcua-dossier",
                ROLE_FROM_PROTO.get(message.actor.role, "service"),
                message.actor.agency_code,
            )
            scope = f"event\x1f{event.id}"
            new.append(
                _NewPayment(request, scope, request.fingerprint(), actor, Origin.DOSSIER_EVENT)
            )
        self.repository.save_fees(session, list(fees.values()), self.clock())
        self._create_many(session, new)

    # -- API use cases -----------------------------------------------------------------------
    def create_payment(
        self, principal: Principal, order: PaymentOrder, idempotency_key: str
    ) -> tuple[Payment, bool]:
        """Create a payment for the dossier's open fee request; returns (payment, replayed).

        Idempotent on the caller's key. Amount, agency and payer are the fee request's.
        """
        validate_idempotency_key("idempotency_key", idempotency_key)
        scope = f"{principal.subject}\x1f{idempotency_key}"
        fingerprint = order.fingerprint()
        for attempt in (1, 2):
            try:
                with transaction(self.context.sessions) as session:
                    # The fee fact's row lock serialises creates for one dossier; the key is
                    # looked up after it, so a concurrent create with the same key that
                    # committed meanwhile is replayed, not taken for another open payment.
                    fee = authorise_payment_for(
                        principal,
                        self.repository.fee(session, order.dossier_code, lock=True),
                        order.dossier_code,
                    )
                    existing = self.repository.for_dossier(session, order.dossier_code, lock=True)
                    earlier = self.repository.by_scope(session, scope)
                    if earlier is not None:
                        payment, earlier_fingerprint = earlier
                        if earlier_fingerprint != fingerprint:
                            raise AlreadyExists(
                                "idempotency_key was already used for a different payment "
                                f"request (payment {payment.id}); use a new key for a new payment"
                            )
                        return payment, True
                    request = payment_request(order, fee)
                    _check_no_live_payment(request.dossier_code, existing)
                    payment = self._create(
                        session,
                        request,
                        scope=scope,
                        fingerprint=fingerprint,
                        actor=actor_of(principal),
                        origin=Origin.API,
                    )
                return payment, False
            except IntegrityError:
                # A concurrent create won the race (same key, or an open payment of the same
                # dossier); the retry replays it or refuses with the reason.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get_payment(self, principal: Principal, payment_id: str) -> Payment:
        """One payment, if the caller may see it (others look like it does not exist)."""
        pid = validate_payment_id("payment_id", payment_id)
        with self.context.sessions() as session:
            payment = self.repository.get(session, pid)
        if payment is None or not self._may_see(principal, payment):
            raise NotFound(f"payment {pid} not found")
        return payment

    def list_payments(self, principal: Principal, dossier_code: str) -> list[Payment]:
        """The dossier's payments the caller may see, oldest first."""
        code = validate_dossier_code("dossier_code", dossier_code)
        with self.context.sessions() as session:
            found = self.repository.for_dossier(session, code)
        return [p for p in found if self._may_see(principal, p)]

    def cancel_payment(self, principal: Principal, payment_id: str, reason: str) -> Payment:
        """Cancel an open payment; the gateway is told first, so it takes no money after."""
        payment = self.get_payment(principal, payment_id)
        why = cancel_reason(reason)
        if not allowed(payment.state, Trigger.CANCEL):
            raise IllegalTransition("the payment", payment.state, Trigger.CANCEL)
        try:
            notice = self._gateway(payment.gateway).cancel(payment)
        except GatewayUnavailable as exc:
            GATEWAY_ERRORS.labels("cancel").inc()
            log.warning("cancel of %s: gateway unavailable: %s", payment.id, exc)
            raise Aborted(
                "the payment gateway could not be reached to stop the payment; try again"
            ) from exc
        if notice.settles:
            # The payer was faster: record what the gateway says, and refuse the cancel.
            settled = self._settle_from_gateway(payment.id, notice, Origin.API)
            raise FailedPrecondition(
                f"the payment is already {settled.state.value} at the gateway; it cannot cancel"
            )
        actor = actor_of(principal)
        refusal: Refusal | None = None
        with transaction(self.context.sessions) as session:
            current = self.repository.get(session, payment.id, lock=True)
            assert current is not None
            if not allowed(current.state, Trigger.CANCEL):
                refusal = IllegalTransition("the payment", current.state, Trigger.CANCEL)
            else:
                now = self.clock()
                after = current.cancelled(now)
                self._change(
                    session, current, after, Trigger.CANCEL, Origin.API, actor, now, reason=why
                )
        if refusal is not None:
            raise refusal
        return after

    def refund_payment(
        self,
        principal: Principal,
        payment_id: str,
        amount_vnd: object,
        reason: str,
        idempotency_key: str,
    ) -> tuple[Refund, Payment, bool]:
        """Refund all or part of a succeeded payment; returns (refund, payment, replayed).

        The refund is recorded (REQUESTED) before the gateway is asked, under the payment's
        row lock, so concurrent refunds can never add up to more than was paid.
        """
        principal.require_any("officer", "admin")
        pid = validate_payment_id("payment_id", payment_id)
        amount = validate_amount("amount_vnd", amount_vnd)
        validate_idempotency_key("idempotency_key", idempotency_key)
        scope = f"{principal.subject}\x1f{idempotency_key}"
        body = json.dumps([pid, amount, normalise_text(reason)], ensure_ascii=False)
        fingerprint = hashlib.sha256(body.encode()).hexdigest()
        actor = actor_of(principal)
        replayed = False
        refund_id = ""
        for attempt in (1, 2):
            try:
                with transaction(self.context.sessions) as session:
                    earlier = self.repository.refund_by_scope(session, scope)
                    if earlier is not None:
                        earlier_payment, refund_id, earlier_fingerprint = earlier
                        if earlier_fingerprint != fingerprint:
                            raise AlreadyExists(
                                "idempotency_key was already used for a different refund "
                                f"(refund {refund_id}); use a new key for a new refund"
                            )
                        pid, replayed = earlier_payment, True
                        break
                    payment = self.repository.get(session, pid, lock=True)
                    if payment is None or not self._may_see(principal, payment):
                        raise NotFound(f"payment {pid} not found")
                    now = self.clock()
                    refund = payment.request_refund(
                        refund_id=new_id(), amount_vnd=amount, reason=reason, actor=actor, now=now
                    )
                    self.repository.add_refund(session, refund, scope, fingerprint)
                    self._record(
                        session,
                        payment.id,
                        None,
                        Trigger.REFUND,
                        refund.state,
                        Origin.API,
                        actor,
                        now,
                        refund_id=refund.id,
                    )
                    refund_id = refund.id
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        self._send_refund(pid, refund_id, Origin.API)
        with self.context.sessions() as session:
            after = self.repository.get(session, pid)
        assert after is not None
        return after.refund(refund_id), after, replayed

    # -- gateway callbacks -------------------------------------------------------------------
    def handle_notification(self, gateway_name: str, query: str, client: str = "") -> HttpAnswer:
        """A server-to-server notification (IPN): settle the payment if, and only if, it passes
        every check — signature, timestamp, reference, replay, amount, currency, state."""
        gateway = self.gateways.get(gateway_name)
        if gateway is None:
            return HttpAnswer(404, "text/plain", b"unknown gateway\n")
        try:
            notice = gateway.parse_notification(_query_pairs(query))
            tolerance = timedelta(seconds=self.settings.callback_tolerance_seconds)
            check_fresh(notice, self.clock(), tolerance)
            self._apply_notification(gateway, notice)
        except CallbackRejected as rejected:
            self._count_rejection(rejected, gateway_name, "ipn", client)
            return gateway.acknowledge(rejected.reason)
        CALLBACKS_ACCEPTED.labels("ipn").inc()
        return gateway.acknowledge(None)

    def _apply_notification(self, gateway: Gateway, notice: Notice) -> None:
        reference = notice.reference
        try:
            validate_payment_id("reference", reference)
        except InvalidArgument:
            raise CallbackRejected(
                RejectionReason.UNKNOWN_REFERENCE, "no payment has this reference"
            ) from None
        try:
            with transaction(self.context.sessions) as session:
                payment = self.repository.get(session, reference, lock=True)
                if payment is None or payment.gateway != gateway.name:
                    raise CallbackRejected(
                        RejectionReason.UNKNOWN_REFERENCE, "no payment has this reference"
                    )
                if self.repository.notice_seen(session, gateway.name, notice.transaction_id):
                    raise CallbackRejected(
                        RejectionReason.REPLAY,
                        f"gateway transaction {notice.transaction_id} was already applied",
                        payment.id,
                    )
                check_matches(notice, payment)
                trigger = settling_trigger(notice)
                if not allowed(payment.state, trigger):
                    if notice.outcome is Outcome.PAID:
                        log.error(
                            "the gateway took money for payment %s which is %s: refund it",
                            payment.id,
                            payment.state.value,
                        )
                    raise CallbackRejected(
                        RejectionReason.STATE_CONFLICT,
                        f"the payment is {payment.state.value}; it cannot {trigger.value}",
                        payment.id,
                    )
                self._settle(session, payment, notice, Origin.GATEWAY_NOTIFICATION)
        except IntegrityError:
            # Two copies raced past the check; the replay guard's key let one through.
            raise CallbackRejected(
                RejectionReason.REPLAY,
                f"gateway transaction {notice.transaction_id} was already applied",
                reference,
            ) from None

    def handle_return(self, gateway_name: str, query: str, client: str = "") -> HttpAnswer:
        """The payer's browser came back from the gateway. The signed parameters are checked,
        but they settle nothing: the page shows what the service knows, after asking the
        gateway itself (server to server) if the notification has not arrived yet."""
        gateway = self.gateways.get(gateway_name)
        if gateway is None:
            return HttpAnswer(404, "text/plain", b"unknown gateway\n")
        try:
            notice = gateway.parse_notification(_query_pairs(query))
            payment = self._known_payment(gateway, notice.reference)
            check_matches(notice, payment)
        except CallbackRejected as rejected:
            self._count_rejection(rejected, gateway_name, "return", client)
            return callback_http.refused_page()
        if payment.state is PaymentState.PENDING:
            payment = self.reconcile_payment(payment.id) or payment
        portal = self.settings.portal_result_url
        if portal:
            query_string = urlencode({"payment_id": payment.id, "state": payment.state.value})
            return callback_http.redirect(f"{portal}{'&' if '?' in portal else '?'}{query_string}")
        return callback_http.result_page(payment)

    def handle_pay_link(self, token: str, client: str = "") -> HttpAnswer:
        """The short link an SMS carries: on to the gateway's page while the payment is open."""
        payment = None
        if valid_pay_token(token):
            with self.context.sessions() as session:
                payment = self.repository.by_pay_token(session, token)
        if payment is None:
            return callback_http.unknown_link_page()
        target = payment.pay_link_target(self.clock())
        if target is None:
            return callback_http.expired_link_page(payment)
        return callback_http.redirect(target)

    def _known_payment(self, gateway: Gateway, reference: str) -> Payment:
        payment = None
        try:
            pid = validate_payment_id("reference", reference)
            with self.context.sessions() as session:
                payment = self.repository.get(session, pid)
        except InvalidArgument:
            pass
        if payment is None or payment.gateway != gateway.name:
            raise CallbackRejected(
                RejectionReason.UNKNOWN_REFERENCE, "no payment has this reference"
            )
        return payment

    def _count_rejection(
        self, rejected: CallbackRejected, gateway: str, kind: str, client: str
    ) -> None:
        CALLBACK_REJECTIONS.labels(rejected.reason.value).inc()
        # Never the query string, the signature or the secret: only what an operator needs.
        log.warning(
            "%s callback refused: %s",
            kind,
            rejected.reason.value,
            extra={
                "reason": rejected.reason.value,
                "detail": rejected.detail[:200],
                "payment_id": rejected.reference[:64],
                "gateway": gateway,
                "client": client,
            },
        )

    # -- timers ------------------------------------------------------------------------------
    @timer("reconcile_interval_seconds")
    def reconcile(self) -> int:
        """Ask the gateway about payments pending longer than the threshold and settle them;
        send again refunds whose outcome is still unknown. Returns how many settled."""
        s = self.settings
        now = self.clock()
        before = now - timedelta(seconds=s.reconcile_after_seconds)
        with self.context.sessions() as session:
            pending = self.repository.pending_since(session, before, now, s.reconcile_batch_size)
            in_flight = self.repository.refunds_in_flight(session, before, s.reconcile_batch_size)
        settled = 0
        for payment_id in pending:
            try:
                with _tracer.start_as_current_span(
                    "reconcile payment", attributes={"motcua.payment_id": payment_id}
                ):
                    after = self.reconcile_payment(payment_id)
            except Exception:
                log.exception("reconciling payment %s failed", payment_id)
                continue
            if after is not None and after.state is not PaymentState.PENDING:
                settled += 1
        for payment_id, refund_id in in_flight:
            try:
                self._send_refund(payment_id, refund_id, Origin.RECONCILIATION)
            except Exception:
                log.exception("retrying refund %s failed", refund_id)
        return settled

    def reconcile_payment(self, payment_id: str) -> Payment | None:
        """Ask the gateway about one pending payment; settle it if the gateway has."""
        with self.context.sessions() as session:
            payment = self.repository.get(session, payment_id)
        if payment is None or payment.state is not PaymentState.PENDING:
            return payment
        try:
            notice = self._gateway(payment.gateway).query(payment)
        except GatewayUnavailable as exc:
            GATEWAY_ERRORS.labels("query").inc()
            RECONCILIATIONS.labels("gateway_error").inc()
            log.warning("reconciling %s: gateway unavailable: %s", payment.id, exc)
            return payment
        if not notice.settles:
            RECONCILIATIONS.labels(f"still_{notice.outcome.value}").inc()
            return payment
        return self._settle_from_gateway(payment.id, notice, Origin.RECONCILIATION)

    @timer("expiry_interval_seconds")
    def expire(self) -> int:
        """Expire open payments whose time is up (after making sure the gateway took no
        money and will take none). Returns how many expired."""
        now = self.clock()
        with self.context.sessions() as session:
            due = self.repository.expiring(session, now, self.settings.reconcile_batch_size)
        expired = 0
        for payment_id in due:
            try:
                with _tracer.start_as_current_span(
                    "expire payment", attributes={"motcua.payment_id": payment_id}
                ):
                    after = self.expire_payment(payment_id)
            except Exception:
                log.exception("expiring payment %s failed", payment_id)
                continue
            if after is not None and after.state is PaymentState.EXPIRED:
                expired += 1
        return expired

    def expire_payment(self, payment_id: str) -> Payment | None:
        """Expire one payment if its time is up; a gateway that cannot be asked defers it."""
        now = self.clock()
        with self.context.sessions() as session:
            payment = self.repository.get(session, payment_id)
        if payment is None or payment.state not in OPEN_STATES or payment.expires_at > now:
            return payment
        try:
            # Cancel, not query: the gateway must also stop taking money for it.
            notice = self._gateway(payment.gateway).cancel(payment)
        except GatewayUnavailable as exc:
            GATEWAY_ERRORS.labels("cancel").inc()
            log.warning("expiring %s deferred: gateway unavailable: %s", payment.id, exc)
            return payment
        if notice.settles and payment.state is PaymentState.PENDING:
            return self._settle_from_gateway(payment.id, notice, Origin.EXPIRY)
        with transaction(self.context.sessions) as session:
            current = self.repository.get(session, payment_id, lock=True)
            assert current is not None
            if current.state not in OPEN_STATES:
                return current
            after = current.expired(now)
            self._change(session, current, after, Trigger.EXPIRE, Origin.EXPIRY, SYSTEM, now)
        return after

    # -- the moves ---------------------------------------------------------------------------
    def _create(
        self,
        session: Session,
        request: PaymentRequest,
        *,
        scope: str,
        fingerprint: str,
        actor: Actor,
        origin: Origin,
    ) -> Payment:
        """Record the payment, have the gateway issue the redirect and publish
        ``payment.requested`` — one transaction."""
        return self._create_many(
            session, [_NewPayment(request, scope, fingerprint, actor, origin)]
        )[0]

    def _create_many(self, session: Session, new: Sequence[_NewPayment]) -> list[Payment]:
        """Create payments (CREATED, then PENDING with the gateway's redirect), their history
        and their ``payment.requested`` events: one statement per table for all of them."""
        if not new:
            return []
        s = self.settings
        gateway = self._gateway(s.gateway)
        now = self.clock()
        base = s.callback_base()
        return_url = f"{base}/payment/{gateway.name}/return"
        rows: list[tuple[Payment, str, str]] = []
        moves: list[db.Moved] = []
        published: list[Event] = []
        for n in new:
            payment = Payment.new(
                n.request,
                payment_id=new_id(),
                gateway=gateway.name,
                created_by=n.actor,
                now=now,
                expires_at=now + timedelta(seconds=s.payment_expiry_seconds),
            )
            token = new_pay_token()
            started = payment.started(
                gateway.redirect_url(payment, return_url), token, f"{base}/p/{token}"
            )
            rows.append((started, n.scope, n.fingerprint))
            moves += [
                db.Moved(payment.id, None, None, payment.state, n.origin, n.actor, now),
                db.Moved(
                    payment.id, payment.state, Trigger.START, started.state, n.origin, n.actor, now
                ),
            ]
            event_type = events.PAYMENT_EVENT_TYPES[started.state]
            published.append(
                self._event(started, event_type, payment.state, n.origin, n.actor, now)
            )
        self.repository.add_many(session, rows)
        self.repository.record_transitions(session, moves)
        outbox = self.context.outbox
        assert outbox is not None
        outbox.add_many(session, events.TOPIC, published)
        on_commit(session, lambda: PAYMENTS.labels("requested").inc(len(rows)))
        return [p for p, _scope, _fingerprint in rows]

    def _settle_from_gateway(self, payment_id: str, notice: Notice, origin: Origin) -> Payment:
        """Apply what the gateway said when asked (query or cancel): trusted, still checked."""
        with transaction(self.context.sessions) as session:
            current = self.repository.get(session, payment_id, lock=True)
            assert current is not None
            if current.state is not PaymentState.PENDING:
                return current
            if notice.transaction_id and self.repository.notice_seen(
                session, current.gateway, notice.transaction_id
            ):
                return current
            try:
                check_matches(notice, current)
            except CallbackRejected as mismatch:
                RECONCILIATIONS.labels(mismatch.reason.value).inc()
                log.error(
                    "the gateway reports other money for payment %s: %s",
                    current.id,
                    mismatch.detail,
                )
                return current
            after = self._settle(session, current, notice, origin)
            on_commit(session, lambda: RECONCILIATIONS.labels("settled").inc())
        return after

    def _settle(
        self, session: Session, payment: Payment, notice: Notice, origin: Origin
    ) -> Payment:
        """Succeed (with the next receipt number) or fail the payment, as the gateway said."""
        now = self.clock()
        if notice.transaction_id:
            self.repository.record_notice(
                session,
                gateway=payment.gateway,
                transaction_id=notice.transaction_id,
                payment_id=payment.id,
                outcome=notice.outcome.value,
                origin=origin,
                at=now,
            )
        trigger = settling_trigger(notice)
        if trigger is Trigger.SUCCEED:
            year = now.astimezone(ZoneInfo(self.settings.timezone)).year
            sequence = self.repository.next_receipt_sequence(session, payment.agency_code, year)
            receipt = Receipt(receipt_number(payment.agency_code, year, sequence), now)
            after = payment.succeeded(notice.transaction_id, receipt, now)
        else:
            after = payment.failed(notice.transaction_id, notice.code or "failed", now)
        self._change(session, payment, after, trigger, origin, SYSTEM, now)
        return after

    def _change(
        self,
        session: Session,
        before: Payment,
        after: Payment,
        trigger: Trigger,
        origin: Origin,
        actor: Actor,
        now: datetime,
        *,
        reason: str = "",
    ) -> None:
        """Save a state change, record it and publish its event, in the caller's transaction."""
        self.repository.save(session, after)
        self._record(session, after.id, before.state, trigger, after.state, origin, actor, now)
        event_type = events.PAYMENT_EVENT_TYPES[after.state]
        self._publish(session, after, event_type, before.state, origin, actor, now, reason=reason)
        outcome = "requested" if after.state is PaymentState.PENDING else after.state.value
        elapsed = max((now - after.created_at).total_seconds(), 0.0)

        def count() -> None:
            PAYMENTS.labels(outcome).inc()
            if after.settled_at is not None:
                SETTLEMENT_SECONDS.labels(outcome).observe(elapsed)

        on_commit(session, count)

    def _send_refund(self, payment_id: str, refund_id: str, origin: Origin) -> None:
        """Ask the gateway to refund; settle the refund with its answer. An unreachable
        gateway leaves it REQUESTED for the reconciliation job to send again."""
        with self.context.sessions() as session:
            payment = self.repository.get(session, payment_id)
        assert payment is not None
        refund = payment.refund(refund_id)
        if refund.state is not RefundState.REQUESTED:
            return
        try:
            outcome = self._gateway(payment.gateway).refund(payment, refund)
        except GatewayUnavailable as exc:
            GATEWAY_ERRORS.labels("refund").inc()
            log.warning("refund %s: gateway unavailable, will retry: %s", refund_id, exc)
            return
        now = self.clock()
        with transaction(self.context.sessions) as session:
            current = self.repository.get(session, payment_id, lock=True)
            assert current is not None
            pending = current.refund(refund_id)
            if pending.state is not RefundState.REQUESTED:
                return
            if outcome.succeeded:
                settled = pending.succeeded(outcome.transaction_id, now)
                trigger = Trigger.REFUND_SUCCEED
            else:
                settled = pending.failed(outcome.code or "failed", now)
                trigger = Trigger.REFUND_FAIL
            self.repository.save_refund(session, settled)
            self._record(
                session,
                payment_id,
                pending.state,
                trigger,
                settled.state,
                origin,
                SYSTEM,
                now,
                refund_id=refund_id,
            )
            after = current.with_refund(settled)
            self._publish(
                session,
                after,
                events.REFUND_EVENT_TYPES[settled.state],
                after.state,
                origin,
                pending.requested_by,
                now,
                # The officer's words; for a failure, the gateway's message says why.
                reason=pending.reason if outcome.succeeded else outcome.message or pending.reason,
                refund=settled,
            )
            on_commit(session, lambda: REFUNDS.labels(settled.state.value).inc())

    def _record(
        self,
        session: Session,
        payment_id: str,
        source: State | None,
        trigger: Trigger | None,
        target: State,
        origin: Origin,
        actor: Actor,
        now: datetime,
        *,
        refund_id: str | None = None,
    ) -> None:
        self.repository.record_transition(
            session,
            payment_id=payment_id,
            source=source,
            trigger=trigger,
            target=target,
            origin=origin,
            actor=actor,
            at=now,
            refund_id=refund_id,
        )

    def _publish(
        self,
        session: Session,
        payment: Payment,
        event_type: str,
        previous: PaymentState,
        origin: Origin,
        actor: Actor,
        now: datetime,
        *,
        reason: str = "",
        refund: Refund | None = None,
    ) -> None:
        outbox = self.context.outbox
        assert outbox is not None
        event = self._event(
            payment, event_type, previous, origin, actor, now, reason=reason, refund=refund
        )
        outbox.add(session, events.TOPIC, event)

    @staticmethod
    def _event(
        payment: Payment,
        event_type: str,
        previous: PaymentState,
        origin: Origin,
        actor: Actor,
        now: datetime,
        *,
        reason: str = "",
        refund: Refund | None = None,
    ) -> Event:
        """The payment event of a state change (the payment as it is after it)."""
        message = events_pb2.PaymentEvent(
            payment=payment_to_proto(payment),
            previous_state=PAYMENT_STATE_TO_PROTO[previous],
            origin=ORIGIN_TO_PROTO[origin],
            reason=reason,
            occurred_at=timestamp(now),
        )
        if actor is not SYSTEM:
            message.actor.CopyFrom(actor_to_proto(actor))
        if refund is not None:
            message.refund.CopyFrom(refund_to_proto(refund))
        return Event.new(
            source=events.SOURCE,
            type=event_type,
            subject=payment.dossier_code,
            message=message,
            time=now,
        )

    # -- who may do what ---------------------------------------------------------------------
    @staticmethod
    def _may_see(principal: Principal, payment: Payment) -> bool:
        if principal.has_any("admin", "service"):
            return True
        if "officer" in principal.roles and principal.agency_code == payment.agency_code:
            return True
        return bool(
            "citizen" in principal.roles
            and principal.citizen_id
            and principal.citizen_id == payment.payer.citizen_id
        )
