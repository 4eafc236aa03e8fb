"""The state changes every use case shares: create payments, settle them, save a change with
its history row and event, send a refund. Each runs in the caller's transaction unless it says
it opens its own; gateway calls happen between transactions, never under a row lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from motcua_kit.db import on_commit, transaction
from motcua_kit.envelope import Event
from motcua_payment.adapters import db
from motcua_payment.adapters.gateways.base import GatewayUnavailable
from motcua_payment.adapters.messages import payment_event
from motcua_payment.domain.callbacks import (
    CallbackRejected,
    Notice,
    check_matches,
    settling_trigger,
)
from motcua_payment.domain.payment import (
    SYSTEM,
    Actor,
    Origin,
    Payment,
    PaymentRequest,
    Receipt,
    Refund,
    new_id,
    new_pay_token,
    receipt_number,
)
from motcua_payment.domain.states import PaymentState, RefundState, State, Trigger, publishes
from motcua_payment.metrics import (
    GATEWAY_ERRORS,
    PAYMENTS,
    RECONCILIATIONS,
    REFUNDS,
    SETTLEMENT_SECONDS,
)
from motcua_payment.usecases.ports import Ports, gateway, log


@dataclass(frozen=True)
class NewPayment:
    """A payment to create: the request, the idempotency scope and who asked, from where."""

    request: PaymentRequest
    scope: str
    fingerprint: str
    actor: Actor
    origin: Origin


def create_many(ports: Ports, session: Session, new: Sequence[NewPayment]) -> list[Payment]:
    """Create payments (CREATED, then PENDING with the gateway's redirect), their history
    and their ``payment.requested`` events: one statement per table for all of them."""
    if not new:
        return []
    s = ports.settings
    gw = gateway(ports, s.gateway)
    now = ports.clock()
    base = s.callback_base()
    return_url = f"{base}/payment/{gw.name}/return"
    rows: list[tuple[Payment, str, str]] = []
    moves: list[db.Moved] = []
    published: list[Event] = []
    for n in new:
        payment = Payment.new(
            n.request,
            payment_id=new_id(),
            gateway=gw.name,
            created_by=n.actor,
            now=now,
            expires_at=now + timedelta(seconds=s.payment_expiry_seconds),
        )
        token = new_pay_token()
        started = payment.started(gw.redirect_url(payment, return_url), token, f"{base}/p/{token}")
        rows.append((started, n.scope, n.fingerprint))
        moves += [
            db.Moved(payment.id, None, None, payment.state, n.origin, n.actor, now),
            db.Moved(
                payment.id, payment.state, Trigger.START, started.state, n.origin, n.actor, now
            ),
        ]
        event_type = publishes(payment.state, Trigger.START)
        published.append(payment_event(started, event_type, payment.state, n.origin, n.actor, now))
    ports.repository.add_many(session, rows)
    ports.repository.record_transitions(session, moves)
    ports.publish_events(session, published)
    on_commit(session, lambda: PAYMENTS.labels("requested").inc(len(rows)))
    return [p for p, _scope, _fingerprint in rows]


def settle_from_gateway(ports: Ports, payment_id: str, notice: Notice, origin: Origin) -> Payment:
    """Apply what the gateway said when asked (query or cancel): trusted, still checked."""
    with transaction(ports.context.sessions) as session:
        current = ports.repository.get(session, payment_id, lock=True)
        assert current is not None
        if current.state is not PaymentState.PENDING:
            return current
        if notice.transaction_id and ports.repository.notice_seen(
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
        after = settle(ports, session, current, notice, origin)
        on_commit(session, lambda: RECONCILIATIONS.labels("settled").inc())
    return after


def settle(
    ports: Ports, session: Session, payment: Payment, notice: Notice, origin: Origin
) -> Payment:
    """Succeed (with the next receipt number) or fail the payment, as the gateway said."""
    now = ports.clock()
    if notice.transaction_id:
        ports.repository.record_notice(
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
        year = now.astimezone(ZoneInfo(ports.settings.timezone)).year
        sequence = ports.repository.next_receipt_sequence(session, payment.agency_code, year)
        receipt = Receipt(receipt_number(payment.agency_code, year, sequence), now)
        after = payment.succeeded(notice.transaction_id, receipt, now)
    else:
        after = payment.failed(notice.transaction_id, notice.code or "failed", now)
    change(ports, session, payment, after, trigger, origin, SYSTEM, now)
    return after


def change(
    ports: Ports,
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
    ports.repository.save(session, after)
    record(ports, session, after.id, before.state, trigger, after.state, origin, actor, now)
    event_type = publishes(before.state, trigger)
    assert event_type, f"{trigger.value} from {before.state.value} publishes no event"
    publish(ports, session, after, event_type, before.state, origin, actor, now, reason=reason)
    outcome = "requested" if after.state is PaymentState.PENDING else after.state.value
    elapsed = max((now - after.created_at).total_seconds(), 0.0)

    def count() -> None:
        PAYMENTS.labels(outcome).inc()
        if after.settled_at is not None:
            SETTLEMENT_SECONDS.labels(outcome).observe(elapsed)

    on_commit(session, count)


def send_refund(ports: Ports, payment_id: str, refund_id: str, origin: Origin) -> None:
    """Ask the gateway to refund; settle the refund with its answer. An unreachable
    gateway leaves it REQUESTED for the reconciliation job to send again."""
    with ports.context.sessions() as session:
        payment = ports.repository.get(session, payment_id)
    assert payment is not None
    refund = payment.refund(refund_id)
    if refund.state is not RefundState.REQUESTED:
        return
    try:
        outcome = gateway(ports, payment.gateway).refund(payment, refund)
    except GatewayUnavailable as exc:
        GATEWAY_ERRORS.labels("refund").inc()
        log.warning("refund %s: gateway unavailable, will retry: %s", refund_id, exc)
        return
    now = ports.clock()
    with transaction(ports.context.sessions) as session:
        current = ports.repository.get(session, payment_id, lock=True)
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
        ports.repository.save_refund(session, settled)
        record(
            ports,
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
        publish(
            ports,
            session,
            after,
            publishes(pending.state, trigger),
            after.state,
            origin,
            pending.requested_by,
            now,
            # The officer's words; for a failure, the gateway's message says why.
            reason=pending.reason if outcome.succeeded else outcome.message or pending.reason,
            refund=settled,
        )
        on_commit(session, lambda: REFUNDS.labels(settled.state.value).inc())


def record(
    ports: Ports,
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
    """One history row: the move, what caused it and who."""
    ports.repository.record_transition(
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


def publish(
    ports: Ports,
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
    """Put the change's event in the outbox, in the caller's transaction."""
    event = payment_event(
        payment, event_type, previous, origin, actor, now, reason=reason, refund=refund
    )
    ports.publish_events(session, [event])
