"""The timers' work: ask the gateway about payments pending too long (and send again refunds
whose outcome is unknown), and expire payments whose time is up. One payment at a time, each
in its own transactions, so one failure stops nothing else."""

from __future__ import annotations

from datetime import timedelta

from motcua_kit.db import transaction
from motcua_kit.tracing import tracer
from motcua_payment.adapters.gateways.base import GatewayUnavailable
from motcua_payment.domain.payment import SYSTEM, Origin, Payment
from motcua_payment.domain.states import OPEN_STATES, PaymentState, Trigger
from motcua_payment.metrics import GATEWAY_ERRORS, RECONCILIATIONS
from motcua_payment.usecases import moves
from motcua_payment.usecases.ports import Ports, gateway, log

_tracer = tracer("motcua.payment.timers")


def reconcile(ports: Ports) -> int:
    """Ask the gateway about payments pending longer than the threshold and settle them;
    send again refunds whose outcome is still unknown. Returns how many settled."""
    s = ports.settings
    now = ports.clock()
    before = now - timedelta(seconds=s.reconcile_after_seconds)
    with ports.context.sessions() as session:
        pending = ports.repository.pending_since(session, before, now, s.reconcile_batch_size)
        in_flight = ports.repository.refunds_in_flight(session, before, s.reconcile_batch_size)
    settled = 0
    for payment_id in pending:
        try:
            with _tracer.start_as_current_span(
                "reconcile payment", attributes={"motcua.payment_id": payment_id}
            ):
                after = reconcile_payment(ports, payment_id)
        except Exception:
            log.exception("reconciling payment %s failed", payment_id)
            continue
        if after is not None and after.state is not PaymentState.PENDING:
            settled += 1
    for payment_id, refund_id in in_flight:
        try:
            moves.send_refund(ports, payment_id, refund_id, Origin.RECONCILIATION)
        except Exception:
            log.exception("retrying refund %s failed", refund_id)
    return settled


def reconcile_payment(ports: Ports, payment_id: str) -> Payment | None:
    """Ask the gateway about one pending payment; settle it if the gateway has."""
    with ports.context.sessions() as session:
        payment = ports.repository.get(session, payment_id)
    if payment is None or payment.state is not PaymentState.PENDING:
        return payment
    try:
        notice = gateway(ports, payment.gateway).query(payment)
    except GatewayUnavailable as exc:
        GATEWAY_ERRORS.labels("query").inc()
        RECONCILIATIONS.labels("gateway_error").inc()
        log.warning("reconciling %s: gateway unavailable: %s", payment.id, exc)
        return payment
    if not notice.settles:
        RECONCILIATIONS.labels(f"still_{notice.outcome.value}").inc()
        return payment
    return moves.settle_from_gateway(ports, payment.id, notice, Origin.RECONCILIATION)


def expire(ports: Ports) -> int:
    """Expire open payments whose time is up (after making sure the gateway took no
    money and will take none). Returns how many expired."""
    now = ports.clock()
    with ports.context.sessions() as session:
        due = ports.repository.expiring(session, now, ports.settings.reconcile_batch_size)
    expired = 0
    for payment_id in due:
        try:
            with _tracer.start_as_current_span(
                "expire payment", attributes={"motcua.payment_id": payment_id}
            ):
                after = expire_payment(ports, payment_id)
        except Exception:
            log.exception("expiring payment %s failed", payment_id)
            continue
        if after is not None and after.state is PaymentState.EXPIRED:
            expired += 1
    return expired


def expire_payment(ports: Ports, payment_id: str) -> Payment | None:
    """Expire one payment if its time is up; a gateway that cannot be asked defers it."""
    now = ports.clock()
    with ports.context.sessions() as session:
        payment = ports.repository.get(session, payment_id)
    if payment is None or payment.state not in OPEN_STATES or payment.expires_at > now:
        return payment
    try:
        # Cancel, not query: the gateway must also stop taking money for it.
        notice = gateway(ports, payment.gateway).cancel(payment)
    except GatewayUnavailable as exc:
        GATEWAY_ERRORS.labels("cancel").inc()
        log.warning("expiring %s deferred: gateway unavailable: %s", payment.id, exc)
        return payment
    if notice.settles and payment.state is PaymentState.PENDING:
        return moves.settle_from_gateway(ports, payment.id, notice, Origin.EXPIRY)
    with transaction(ports.context.sessions) as session:
        current = ports.repository.get(session, payment_id, lock=True)
        assert current is not None
        if current.state not in OPEN_STATES:
            return current
        after = current.expired(now)
        moves.change(ports, session, current, after, Trigger.EXPIRE, Origin.EXPIRY, SYSTEM, now)
    return after
