"""The payment service's tables and the repository that maps them to domain objects.

Serialisation: every change to a payment first takes its row lock (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers), and the replay guard
``gateway_notices`` has the gateway's transaction number as its primary key — so however many
copies of one notification race, one settles the payment and the rest see it settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    exists,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from motcua_kit.consumer import inbox_table
from motcua_kit.db import aware, utc
from motcua_kit.outbox import outbox_table
from motcua_payment.domain.fees import DossierFee, FeeState
from motcua_payment.domain.payment import (
    Actor,
    Origin,
    Payer,
    Payment,
    Receipt,
    Refund,
)
from motcua_payment.domain.states import OPEN_STATES, PaymentState, RefundState, State, Trigger

metadata = MetaData()

_ID = BigInteger().with_variant(Integer(), "sqlite")

payments = Table(
    "payments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("dossier_code", String(40), nullable=False),
    Column("agency_code", String(20), nullable=False),
    Column("amount_vnd", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("payer_full_name", String(200), nullable=False),
    Column("payer_citizen_id", String(12), nullable=False),
    Column("payer_phone", String(15), nullable=False),
    Column("payer_email", String(254), nullable=False),
    Column("gateway", String(40), nullable=False),
    Column("redirect_url", Text, nullable=False),
    Column("pay_token", String(16), nullable=True, unique=True),
    Column("pay_url", Text, nullable=False, default=""),
    Column("gateway_transaction_id", String(64), nullable=False),
    Column("failure_code", String(16), nullable=False),
    Column("receipt_number", String(40), nullable=True, unique=True),
    Column("receipt_issued_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("created_by_subject", String(200), nullable=False),
    Column("created_by_role", String(20), nullable=False),
    Column("created_by_agency", String(20), nullable=False),
    Column("idempotency_scope", String(400), nullable=False, unique=True),
    Column("request_fingerprint", String(64), nullable=False),
    Index("ix_payments_dossier", "dossier_code"),
    Index("ix_payments_payer", "payer_citizen_id"),
    Index("ix_payments_state_created", "state", "created_at"),
    Index("ix_payments_state_expires", "state", "expires_at"),
    # At most one open payment per dossier: a payer never holds two live links for one fee.
    Index(
        "ux_payments_open_dossier",
        "dossier_code",
        unique=True,
        postgresql_where=Column("state").in_(["created", "pending"]),
        sqlite_where=Column("state").in_(["created", "pending"]),
    ),
)

#: What this service knows of each dossier, from the dossier service's own events only
#: (submitted, payment_requested, and the moves out of "payment required"): ADR 0022.
dossier_fees = Table(
    "dossier_fees",
    metadata,
    Column("dossier_code", String(40), primary_key=True),
    Column("agency_code", String(20), nullable=False),
    Column("procedure_code", String(40), nullable=False),
    Column("state", String(8), nullable=False),
    Column("amount_vnd", BigInteger, nullable=True),
    Column("payer_full_name", String(200), nullable=False),
    Column("payer_citizen_id", String(12), nullable=False),
    Column("payer_phone", String(15), nullable=False),
    Column("payer_email", String(254), nullable=False),
    Column("request_event_id", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("payment_id", String(32), ForeignKey("payments.id"), nullable=False),
    Column("amount_vnd", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(255), nullable=False),
    Column("gateway_transaction_id", String(64), nullable=False),
    Column("failure_code", String(16), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("requested_by_subject", String(200), nullable=False),
    Column("requested_by_role", String(20), nullable=False),
    Column("requested_by_agency", String(20), nullable=False),
    Column("idempotency_scope", String(400), nullable=False, unique=True),
    Column("request_fingerprint", String(64), nullable=False),
    Index("ix_refunds_payment", "payment_id"),
    Index("ix_refunds_state_requested", "state", "requested_at"),
)

# Per-agency yearly sequence behind receipt numbers; taken inside the success transaction, so
# a rolled-back settlement gives its number back and numbers stay consecutive.
receipt_sequences = Table(
    "receipt_sequences",
    metadata,
    Column("agency_code", String(20), nullable=False),
    Column("year", Integer, nullable=False),
    Column("last_value", Integer, nullable=False),
    PrimaryKeyConstraint("agency_code", "year", name="pk_receipt_sequences"),
)

# The replay guard: one row per gateway transaction applied (by callback or reconciliation).
gateway_notices = Table(
    "gateway_notices",
    metadata,
    Column("gateway", String(40), nullable=False),
    Column("transaction_id", String(64), nullable=False),
    Column("payment_id", String(32), ForeignKey("payments.id"), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("gateway", "transaction_id", name="pk_gateway_notices"),
)

# Every state change of a payment or refund, in order: the trail an operator reads.
payment_history = Table(
    "payment_history",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("payment_id", String(32), ForeignKey("payments.id"), nullable=False),
    Column("refund_id", String(32), nullable=True),
    Column("from_state", String(16), nullable=True),
    Column("trigger", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("actor_subject", String(200), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("ix_payment_history_payment", "payment_id", "id"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


@dataclass(frozen=True)
class Moved:
    """One history row: a payment (or one of its refunds) moved from ``source`` to ``target``."""

    payment_id: str
    source: State | None
    trigger: Trigger | None
    target: State
    origin: Origin
    actor: Actor
    at: datetime
    refund_id: str | None = None


class PaymentRepository:
    """Reads and writes payments inside the caller's transaction."""

    # -- payments ----------------------------------------------------------------------------
    def add(self, session: Session, payment: Payment, scope: str, fingerprint: str) -> None:
        self.add_many(session, [(payment, scope, fingerprint)])

    def add_many(self, session: Session, new: Sequence[tuple[Payment, str, str]]) -> None:
        """Insert payments, each with its idempotency scope and request fingerprint: one
        statement for all of them."""
        rows = [
            {
                "id": payment.id,
                "dossier_code": payment.dossier_code,
                "agency_code": payment.agency_code,
                "amount_vnd": payment.amount_vnd,
                "currency": payment.currency,
                "description": payment.description,
                "payer_full_name": payment.payer.full_name,
                "payer_citizen_id": payment.payer.citizen_id,
                "payer_phone": payment.payer.phone,
                "payer_email": payment.payer.email,
                "gateway": payment.gateway,
                "created_at": utc(payment.created_at),
                "expires_at": utc(payment.expires_at),
                "created_by_subject": payment.created_by.subject,
                "created_by_role": payment.created_by.role,
                "created_by_agency": payment.created_by.agency_code,
                "idempotency_scope": scope,
                "request_fingerprint": fingerprint,
                **self._changing(payment),
            }
            for payment, scope, fingerprint in new
        ]
        if rows:
            session.execute(insert(payments), rows)

    def save(self, session: Session, payment: Payment) -> None:
        """Write what a state change may alter (the rest never changes)."""
        session.execute(
            update(payments).where(payments.c.id == payment.id).values(**self._changing(payment))
        )

    @staticmethod
    def _changing(payment: Payment) -> dict[str, Any]:
        return {
            "state": payment.state.value,
            "redirect_url": payment.redirect_url,
            "pay_token": payment.pay_token or None,
            "pay_url": payment.pay_url,
            "gateway_transaction_id": payment.gateway_transaction_id,
            "failure_code": payment.failure_code,
            "receipt_number": payment.receipt.number if payment.receipt else None,
            "receipt_issued_at": utc(payment.receipt.issued_at) if payment.receipt else None,
            "settled_at": utc(payment.settled_at),
        }

    def get(self, session: Session, payment_id: str, *, lock: bool = False) -> Payment | None:
        query = select(payments).where(payments.c.id == payment_id)
        if lock:
            query = query.with_for_update()
        row = session.execute(query).first()
        if row is None:
            return None
        return self._to_domain(row._mapping, self._refunds_of(session, [payment_id]))

    def by_pay_token(self, session: Session, token: str) -> Payment | None:
        row = session.execute(select(payments).where(payments.c.pay_token == token)).first()
        if row is None:
            return None
        return self._to_domain(row._mapping, self._refunds_of(session, [row.id]))

    def for_dossier(self, session: Session, code: str, *, lock: bool = False) -> list[Payment]:
        """The dossier's payments, oldest first (locked: no one settles them meanwhile)."""
        return self.for_dossiers(session, [code], lock=lock).get(code, [])

    def for_dossiers(
        self, session: Session, codes: Sequence[str], *, lock: bool = False
    ) -> dict[str, list[Payment]]:
        """Each dossier's payments, oldest first, by dossier code (absent: none); two queries
        however many dossiers."""
        if not codes:
            return {}
        query = (
            select(payments)
            .where(payments.c.dossier_code.in_(list(codes)))
            .order_by(payments.c.created_at, payments.c.id)
        )
        if lock:
            query = query.with_for_update()
        rows = session.execute(query).all()
        found = self._refunds_of(session, [r.id for r in rows])
        out: dict[str, list[Payment]] = {}
        for r in rows:
            out.setdefault(r.dossier_code, []).append(self._to_domain(r._mapping, found))
        return out

    def by_scope(self, session: Session, scope: str) -> tuple[Payment, str] | None:
        """The payment created under an idempotency scope, with its request fingerprint."""
        row = session.execute(select(payments).where(payments.c.idempotency_scope == scope)).first()
        if row is None:
            return None
        found = self._refunds_of(session, [row.id])
        return self._to_domain(row._mapping, found), row.request_fingerprint

    # -- dossier fees ------------------------------------------------------------------------
    def fee(self, session: Session, code: str, *, lock: bool = False) -> DossierFee | None:
        """The dossier's fee fact (locked: creates for one dossier are serialised on it)."""
        return self.fees(session, [code], lock=lock).get(code)

    def fees(
        self, session: Session, codes: Sequence[str], *, lock: bool = False
    ) -> dict[str, DossierFee]:
        """The fee facts of the dossiers that have one, by code: one query (locked in code
        order, so two batches locking overlapping dossiers cannot deadlock)."""
        if not codes:
            return {}
        query = (
            select(dossier_fees)
            .where(dossier_fees.c.dossier_code.in_(list(codes)))
            .order_by(dossier_fees.c.dossier_code)
        )
        if lock:
            query = query.with_for_update()
        out: dict[str, DossierFee] = {}
        for row in session.execute(query):
            m = row._mapping
            out[m["dossier_code"]] = DossierFee(
                dossier_code=m["dossier_code"],
                agency_code=m["agency_code"],
                procedure_code=m["procedure_code"],
                payer=Payer(
                    m["payer_full_name"], m["payer_citizen_id"], m["payer_phone"], m["payer_email"]
                ),
                state=FeeState(m["state"]),
                amount_vnd=None if m["amount_vnd"] is None else int(m["amount_vnd"]),
                request_event_id=m["request_event_id"],
            )
        return out

    def save_fee(self, session: Session, fee: DossierFee, now: datetime) -> None:
        """Insert or replace the dossier's fee fact."""
        self.save_fees(session, [fee], now)

    def save_fees(self, session: Session, fees: Sequence[DossierFee], now: datetime) -> None:
        """Insert or replace fee facts (one per dossier): one statement."""
        rows = [
            {
                "dossier_code": fee.dossier_code,
                "agency_code": fee.agency_code,
                "procedure_code": fee.procedure_code,
                "state": fee.state.value,
                "amount_vnd": fee.amount_vnd,
                "payer_full_name": fee.payer.full_name,
                "payer_citizen_id": fee.payer.citizen_id,
                "payer_phone": fee.payer.phone,
                "payer_email": fee.payer.email,
                "request_event_id": fee.request_event_id,
                "updated_at": utc(now),
            }
            for fee in fees
        ]
        if not rows:
            return
        dialect = session.get_bind().dialect.name
        ins: Any = (postgresql if dialect == "postgresql" else sqlite).insert(dossier_fees)
        replaced = {k: ins.excluded[k] for k in rows[0] if k != "dossier_code"}
        session.execute(
            ins.on_conflict_do_update(index_elements=["dossier_code"], set_=replaced), rows
        )

    # -- the timers' work lists --------------------------------------------------------------
    def pending_since(
        self, session: Session, before: datetime, not_expired_at: datetime, limit: int
    ) -> list[str]:
        """Pending payments created before ``before`` that have not reached their expiry."""
        return list(
            session.scalars(
                select(payments.c.id)
                .where(
                    payments.c.state == PaymentState.PENDING.value,
                    payments.c.created_at <= utc(before),
                    payments.c.expires_at > utc(not_expired_at),
                )
                .order_by(payments.c.created_at)
                .limit(limit)
            )
        )

    def expiring(self, session: Session, now: datetime, limit: int) -> list[str]:
        """Open payments whose expiry time has come."""
        return list(
            session.scalars(
                select(payments.c.id)
                .where(
                    payments.c.state.in_([s.value for s in OPEN_STATES]),
                    payments.c.expires_at <= utc(now),
                )
                .order_by(payments.c.expires_at)
                .limit(limit)
            )
        )

    def refunds_in_flight(
        self, session: Session, before: datetime, limit: int
    ) -> list[tuple[str, str]]:
        """(payment id, refund id) of refunds still REQUESTED since before ``before``."""
        rows = session.execute(
            select(refunds.c.payment_id, refunds.c.id)
            .where(
                refunds.c.state == RefundState.REQUESTED.value,
                refunds.c.requested_at <= utc(before),
            )
            .order_by(refunds.c.requested_at)
            .limit(limit)
        ).all()
        return [(r.payment_id, r.id) for r in rows]

    # -- refunds -----------------------------------------------------------------------------
    def add_refund(self, session: Session, refund: Refund, scope: str, fingerprint: str) -> None:
        session.execute(
            insert(refunds).values(
                id=refund.id,
                payment_id=refund.payment_id,
                amount_vnd=refund.amount_vnd,
                reason=refund.reason,
                requested_at=utc(refund.requested_at),
                requested_by_subject=refund.requested_by.subject,
                requested_by_role=refund.requested_by.role,
                requested_by_agency=refund.requested_by.agency_code,
                idempotency_scope=scope,
                request_fingerprint=fingerprint,
                **self._refund_changing(refund),
            )
        )

    def save_refund(self, session: Session, refund: Refund) -> None:
        session.execute(
            update(refunds).where(refunds.c.id == refund.id).values(**self._refund_changing(refund))
        )

    @staticmethod
    def _refund_changing(refund: Refund) -> dict[str, Any]:
        return {
            "state": refund.state.value,
            "gateway_transaction_id": refund.gateway_transaction_id,
            "failure_code": refund.failure_code,
            "settled_at": utc(refund.settled_at),
        }

    def refund_by_scope(self, session: Session, scope: str) -> tuple[str, str, str] | None:
        """(payment id, refund id, fingerprint) of the refund made under a scope."""
        row = session.execute(
            select(refunds.c.payment_id, refunds.c.id, refunds.c.request_fingerprint).where(
                refunds.c.idempotency_scope == scope
            )
        ).first()
        return (row.payment_id, row.id, row.request_fingerprint) if row else None

    def _refunds_of(self, session: Session, payment_ids: Sequence[str]) -> dict[str, list[Refund]]:
        out: dict[str, list[Refund]] = {pid: [] for pid in payment_ids}
        if not payment_ids:
            return out
        rows = session.execute(
            select(refunds)
            .where(refunds.c.payment_id.in_(list(payment_ids)))
            .order_by(refunds.c.requested_at, refunds.c.id)
        ).all()
        for row in rows:
            m = row._mapping
            requested_at = aware(m["requested_at"])
            assert requested_at is not None
            out[m["payment_id"]].append(
                Refund(
                    id=m["id"],
                    payment_id=m["payment_id"],
                    amount_vnd=int(m["amount_vnd"]),
                    state=RefundState(m["state"]),
                    reason=m["reason"],
                    requested_by=Actor(
                        m["requested_by_subject"],
                        m["requested_by_role"],
                        m["requested_by_agency"],
                    ),
                    requested_at=requested_at,
                    gateway_transaction_id=m["gateway_transaction_id"],
                    failure_code=m["failure_code"],
                    settled_at=aware(m["settled_at"]),
                )
            )
        return out

    # -- receipts, the replay guard, history -------------------------------------------------
    def next_receipt_sequence(self, session: Session, agency_code: str, year: int) -> int:
        """Atomically take the agency's next receipt number of the year (row-locked upsert)."""
        dialect = session.get_bind().dialect.name
        ins: Any = (postgresql if dialect == "postgresql" else sqlite).insert(receipt_sequences)
        stmt = (
            ins.values(agency_code=agency_code, year=year, last_value=1)
            .on_conflict_do_update(
                index_elements=["agency_code", "year"],
                set_={"last_value": receipt_sequences.c.last_value + 1},
            )
            .returning(receipt_sequences.c.last_value)
        )
        return int(session.execute(stmt).scalar_one())

    def notice_seen(self, session: Session, gateway: str, transaction_id: str) -> bool:
        return bool(
            session.scalar(
                select(
                    exists().where(
                        gateway_notices.c.gateway == gateway,
                        gateway_notices.c.transaction_id == transaction_id,
                    )
                )
            )
        )

    def record_notice(
        self,
        session: Session,
        *,
        gateway: str,
        transaction_id: str,
        payment_id: str,
        outcome: str,
        origin: Origin,
        at: datetime,
    ) -> None:
        """Remember an applied gateway transaction; a second insert violates the key."""
        session.execute(
            insert(gateway_notices).values(
                gateway=gateway,
                transaction_id=transaction_id,
                payment_id=payment_id,
                outcome=outcome,
                origin=origin.value,
                received_at=utc(at),
            )
        )

    def record_transition(
        self,
        session: Session,
        *,
        payment_id: str,
        source: State | None,
        trigger: Trigger | None,
        target: State,
        origin: Origin,
        actor: Actor,
        at: datetime,
        refund_id: str | None = None,
    ) -> None:
        self.record_transitions(
            session, [Moved(payment_id, source, trigger, target, origin, actor, at, refund_id)]
        )

    def record_transitions(self, session: Session, moves: Sequence[Moved]) -> None:
        """Append history rows: one statement for all of them."""
        rows = [
            {
                "payment_id": m.payment_id,
                "refund_id": m.refund_id,
                "from_state": m.source.value if m.source else None,
                "trigger": m.trigger.value if m.trigger else "create",
                "to_state": m.target.value,
                "origin": m.origin.value,
                "actor_subject": m.actor.subject,
                "occurred_at": utc(m.at),
            }
            for m in moves
        ]
        if rows:
            session.execute(insert(payment_history), rows)

    def history(self, session: Session, payment_id: str) -> list[tuple[str | None, str, str]]:
        """(from, trigger, to) of each change of the payment and its refunds, in order."""
        rows = session.execute(
            select(
                payment_history.c.from_state, payment_history.c.trigger, payment_history.c.to_state
            )
            .where(payment_history.c.payment_id == payment_id)
            .order_by(payment_history.c.id)
        ).all()
        return [(r.from_state, r.trigger, r.to_state) for r in rows]

    # -- mapping -----------------------------------------------------------------------------
    @staticmethod
    def _to_domain(m: Any, found: dict[str, list[Refund]]) -> Payment:
        created_at, expires_at = aware(m["created_at"]), aware(m["expires_at"])
        assert created_at is not None and expires_at is not None
        receipt = None
        if m["receipt_number"]:
            issued = aware(m["receipt_issued_at"])
            assert issued is not None
            receipt = Receipt(m["receipt_number"], issued)
        return Payment(
            id=m["id"],
            dossier_code=m["dossier_code"],
            agency_code=m["agency_code"],
            amount_vnd=int(m["amount_vnd"]),
            currency=m["currency"],
            description=m["description"],
            payer=Payer(
                m["payer_full_name"], m["payer_citizen_id"], m["payer_phone"], m["payer_email"]
            ),
            state=PaymentState(m["state"]),
            gateway=m["gateway"],
            created_by=Actor(m["created_by_subject"], m["created_by_role"], m["created_by_agency"]),
            created_at=created_at,
            expires_at=expires_at,
            redirect_url=m["redirect_url"],
            pay_token=m["pay_token"] or "",
            pay_url=m["pay_url"],
            gateway_transaction_id=m["gateway_transaction_id"],
            failure_code=m["failure_code"],
            receipt=receipt,
            settled_at=aware(m["settled_at"]),
            refunds=tuple(found.get(m["id"], [])),
        )
