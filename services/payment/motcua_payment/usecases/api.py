"""What API callers ask: create, read, list, cancel and refund payments. Each call checks the
caller's rights (:mod:`motcua_payment.domain.access`) and runs its own transactions."""

from __future__ import annotations

from sqlalchemy.orm import Session

from motcua_kit.auth import Principal
from motcua_kit.db import transaction
from motcua_kit.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound, Refusal
from motcua_kit.idempotency import idempotent
from motcua_kit.transitions import IllegalTransition
from motcua_payment.adapters.gateways.base import GatewayUnavailable
from motcua_payment.domain.access import actor_of, idempotency_scope, may_see
from motcua_payment.domain.fees import (
    DossierFee,
    PaymentOrder,
    authorise_payment_for,
    payment_request,
)
from motcua_payment.domain.payment import (
    Origin,
    Payment,
    Refund,
    cancel_reason,
    check_no_live_payment,
    new_id,
    refund_fingerprint,
    validate_amount,
    validate_dossier_code,
    validate_idempotency_key,
    validate_payment_id,
)
from motcua_payment.domain.states import Trigger, allowed
from motcua_payment.metrics import GATEWAY_ERRORS
from motcua_payment.usecases import moves
from motcua_payment.usecases.ports import Ports, gateway, log


def create_payment(
    ports: Ports, principal: Principal, order: PaymentOrder, idempotency_key: str
) -> tuple[Payment, bool]:
    """Create a payment for the dossier's open fee request; returns (payment, replayed).

    Idempotent on the caller's key. Amount, agency and payer are the fee request's. A
    concurrent create that wins the race (same key, or an open payment of the same dossier)
    is replayed or refused with the reason by the helper's one retry.
    """
    validate_idempotency_key("idempotency_key", idempotency_key)
    scope = idempotency_scope(principal, idempotency_key)
    fingerprint = order.fingerprint()

    def find(session: Session, sc: str) -> tuple[Payment, str] | None:
        # The fee fact's row lock serialises creates for one dossier; the key is looked up
        # after it, so a concurrent create with the same key that committed meanwhile is
        # replayed, not taken for another open payment.
        _locked_fee_and_payments(ports, session, principal, order)
        return ports.repository.by_scope(session, sc)

    def create(session: Session, sc: str) -> Payment:
        fee, existing = _locked_fee_and_payments(ports, session, principal, order)
        request = payment_request(order, fee)
        check_no_live_payment(request.dossier_code, existing)
        new = moves.NewPayment(request, sc, fingerprint, actor_of(principal), Origin.API)
        [payment] = moves.create_many(ports, session, [new])
        return payment

    return idempotent(
        ports.context.sessions,
        scope,
        fingerprint,
        find=find,
        create=create,
        refuse=lambda payment: AlreadyExists(
            "idempotency_key was already used for a different payment "
            f"request (payment {payment.id}); use a new key for a new payment"
        ),
    )


def _locked_fee_and_payments(
    ports: Ports, session: Session, principal: Principal, order: PaymentOrder
) -> tuple[DossierFee, list[Payment]]:
    """The dossier's fee request (if the caller may pay it) and its payments, locked.

    ``find`` takes the locks; ``create``, in the same transaction, reads the rows it holds.
    """
    fee = authorise_payment_for(
        principal, ports.repository.fee(session, order.dossier_code, lock=True), order.dossier_code
    )
    return fee, ports.repository.for_dossier(session, order.dossier_code, lock=True)


def get_payment(ports: Ports, principal: Principal, payment_id: str) -> Payment:
    """One payment, if the caller may see it (others look like it does not exist)."""
    pid = validate_payment_id("payment_id", payment_id)
    with ports.context.sessions() as session:
        payment = ports.repository.get(session, pid)
    if payment is None or not may_see(principal, payment):
        raise NotFound(f"payment {pid} not found")
    return payment


def list_payments(ports: Ports, principal: Principal, dossier_code: str) -> list[Payment]:
    """The dossier's payments the caller may see, oldest first."""
    code = validate_dossier_code("dossier_code", dossier_code)
    with ports.context.sessions() as session:
        found = ports.repository.for_dossier(session, code)
    return [p for p in found if may_see(principal, p)]


def cancel_payment(ports: Ports, principal: Principal, payment_id: str, reason: str) -> Payment:
    """Cancel an open payment; the gateway is told first, so it takes no money after."""
    payment = get_payment(ports, principal, payment_id)
    why = cancel_reason(reason)
    if not allowed(payment.state, Trigger.CANCEL):
        raise IllegalTransition("the payment", payment.state, Trigger.CANCEL)
    try:
        notice = gateway(ports, payment.gateway).cancel(payment)
    except GatewayUnavailable as exc:
        GATEWAY_ERRORS.labels("cancel").inc()
        log.warning("cancel of %s: gateway unavailable: %s", payment.id, exc)
        raise Aborted(
            "the payment gateway could not be reached to stop the payment; try again"
        ) from exc
    if notice.settles:
        # The payer was faster: record what the gateway says, and refuse the cancel.
        settled = moves.settle_from_gateway(ports, payment.id, notice, Origin.API)
        raise FailedPrecondition(
            f"the payment is already {settled.state.value} at the gateway; it cannot cancel"
        )
    actor = actor_of(principal)
    refusal: Refusal | None = None
    with transaction(ports.context.sessions) as session:
        current = ports.repository.get(session, payment.id, lock=True)
        assert current is not None
        if not allowed(current.state, Trigger.CANCEL):
            refusal = IllegalTransition("the payment", current.state, Trigger.CANCEL)
        else:
            now = ports.clock()
            after = current.cancelled(now)
            moves.change(
                ports, session, current, after, Trigger.CANCEL, Origin.API, actor, now, reason=why
            )
    if refusal is not None:
        raise refusal
    return after


def refund_payment(
    ports: Ports,
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
    scope = idempotency_scope(principal, idempotency_key)
    fingerprint = refund_fingerprint(pid, amount, reason)
    actor = actor_of(principal)

    def find(session: Session, sc: str) -> tuple[tuple[str, str], str] | None:
        earlier = ports.repository.refund_by_scope(session, sc)
        if earlier is None:
            return None
        earlier_payment, earlier_refund, earlier_fingerprint = earlier
        return (earlier_payment, earlier_refund), earlier_fingerprint

    def create(session: Session, sc: str) -> tuple[str, str]:
        payment = ports.repository.get(session, pid, lock=True)
        if payment is None or not may_see(principal, payment):
            raise NotFound(f"payment {pid} not found")
        now = ports.clock()
        refund = payment.request_refund(
            refund_id=new_id(), amount_vnd=amount, reason=reason, actor=actor, now=now
        )
        ports.repository.add_refund(session, refund, sc, fingerprint)
        moves.record(
            ports,
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
        return payment.id, refund.id

    (refunded, refund_id), replayed = idempotent(
        ports.context.sessions,
        scope,
        fingerprint,
        find=find,
        create=create,
        refuse=lambda earlier: AlreadyExists(
            "idempotency_key was already used for a different refund "
            f"(refund {earlier[1]}); use a new key for a new refund"
        ),
    )
    moves.send_refund(ports, refunded, refund_id, Origin.API)
    with ports.context.sessions() as session:
        after = ports.repository.get(session, refunded)
    assert after is not None
    return after.refund(refund_id), after, replayed
