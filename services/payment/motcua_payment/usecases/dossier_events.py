"""What the dossier service tells: a dossier is known, its fee is asked for, it left
"payment required". Each runs in the consumer's transaction (``session``)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from motcua.dossier.v1 import events_pb2 as dossier_events_pb2
from motcua_kit.consumer import PermanentError
from motcua_kit.envelope import Event
from motcua_kit.errors import InvalidArgument
from motcua_payment.adapters.messages import actor_from_proto, fee_of
from motcua_payment.domain.fees import DossierFee, FeeState, PaymentOrder, payment_request
from motcua_payment.domain.payment import Origin, event_scope, live_payment
from motcua_payment.usecases import moves
from motcua_payment.usecases.ports import Ports, log


def dossier_submitted(
    ports: Ports, message: dossier_events_pb2.DossierSubmitted, session: Session
) -> None:
    """A dossier was filed: it is known from now on (its fee is asked for later, or never)."""
    if ports.repository.fee(session, message.dossier.code) is None:
        ports.repository.save_fee(session, fee_of(message.dossier), ports.clock())


def dossier_left_payment(
    ports: Ports, message: dossier_events_pb2.DossierStatusChanged, session: Session
) -> None:
    """The dossier left "payment required": its fee request is closed, nothing more is paid."""
    fee = ports.repository.fee(session, message.dossier.code, lock=True)
    if fee is not None and fee.state is FeeState.OPEN:
        ports.repository.save_fee(session, fee.closed(), ports.clock())


def payments_requested(
    ports: Ports, requested: Sequence[tuple[Event, Message | None]], session: Session
) -> None:
    """Open the dossiers' fee requests and create their payments, in the events' order: the
    fee facts and payments are read (and locked) in one query each, and the new fee requests,
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
    ports.repository.fees(session, codes, lock=True)  # serialise with API creates
    existing = ports.repository.for_dossiers(session, codes, lock=True)
    fees: dict[str, DossierFee] = {}
    new: list[moves.NewPayment] = []
    opened: set[str] = set()
    for event, message in wanted:
        dossier = message.dossier
        try:
            known = fee_of(dossier)
            fee = known.requested(dossier.fee_vnd, event.id, known.payer)
            request = payment_request(PaymentOrder(dossier.code), fee)
        except InvalidArgument as exc:
            raise PermanentError(f"unusable payment_requested event: {exc.message}") from exc
        fees[dossier.code] = fee
        live = live_payment(existing.get(request.dossier_code, []))
        if live is not None or request.dossier_code in opened:
            log.info("dossier %s already has a live payment: no new one", dossier.code)
            continue
        opened.add(request.dossier_code)
        actor = actor_from_proto(message.actor)
        new.append(
            moves.NewPayment(
                request, event_scope(event.id), request.fingerprint(), actor, Origin.DOSSIER_EVENT
            )
        )
    ports.repository.save_fees(session, list(fees.values()), ports.clock())
    moves.create_many(ports, session, new)
