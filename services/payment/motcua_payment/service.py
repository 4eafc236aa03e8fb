"""The payment service: fees for dossiers, paid through gateways, declared for the service host.

This module wires the dependencies and declares the entrypoints; each use case is in
:mod:`motcua_payment.usecases`, the decisions in :mod:`motcua_payment.domain`. Use cases run
in one transaction each (state change + history + outbox event); gateway calls that go over
the network (query, cancel, refund) happen *between* transactions, never while a row lock is
held. Entrypoints:

* ``on_payment_requested`` — the dossier service asked for the fee: create the payment;
* the gRPC API (:class:`~motcua_payment.adapters.grpc_api.PaymentApi`);
* the HTTP callback endpoint (IPN and return), started with the gRPC server;
* timers ``reconcile`` and ``expire`` (intervals from the settings; callable directly).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from motcua.dossier.v1 import events_pb2 as dossier_events_pb2
from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_kit.auth import Principal
from motcua_kit.envelope import Event
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler, timer
from motcua_payment import events
from motcua_payment.adapters import db
from motcua_payment.adapters.callback_http import CallbackServer
from motcua_payment.adapters.gateways.base import Gateway, HttpAnswer
from motcua_payment.adapters.gateways.vnpay import VnpayStyleGateway
from motcua_payment.adapters.grpc_api import PaymentApi
from motcua_payment.domain.fees import PaymentOrder
from motcua_payment.domain.payment import Payment, Refund
from motcua_payment.settings import PaymentSettings
from motcua_payment.usecases import api, callbacks, dossier_events, jobs

log = logging.getLogger(__name__)


def _gateways(ctx: ServiceContext[PaymentSettings]) -> Mapping[str, Gateway]:
    """The configured gateway adapters by name (the sandbox speaks the VNPay-style protocol)."""
    s = ctx.settings
    gateway = VnpayStyleGateway(
        s.gateway,
        s.gateway_base_url,
        s.gateway_merchant_code,
        s.hash_secret,  # read on use: a rotated secret file is picked up without a restart
        timeout=s.gateway_timeout_seconds,
    )
    return {gateway.name: gateway}


class PaymentService(Service[PaymentSettings]):
    """Procedure fees (lệ phí thủ tục hành chính) for dossiers, through payment gateways."""

    name = "payment"
    metadata = db.metadata
    outbox_table = db.outbox
    inbox_table = db.inbox
    migrations = "motcua_payment:migrations"
    publishes = (events.TOPIC,)

    repository: Dependency[db.PaymentRepository] = Dependency(lambda ctx: db.PaymentRepository())
    gateways: Dependency[Mapping[str, Gateway]] = Dependency(_gateways)

    _callbacks: CallbackServer | None = None

    # -- wiring ------------------------------------------------------------------------------
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
        return [
            registration(
                payment_pb2,
                "PaymentService",
                payment_pb2_grpc.add_PaymentServiceServicer_to_server,
                PaymentApi(self),
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
                s.public_http_options(),
            ).start()
            log.info("payment callbacks listening", extra={"callback_port": self._callbacks.port})
        return self._callbacks

    def stop_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            callbacks.stop()

    # -- what the dossier service tells ------------------------------------------------------
    @event_handler(
        events.DOSSIER_TOPIC, events.DOSSIER_SUBMITTED, dossier_events_pb2.DossierSubmitted
    )
    def on_dossier_submitted(self, event: Event, message: Message | None, session: Session) -> None:
        """A dossier was filed: it is known from now on (its fee is asked for later, or never)."""
        assert isinstance(message, dossier_events_pb2.DossierSubmitted)
        dossier_events.dossier_submitted(self, message, session)

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
        dossier_events.dossier_left_payment(self, message, session)

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
        dossier_events.payments_requested(self, requested, session)

    # -- API use cases -----------------------------------------------------------------------
    def create_payment(
        self, principal: Principal, order: PaymentOrder, idempotency_key: str
    ) -> tuple[Payment, bool]:
        """Create a payment for the dossier's open fee request; returns (payment, replayed).

        Idempotent on the caller's key. Amount, agency and payer are the fee request's.
        """
        return api.create_payment(self, principal, order, idempotency_key)

    def get_payment(self, principal: Principal, payment_id: str) -> Payment:
        """One payment, if the caller may see it (others look like it does not exist)."""
        return api.get_payment(self, principal, payment_id)

    def list_payments(self, principal: Principal, dossier_code: str) -> list[Payment]:
        """The dossier's payments the caller may see, oldest first."""
        return api.list_payments(self, principal, dossier_code)

    def cancel_payment(self, principal: Principal, payment_id: str, reason: str) -> Payment:
        """Cancel an open payment; the gateway is told first, so it takes no money after."""
        return api.cancel_payment(self, principal, payment_id, reason)

    def refund_payment(
        self,
        principal: Principal,
        payment_id: str,
        amount_vnd: object,
        reason: str,
        idempotency_key: str,
    ) -> tuple[Refund, Payment, bool]:
        """Refund all or part of a succeeded payment; returns (refund, payment, replayed)."""
        return api.refund_payment(self, principal, payment_id, amount_vnd, reason, idempotency_key)

    # -- gateway callbacks -------------------------------------------------------------------
    def handle_notification(self, gateway_name: str, query: str, client: str = "") -> HttpAnswer:
        """A server-to-server notification (IPN): it settles the payment if every check passes."""
        return callbacks.handle_notification(self, gateway_name, query, client)

    def handle_return(self, gateway_name: str, query: str, client: str = "") -> HttpAnswer:
        """The payer's browser came back from the gateway: the page shows what we know."""
        return callbacks.handle_return(self, gateway_name, query, client)

    def handle_pay_link(self, token: str, client: str = "") -> HttpAnswer:
        """The short link an SMS carries: on to the gateway's page while the payment is open."""
        return callbacks.handle_pay_link(self, token)

    # -- timers ------------------------------------------------------------------------------
    @timer("reconcile_interval_seconds")
    def reconcile(self) -> int:
        """Ask the gateway about payments pending too long and settle them; send again
        refunds whose outcome is still unknown. Returns how many settled."""
        return jobs.reconcile(self)

    def reconcile_payment(self, payment_id: str) -> Payment | None:
        """Ask the gateway about one pending payment; settle it if the gateway has."""
        return jobs.reconcile_payment(self, payment_id)

    @timer("expiry_interval_seconds")
    def expire(self) -> int:
        """Expire open payments whose time is up (after making sure the gateway took no
        money and will take none). Returns how many expired."""
        return jobs.expire(self)

    def expire_payment(self, payment_id: str) -> Payment | None:
        """Expire one payment if its time is up; a gateway that cannot be asked defers it."""
        return jobs.expire_payment(self, payment_id)
