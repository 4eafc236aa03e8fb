"""Use case: the payment service's events for a batch, applied to the dossiers they name.

A payment announced (requested) for a dossier's open fee request is remembered; a success of
an announced payment moves the dossier out of "payment required", once. Any other success is
refused (:func:`~motcua_dossier.domain.fee.payment_refusal` decides), logged and published as a
``PaymentRefused`` event for the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from motcua_dossier import events
from motcua_dossier.adapters import messages
from motcua_dossier.domain.dossier import Actor, Dossier
from motcua_dossier.domain.fee import PaymentClaim, PaymentRefusal, payment_refusal
from motcua_dossier.metrics import count_refusals
from motcua_kit.db import on_commit
from motcua_kit.envelope import Event

if TYPE_CHECKING:
    from motcua_dossier.service import DossierService

log = logging.getLogger(__name__)

PAYMENT_SERVICE = Actor("motcua-payment", "service", "")


def on_payment_events(
    svc: DossierService, received: Sequence[tuple[Event, Message | None]], session: Session
) -> None:
    """The payment handlers for a batch of payment events, in order. The batch's dossiers
    (locked, in code order) and announced payments are read with one query each;
    announcements, settlements and events are written with one statement each, and each
    dossier that moved with one update."""
    claims = [(event, messages.payment_claim(message)) for event, message in received]
    found = svc.repository.get_many(session, sorted({e.subject for e, _c in claims}))
    announced = svc.repository.fee_payments(session, [c.payment_id for _e, c in claims])
    now = svc.clock()
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
            published.append(_refusal(svc, event, claim, dossier, refused, now))
            refusals.append(refused)
            continue
        assert dossier is not None
        done, moved = svc.apply(dossier, "pay", PAYMENT_SERVICE, f"payment event {event.id}", now)
        read_versions.setdefault(dossier.code, dossier.version)
        found[dossier.code] = done.dossier
        announced[claim.payment_id] = (claim, True)
        settled.append(claim.payment_id)
        published.append(moved)
        svc.count_completion(done)
    svc.repository.add_fee_payments(session, new_claims, now)
    for code, version in read_versions.items():
        svc.save(session, found[code], version)
    svc.repository.fee_payments_settled(session, settled, now)
    svc.publish_events(session, published)
    if refusals:
        on_commit(session, lambda: count_refusals(refusals))


def _refusal(
    svc: DossierService,
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
    message = messages.payment_refused(event.subject, dossier, claim, event.id, refused, now)
    return svc.event(events.PAYMENT_REFUSED, event.subject, message, now)
