"""The audit service's tables and the repository of recorded entries."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from motcua_kit.consumer import inbox_table
from motcua_kit.envelope import Event

metadata = MetaData()

entries = Table(
    "audit_entries",
    metadata,
    # Gapless position in the log, from 0: the Merkle tree's leaf index.
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("event_source", String(200), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("dossier_code", String(40), nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_audit_entries_dossier", "dossier_code", "idx"),
)

inbox = inbox_table(metadata)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    """One recorded entry of the trail."""

    index: int
    event_id: str
    event_type: str
    event_source: str
    event_time: datetime
    dossier_code: str
    payload_sha256: str
    topic: str
    recorded_at: datetime


class EntryRepository:
    """Appends entries at the next gapless index; reads a dossier's trail."""

    def append(self, session: Session, topic: str, event: Event) -> int:
        next_index = session.scalar(select(func.coalesce(func.max(entries.c.idx) + 1, 0)))
        session.execute(
            insert(entries).values(
                idx=next_index,
                event_id=event.id,
                event_type=event.type,
                event_source=event.source,
                event_time=event.time,
                dossier_code=event.subject,
                payload_sha256=hashlib.sha256(event.data).hexdigest(),
                topic=topic,
                recorded_at=datetime.now(UTC),
            )
        )
        return int(next_index or 0)

    def trail(self, session: Session, dossier_code: str) -> list[Entry]:
        rows = session.execute(
            select(entries).where(entries.c.dossier_code == dossier_code).order_by(entries.c.idx)
        ).all()
        return [
            Entry(
                index=r.idx,
                event_id=r.event_id,
                event_type=r.event_type,
                event_source=r.event_source,
                event_time=_aware(r.event_time),
                dossier_code=r.dossier_code,
                payload_sha256=r.payload_sha256,
                topic=r.topic,
                recorded_at=_aware(r.recorded_at),
            )
            for r in rows
        ]

    def count(self, session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(entries)) or 0)
