"""Notify's tables and the repository that maps them to domain objects.

``notifications`` holds one row per (event id, channel, recipient) — a UNIQUE constraint, so
redelivered events cannot add a second message whatever the code above it does. Rows are
written in the consumer's transaction (state created) and sent afterwards by the sender.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
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
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from motcua_kit.consumer import inbox_table
from motcua_kit.db import aware, utc
from motcua_kit.outbox import outbox_table
from motcua_notify.domain.notification import (
    Contact,
    HistoryEntry,
    Intent,
    Notification,
)
from motcua_notify.domain.occurrence import DossierSnapshot
from motcua_notify.domain.states import Channel, State

metadata = MetaData()
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

notifications = Table(
    "notifications",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("dossier_code", String(40), nullable=False),
    Column("agency_code", String(20), nullable=False),
    Column("citizen_id", String(12), nullable=False),
    Column("template", String(100), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("body", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("sms_segments", Integer, nullable=True),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("reference", String(80), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("provider_ref", String(200), nullable=False),
    Column("detail", String(1000), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("trace_headers", JSON, nullable=False),
    UniqueConstraint("event_id", "channel", "recipient", name="uq_notifications_once"),
    Index("ix_notifications_due", "state", "next_attempt_at"),
    Index("ix_notifications_dossier", "dossier_code", "seq"),
    Index("ix_notifications_provider_ref", "provider", "provider_ref"),
)

notification_history = Table(
    "notification_history",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column(
        "notification_id",
        String(36),
        ForeignKey("notifications.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", String(20), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("provider", String(40), nullable=False),
    Column("detail", String(1000), nullable=False),
    Index("ix_notification_history_notification", "notification_id", "seq"),
)

opt_outs = Table(
    "opt_outs",
    metadata,
    Column("citizen_id", String(12), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("citizen_id", "channel", name="pk_opt_outs"),
)

# The latest of each dossier notify has seen (for events that name a dossier but not its
# applicant, e.g. payment events). Personal data: kept in notify's own database only.
PROCEDURE_NAME_CHARS = 300
dossier_snapshots = Table(
    "dossier_snapshots",
    metadata,
    Column("dossier_code", String(40), primary_key=True),
    Column("agency_code", String(20), nullable=False),
    Column("procedure_code", String(40), nullable=False),
    Column("procedure_name", String(PROCEDURE_NAME_CHARS), nullable=False, server_default=""),
    Column("status", Integer, nullable=False),
    Column("appointment_date", String(10), nullable=False),
    Column("submitted_date", String(10), nullable=False),
    Column("citizen_id", String(12), nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("phone", String(15), nullable=False),
    Column("email", String(254), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

_DETAIL = 1000


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


# Statements run once or more per consumed event, built once per dialect: the rows go in as
# parameters, so SQLAlchemy compiles each statement once and sends the rows of one call as one
# multi-row INSERT ("insertmanyvalues").
_STATEMENTS: dict[tuple[str, str], Any] = {}


def _add_intents(session: Session) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the ids of the rows that were new."""
    key = ("add_intents", session.get_bind().dialect.name)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = (
            _insert(session, notifications).on_conflict_do_nothing().returning(notifications.c.id)
        )
    return _STATEMENTS[key]


def _save_snapshot(session: Session) -> Any:
    """An upsert of a dossier's latest snapshot."""
    key = ("save_snapshot", session.get_bind().dialect.name)
    if key not in _STATEMENTS:
        stmt = _insert(session, dossier_snapshots)
        columns = [c.name for c in dossier_snapshots.columns if c.name != "dossier_code"]
        _STATEMENTS[key] = stmt.on_conflict_do_update(
            index_elements=["dossier_code"], set_={c: stmt.excluded[c] for c in columns}
        )
    return _STATEMENTS[key]


class NotificationRepository:
    """Reads and writes notifications, their history, opt-outs and dossier snapshots."""

    # -- intents -----------------------------------------------------------------------------
    def add_intents(
        self,
        session: Session,
        intents: Iterable[Intent],
        now: datetime,
        trace_headers: Mapping[str, str] | None = None,
        *,
        by_event: Mapping[str, Mapping[str, str]] | None = None,
    ) -> list[str]:
        """Insert what is new; returns the ids inserted (a duplicate is silently skipped).

        One INSERT for all the intents (of one occurrence or of a consumer's whole batch) and
        one for their history rows, whatever the number of channels and subscribers. Each
        intent carries ``by_event[intent.event_id]`` as its trace headers, else
        ``trace_headers``.
        """
        default = dict(trace_headers or {})
        by_event = by_event or {}
        values: list[dict[str, Any]] = [
            {
                "id": intent.id,
                "event_id": intent.event_id,
                "event_type": intent.event_type,
                "channel": intent.channel.value,
                "recipient": intent.recipient,
                "dossier_code": intent.dossier_code,
                "agency_code": intent.agency_code,
                "citizen_id": intent.citizen_id,
                "template": intent.template,
                "subject": intent.subject[:500],
                "body": intent.body,
                "payload": intent.payload,
                "sms_segments": intent.sms_segments,
                "state": State.CREATED.value,
                "attempts": 0,
                "reference": "",
                "provider": "",
                "provider_ref": "",
                "detail": "",
                "created_at": now,
                "updated_at": now,
                "next_attempt_at": now,
                "lease_until": None,
                "trace_headers": dict(by_event.get(intent.event_id, default)),
            }
            for intent in intents
        ]
        if not values:
            return []
        new = set(session.execute(_add_intents(session), values).scalars())
        ids: list[str] = [v["id"] for v in values]
        inserted = [nid for nid in dict.fromkeys(ids) if nid in new]
        if inserted:
            session.execute(
                insert(notification_history),
                [
                    {
                        "notification_id": nid,
                        "state": State.CREATED.value,
                        "at": now,
                        "attempt": 0,
                        "provider": "",
                        "detail": "recorded",
                    }
                    for nid in inserted
                ],
            )
        return inserted

    # -- reading -----------------------------------------------------------------------------
    def get(self, session: Session, notification_id: str) -> Notification | None:
        row = session.execute(
            select(notifications).where(notifications.c.id == notification_id)
        ).first()
        return _to_domain(row._mapping) if row else None

    def awaiting_receipt(
        self, session: Session, taken_before: datetime, limit: int
    ) -> list[Notification]:
        """Messages a provider took (``sending`` with its reference) before ``taken_before``
        and has not reported on since."""
        n = notifications
        rows = session.execute(
            select(n)
            .where(
                n.c.state == State.SENDING.value,
                n.c.provider_ref != "",
                n.c.updated_at <= utc(taken_before),
            )
            .order_by(n.c.updated_at, n.c.seq)
            .limit(limit)
        )
        return [_to_domain(row._mapping) for row in rows]

    def by_provider_ref(
        self, session: Session, provider: str, provider_ref: str
    ) -> Notification | None:
        row = session.execute(
            select(notifications).where(
                notifications.c.provider == provider, notifications.c.provider_ref == provider_ref
            )
        ).first()
        return _to_domain(row._mapping) if row else None

    def list_by_dossier(
        self,
        session: Session,
        dossier_code: str,
        after_seq: int,
        limit: int,
        *,
        agency_code: str | None = None,
        citizen_id: str | None = None,
        everything: bool = False,
    ) -> list[tuple[int, Notification]]:
        """A page of one dossier's notifications, oldest first, limited to what the caller
        may see: ``everything``, or those of ``agency_code`` or addressed to ``citizen_id``."""
        n = notifications
        scope = []
        if agency_code:
            scope.append(n.c.agency_code == agency_code)
        if citizen_id:
            scope.append(n.c.citizen_id == citizen_id)
        if not everything and not scope:
            return []
        stmt = select(n).where(n.c.dossier_code == dossier_code, n.c.seq > after_seq)
        if not everything:
            stmt = stmt.where(or_(*scope))
        rows = session.execute(stmt.order_by(n.c.seq).limit(limit)).all()
        return [(int(r.seq), _to_domain(r._mapping)) for r in rows]

    def history(self, session: Session, notification_id: str) -> list[HistoryEntry]:
        h = notification_history
        rows = session.execute(
            select(h).where(h.c.notification_id == notification_id).order_by(h.c.seq)
        ).all()
        return [
            HistoryEntry(State(r.state), aware(r.at), r.attempt, r.provider, r.detail) for r in rows
        ]

    def by_event(self, session: Session, event_id: str) -> list[Notification]:
        rows = session.execute(
            select(notifications)
            .where(notifications.c.event_id == event_id)
            .order_by(notifications.c.seq)
        ).all()
        return [_to_domain(r._mapping) for r in rows]

    # -- the sender's queue ------------------------------------------------------------------
    def due(
        self, session: Session, now: datetime, limit: int, channels: Iterable[Channel]
    ) -> list[Notification]:
        """Rows of ``channels`` to send now: created or temporary-failure and due, or
        abandoned mid-send. Locked for this transaction on PostgreSQL (SKIP LOCKED), so
        replicas share the queue.
        """
        wanted = [c.value for c in channels]
        if not wanted or limit <= 0:
            return []
        n = notifications
        stmt = (
            select(n)
            .where(
                n.c.channel.in_(wanted),
                or_(
                    and_(
                        n.c.state.in_([State.CREATED.value, State.TEMPORARY_FAILURE.value]),
                        n.c.next_attempt_at <= now,
                    ),
                    # In sending, not yet accepted by a provider, and its sender's lease is
                    # over: the sender died mid-send. Resent with the same reference.
                    and_(
                        n.c.state == State.SENDING.value,
                        n.c.provider_ref == "",
                        n.c.lease_until.is_not(None),
                        n.c.lease_until <= now,
                    ),
                ),
            )
            .order_by(n.c.next_attempt_at, n.c.seq)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return [_to_domain(r._mapping) for r in session.execute(stmt).all()]

    def oldest_due(self, session: Session, now: datetime) -> dict[Channel, datetime]:
        """Per channel, the creation time of the oldest message still waiting to be sent."""
        n = notifications
        rows = session.execute(
            select(n.c.channel, func.min(n.c.created_at))
            .where(n.c.state.in_([State.CREATED.value, State.TEMPORARY_FAILURE.value]))
            .group_by(n.c.channel)
        ).all()
        return {Channel(ch): aware(at) for ch, at in rows if at is not None}

    def claim(
        self,
        session: Session,
        notification: Notification,
        *,
        attempts: int,
        reference: str,
        lease_until: datetime,
        now: datetime,
        detail: str,
        provider: str,
    ) -> None:
        """Take a message for sending: the attempt, its reference and where it goes first."""
        session.execute(
            update(notifications)
            .where(notifications.c.id == notification.id)
            .values(
                state=State.SENDING.value,
                attempts=attempts,
                reference=reference,
                provider=provider,
                lease_until=utc(lease_until),
                next_attempt_at=None,
                updated_at=now,
            )
        )
        self.add_history(session, notification.id, State.SENDING, now, attempts, provider, detail)

    def switch_provider(
        self,
        session: Session,
        notification: Notification,
        reference: str,
        provider: str,
        now: datetime,
        detail: str,
    ) -> None:
        """The attempt ``reference`` moves on to ``provider`` (only while it is still in flight)."""
        moved = session.execute(
            update(notifications)
            .where(
                notifications.c.id == notification.id,
                notifications.c.reference == reference,
                notifications.c.state == State.SENDING.value,
                notifications.c.provider_ref == "",
            )
            .values(provider=provider, updated_at=now)
        )
        if moved.rowcount:  # type: ignore[attr-defined]
            n = notification
            self.add_history(session, n.id, State.SENDING, now, n.attempts, provider, detail)

    def release(self, session: Session, notification: Notification, now: datetime) -> None:
        """Hand back a claimed message that was never sent (the sender is stopping): its lease
        ends now, so the next sender takes it at once, same attempt and reference."""
        released = session.execute(
            update(notifications)
            .where(
                notifications.c.id == notification.id,
                notifications.c.reference == notification.reference,
                notifications.c.state == State.SENDING.value,
                notifications.c.provider_ref == "",
            )
            .values(lease_until=utc(now), updated_at=now)
        )
        if released.rowcount:  # type: ignore[attr-defined]
            n = notification
            detail = "not sent: the sender stopped; handed back"
            self.add_history(session, n.id, State.SENDING, now, n.attempts, n.provider, detail)

    def hold(
        self, session: Session, notification: Notification, until: datetime, now: datetime, why: str
    ) -> None:
        """Postpone a due message (quiet hours) without changing its state."""
        session.execute(
            update(notifications)
            .where(notifications.c.id == notification.id)
            .values(next_attempt_at=utc(until), updated_at=now)
        )
        self.add_history(
            session, notification.id, notification.state, now, notification.attempts, "", why
        )

    def record(
        self,
        session: Session,
        notification: Notification,
        *,
        state: State,
        now: datetime,
        detail: str,
        provider: str | None = None,
        provider_ref: str | None = None,
        next_attempt_at: datetime | None = None,
        expect_reference: str | None = None,
    ) -> bool:
        """Write a state change if the row is still as read (same state and reference)."""
        n = notifications
        values: dict[str, Any] = {
            "state": state.value,
            "updated_at": now,
            "detail": detail[:_DETAIL],
            "next_attempt_at": utc(next_attempt_at),
            "lease_until": None,
        }
        if provider is not None:
            values["provider"] = provider
        if provider_ref is not None:
            values["provider_ref"] = provider_ref
        stmt = update(n).where(n.c.id == notification.id, n.c.state == notification.state.value)
        if expect_reference is not None:
            stmt = stmt.where(n.c.reference == expect_reference)
        changed = session.execute(stmt.values(**values)).rowcount  # type: ignore[attr-defined]
        if changed:
            self.add_history(
                session,
                notification.id,
                state,
                now,
                notification.attempts,
                provider if provider is not None else notification.provider,
                detail,
            )
        return bool(changed)

    def add_history(
        self,
        session: Session,
        notification_id: str,
        state: State,
        at: datetime,
        attempt: int,
        provider: str,
        detail: str,
    ) -> None:
        session.execute(
            insert(notification_history).values(
                notification_id=notification_id,
                state=state.value,
                at=at,
                attempt=attempt,
                provider=provider,
                detail=detail[:_DETAIL],
            )
        )

    # -- opt-outs ----------------------------------------------------------------------------
    def opted_out(self, session: Session, citizen_id: str) -> dict[Channel, datetime]:
        if not citizen_id:
            return {}
        rows = session.execute(
            select(opt_outs.c.channel, opt_outs.c.updated_at).where(
                opt_outs.c.citizen_id == citizen_id
            )
        ).all()
        return {Channel(ch): aware(at) for ch, at in rows}

    def opted_out_many(
        self, session: Session, citizen_ids: Iterable[str]
    ) -> dict[str, dict[Channel, datetime]]:
        """:meth:`opted_out` of many citizens in one query (those with none are absent)."""
        wanted = sorted(set(citizen_ids) - {""})
        out: dict[str, dict[Channel, datetime]] = {}
        if not wanted:
            return out
        rows = session.execute(
            select(opt_outs.c.citizen_id, opt_outs.c.channel, opt_outs.c.updated_at).where(
                opt_outs.c.citizen_id.in_(wanted)
            )
        ).all()
        for cid, ch, at in rows:
            out.setdefault(cid, {})[Channel(ch)] = aware(at)
        return out

    def set_opt_out(
        self, session: Session, citizen_id: str, channel: Channel, opted_out: bool, now: datetime
    ) -> None:
        if opted_out:
            session.execute(
                _insert(session, opt_outs)
                .values(citizen_id=citizen_id, channel=channel.value, updated_at=now)
                .on_conflict_do_nothing()
            )
        else:
            session.execute(
                delete(opt_outs).where(
                    opt_outs.c.citizen_id == citizen_id, opt_outs.c.channel == channel.value
                )
            )

    # -- dossier snapshots -------------------------------------------------------------------
    def save_snapshot(self, session: Session, snapshot: DossierSnapshot, now: datetime) -> None:
        self.save_snapshots(session, [snapshot], now)

    def save_snapshots(
        self, session: Session, snapshots: Iterable[DossierSnapshot], now: datetime
    ) -> None:
        """Upsert dossiers' latest snapshots in one statement; of two for one dossier the
        later wins (one upsert cannot touch a row twice)."""
        latest = {snapshot.dossier_code: snapshot for snapshot in snapshots}
        if latest:
            session.execute(
                _save_snapshot(session), [_snapshot_row(s, now) for s in latest.values()]
            )

    def snapshots(self, session: Session, codes: Iterable[str]) -> dict[str, DossierSnapshot]:
        """:meth:`snapshot` of many dossiers in one query (unknown ones are absent)."""
        wanted = sorted(set(codes))
        if not wanted:
            return {}
        s = dossier_snapshots
        rows = session.execute(select(s).where(s.c.dossier_code.in_(wanted))).all()
        return {row.dossier_code: _snapshot_of(row) for row in rows}

    def snapshot(self, session: Session, dossier_code: str) -> DossierSnapshot | None:
        return self.snapshots(session, [dossier_code]).get(dossier_code)


def _snapshot_row(snapshot: DossierSnapshot, now: datetime) -> dict[str, Any]:
    c = snapshot.contact
    values = {
        "agency_code": snapshot.agency_code,
        "procedure_code": snapshot.procedure_code,
        "procedure_name": snapshot.procedure_name[:PROCEDURE_NAME_CHARS],
        "status": snapshot.status,
        "appointment_date": snapshot.appointment_date[:10],
        "submitted_date": snapshot.submitted_date[:10],
        "citizen_id": c.citizen_id[:12],
        "full_name": c.full_name[:200],
        "phone": c.phone[:15],
        "email": c.email[:254],
        "updated_at": now,
    }
    return {"dossier_code": snapshot.dossier_code, **values}


def _snapshot_of(row: Any) -> DossierSnapshot:
    return DossierSnapshot(
        dossier_code=row.dossier_code,
        agency_code=row.agency_code,
        procedure_code=row.procedure_code,
        status=row.status,
        appointment_date=row.appointment_date,
        submitted_date=row.submitted_date,
        contact=Contact(row.citizen_id, row.full_name, row.phone, row.email),
        procedure_name=row.procedure_name,
    )


def _to_domain(row: Any) -> Notification:
    return Notification(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        dossier_code=row["dossier_code"],
        agency_code=row["agency_code"],
        citizen_id=row["citizen_id"],
        template=row["template"],
        channel=Channel(row["channel"]),
        recipient=row["recipient"],
        subject=row["subject"],
        body=row["body"],
        payload=dict(row["payload"] or {}),
        sms_segments=row["sms_segments"],
        state=State(row["state"]),
        attempts=row["attempts"],
        reference=row["reference"],
        provider=row["provider"],
        provider_ref=row["provider_ref"],
        created_at=aware(row["created_at"]),
        updated_at=aware(row["updated_at"]),
        next_attempt_at=aware(row["next_attempt_at"]),
        detail=row["detail"],
        trace_headers=dict(row["trace_headers"] or {}),
    )
