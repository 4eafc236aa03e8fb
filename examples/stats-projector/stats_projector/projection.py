"""The projection: the latest state of every dossier, and on-time / late counts per agency.

Every dossier event carries the dossier after the change, so the projector keeps one row per
dossier — the newest version it has seen — and derives the statistics from the rows. Older or
repeated versions change nothing, so the result does not depend on redelivery; the subscriber
kit's inbox already makes each event id count once, in the same transaction as the row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_subscriber import Delivery, Subscriber
from stats_projector.calendar import WorkingDays

NAME = "stats-projector"

# National dossier status list: closed without a result.
CLOSED = frozenset(
    {
        dossier_pb2.DOSSIER_STATUS_NOT_RECEIVED,
        dossier_pb2.DOSSIER_STATUS_WITHDRAWN,
        dossier_pb2.DOSSIER_STATUS_STOPPED,
    }
)
OUTCOMES = ("early", "on_time", "late")

metadata = MetaData()
dossiers = Table(
    "dossiers",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("agency_code", String(64), nullable=False, index=True),
    Column("procedure_code", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=True),
    Column("received_day", String(10), nullable=True),  # local date of receipt, YYYY-MM-DD
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("appointment_date", String(10), nullable=False),
    Column("original_appointment_date", String(10), nullable=False),
    Column("overdue", Boolean, nullable=False),
    Column("outcome", String(16), nullable=True),  # early | on_time | late, once completed
    Column("last_event_id", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    value: datetime = getattr(message, name).ToDatetime(UTC)
    return value


def outcome(dossier: dossier_pb2.Dossier, calendar: WorkingDays) -> str | None:
    """early / on_time / late for a completed dossier, against the first promised date.

    Late when the deadline scanner marked it overdue or it was completed after its
    appointment; otherwise early before the promised day, on time on it.
    """
    completed = _time(dossier, "completed_at")
    if completed is None or not dossier.original_appointment_date:
        return None
    done = calendar.counting_day(completed)
    promised = date.fromisoformat(dossier.original_appointment_date)
    appointment = date.fromisoformat(dossier.appointment_date or dossier.original_appointment_date)
    if dossier.overdue or done > appointment:
        return "late"
    return "early" if done < promised else "on_time"


class StatisticsProjection:
    """Keeps the ``dossiers`` table from dossier events."""

    def __init__(self, calendar: WorkingDays) -> None:
        self.calendar = calendar

    def apply(self, dossier: dossier_pb2.Dossier, delivery: Delivery) -> None:
        """Upsert the dossier's row unless a newer version is already there."""
        session = delivery.session
        current = session.execute(
            select(dossiers.c.version).where(dossiers.c.code == dossier.code)
        ).scalar_one_or_none()
        if current is not None and current >= dossier.version:
            return  # an older or repeated snapshot
        received = _time(dossier, "received_at")
        row = {
            "agency_code": dossier.agency_code,
            "procedure_code": dossier.procedure_code,
            "version": dossier.version,
            "status": int(dossier.status),
            "received_at": received,
            "received_day": self.calendar.local_date(received).isoformat() if received else None,
            "completed_at": _time(dossier, "completed_at"),
            "appointment_date": dossier.appointment_date,
            "original_appointment_date": dossier.original_appointment_date,
            "overdue": dossier.overdue,
            "outcome": outcome(dossier, self.calendar),
            "last_event_id": delivery.event.id,
            "updated_at": datetime.now(UTC),
        }
        if current is None:
            session.execute(insert(dossiers).values(code=dossier.code, **row))
        else:
            session.execute(update(dossiers).where(dossiers.c.code == dossier.code).values(**row))


def build_subscriber(calendar: WorkingDays | None = None) -> Subscriber:
    """The projector as a subscriber: every type of the dossier topic, one handler per payload."""
    projection = StatisticsProjection(calendar or WorkingDays())
    subscriber = Subscriber(NAME, metadata=metadata)

    @subscriber.handler(events_pb2.DossierSubmitted)
    def on_submitted(message: events_pb2.DossierSubmitted, delivery: Delivery) -> None:
        projection.apply(message.dossier, delivery)

    @subscriber.handler(events_pb2.DossierStatusChanged)
    def on_status_changed(message: events_pb2.DossierStatusChanged, delivery: Delivery) -> None:
        projection.apply(message.dossier, delivery)

    @subscriber.handler(events_pb2.DossierDeadline)
    def on_deadline(message: events_pb2.DossierDeadline, delivery: Delivery) -> None:
        projection.apply(message.dossier, delivery)

    @subscriber.handler(events_pb2.PaymentRefused)
    def on_payment_refused(message: events_pb2.PaymentRefused, delivery: Delivery) -> None:
        """A refused payment moved no dossier: there is nothing to count."""

    @subscriber.handler(events_pb2.DocumentIssued)
    def on_document_issued(message: events_pb2.DocumentIssued, delivery: Delivery) -> None:
        """A signed paper carries the dossier as its change left it: the same snapshot."""
        projection.apply(message.dossier, delivery)

    return subscriber


@dataclass(frozen=True)
class AgencyStatistics:
    """The same figures as the dossier service's GetStatistics, for one agency."""

    agency_code: str
    received: int
    early: int
    on_time: int
    late: int
    in_progress: int

    @property
    def on_time_ratio(self) -> float:
        done = self.early + self.on_time + self.late
        return (self.early + self.on_time) / done if done else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "on_time_ratio": round(self.on_time_ratio, 4)}


def statistics(
    session: Session,
    agency_code: str = "",
    from_date: date | None = None,
    to_date: date | None = None,
) -> list[AgencyStatistics]:
    """Per agency: dossiers received in the period (local dates, inclusive), how they ended."""
    query = select(dossiers).where(dossiers.c.received_day.is_not(None))
    if agency_code:
        query = query.where(dossiers.c.agency_code == agency_code)
    if from_date:
        query = query.where(dossiers.c.received_day >= from_date.isoformat())
    if to_date:
        query = query.where(dossiers.c.received_day <= to_date.isoformat())
    counts: dict[str, dict[str, int]] = {}
    for row in session.execute(query).mappings():
        c = counts.setdefault(
            row["agency_code"], dict.fromkeys(("received", *OUTCOMES, "in_progress"), 0)
        )
        c["received"] += 1
        if row["outcome"]:
            c[row["outcome"]] += 1
        elif row["status"] not in CLOSED:
            c["in_progress"] += 1
    return [AgencyStatistics(agency, **c) for agency, c in sorted(counts.items())]
