"""What gateways and payers' browsers send back: the server-to-server notification (IPN),
the return from the gateway's page, and the short pay link. Reading the request is the HTTP
adapter's (:mod:`motcua_payment.adapters.callback_http`); the checks are the domain's."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from motcua_kit.db import transaction
from motcua_kit.errors import InvalidArgument
from motcua_payment.adapters import callback_http
from motcua_payment.adapters.gateways.base import Gateway, HttpAnswer
from motcua_payment.domain.callbacks import (
    CallbackRejected,
    Notice,
    Outcome,
    RejectionReason,
    check_fresh,
    check_matches,
    settling_trigger,
)
from motcua_payment.domain.payment import Origin, Payment, valid_pay_token, validate_payment_id
from motcua_payment.domain.states import PaymentState, allowed
from motcua_payment.metrics import CALLBACK_REJECTIONS, CALLBACKS_ACCEPTED
from motcua_payment.usecases import jobs, moves
from motcua_payment.usecases.ports import Ports, log


def handle_notification(ports: Ports, gateway_name: str, query: str, client: str) -> HttpAnswer:
    """A server-to-server notification (IPN): settle the payment if, and only if, it passes
    every check — signature, timestamp, reference, replay, amount, currency, state."""
    gateway = ports.gateways.get(gateway_name)
    if gateway is None:
        return callback_http.unknown_gateway()
    try:
        notice = gateway.parse_notification(callback_http.query_pairs(query))
        tolerance = timedelta(seconds=ports.settings.callback_tolerance_seconds)
        check_fresh(notice, ports.clock(), tolerance)
        _apply_notification(ports, gateway, notice)
    except CallbackRejected as rejected:
        _count_rejection(rejected, gateway_name, "ipn", client)
        return gateway.acknowledge(rejected.reason)
    CALLBACKS_ACCEPTED.labels("ipn").inc()
    return gateway.acknowledge(None)


def _apply_notification(ports: Ports, gateway: Gateway, notice: Notice) -> None:
    reference = notice.reference
    try:
        validate_payment_id("reference", reference)
    except InvalidArgument:
        raise CallbackRejected(
            RejectionReason.UNKNOWN_REFERENCE, "no payment has this reference"
        ) from None
    try:
        with transaction(ports.context.sessions) as session:
            payment = ports.repository.get(session, reference, lock=True)
            if payment is None or payment.gateway != gateway.name:
                raise CallbackRejected(
                    RejectionReason.UNKNOWN_REFERENCE, "no payment has this reference"
                )
            if ports.repository.notice_seen(session, gateway.name, notice.transaction_id):
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
            moves.settle(ports, session, payment, notice, Origin.GATEWAY_NOTIFICATION)
    except IntegrityError:
        # Two copies raced past the check; the replay guard's key let one through.
        raise CallbackRejected(
            RejectionReason.REPLAY,
            f"gateway transaction {notice.transaction_id} was already applied",
            reference,
        ) from None


def handle_return(ports: Ports, gateway_name: str, query: str, client: str) -> HttpAnswer:
    """The payer's browser came back from the gateway. The signed parameters are checked,
    but they settle nothing: the page shows what the service knows, after asking the
    gateway itself (server to server) if the notification has not arrived yet."""
    gateway = ports.gateways.get(gateway_name)
    if gateway is None:
        return callback_http.unknown_gateway()
    try:
        notice = gateway.parse_notification(callback_http.query_pairs(query))
        payment = _known_payment(ports, gateway, notice.reference)
        check_matches(notice, payment)
    except CallbackRejected as rejected:
        _count_rejection(rejected, gateway_name, "return", client)
        return callback_http.refused_page()
    if payment.state is PaymentState.PENDING:
        payment = jobs.reconcile_payment(ports, payment.id) or payment
    portal = ports.settings.portal_result_url
    if portal:
        return callback_http.portal_redirect(portal, payment)
    return callback_http.result_page(payment)


def handle_pay_link(ports: Ports, token: str) -> HttpAnswer:
    """The short link an SMS carries: on to the gateway's page while the payment is open."""
    payment = None
    if valid_pay_token(token):
        with ports.context.sessions() as session:
            payment = ports.repository.by_pay_token(session, token)
    if payment is None:
        return callback_http.unknown_link_page()
    target = payment.pay_link_target(ports.clock())
    if target is None:
        return callback_http.expired_link_page(payment)
    return callback_http.redirect(target)


def _known_payment(ports: Ports, gateway: Gateway, reference: str) -> Payment:
    payment = None
    try:
        pid = validate_payment_id("reference", reference)
        with ports.context.sessions() as session:
            payment = ports.repository.get(session, pid)
    except InvalidArgument:
        pass
    if payment is None or payment.gateway != gateway.name:
        raise CallbackRejected(RejectionReason.UNKNOWN_REFERENCE, "no payment has this reference")
    return payment


def _count_rejection(rejected: CallbackRejected, gateway: str, kind: str, client: str) -> None:
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
