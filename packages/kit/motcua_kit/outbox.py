"""Transactional outbox: a state change and the event it emits commit in one transaction.

The service writes its rows and an outbox row in the same database transaction
(:meth:`Outbox.add`); the :class:`OutboxRelay` publishes unsent rows in id order with an
idempotent, acks=all producer and marks them sent. A crash between publish and mark means the
row is published again with the same ``ce_id``, which consumers deduplicate — so nothing is
lost and nothing is applied twice. On PostgreSQL one relay at a time holds an advisory lock,
which keeps one dossier's events in order even with several replicas.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kafka import KafkaProducer
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from motcua_kit.db import aware
from motcua_kit.envelope import Event, encode
from motcua_kit.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_ERRORS,
    OUTBOX_PUBLISHED,
)
from motcua_kit.tracing import current_traceparent
from motcua_kit.worker import ProducingWorker

log = logging.getLogger(__name__)

_ADVISORY_LOCK_KEY = 0x6D6F74637561  # "motcua": one relay per database at a time


def outbox_table(metadata: MetaData) -> Table:
    """Add the outbox table to a service's metadata (same database, same transaction)."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("event_key", String(200), nullable=False),
        Column("event_type", String(200), nullable=False),
        Column("source", String(200), nullable=False),
        Column("event_time", DateTime(timezone=True), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("trace_headers", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=Column("published_at").is_(None),
            sqlite_where=Column("published_at").is_(None),
        ),
    )


class Outbox:
    """Writes events into the outbox inside the caller's transaction."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def add(self, session: Session, topic: str, event: Event) -> None:
        """Queue ``event`` for ``topic``; it is published only if the transaction commits."""
        trace_headers = dict(event.trace_headers) or current_traceparent()
        session.execute(
            insert(self.table).values(
                event_id=event.id,
                topic=topic,
                event_key=event.subject,
                event_type=event.type,
                source=event.source,
                event_time=event.time,
                payload=event.data,
                trace_headers=trace_headers,
                created_at=datetime.now(UTC),
            )
        )


class OutboxRelay(ProducingWorker):
    """Publishes unsent outbox rows to Kafka in id order, in a background thread."""

    def __init__(
        self,
        service: str,
        sessions: sessionmaker[Session],
        table: Table,
        producer_factory: Callable[[], KafkaProducer],
        *,
        poll_seconds: float = 0.2,
        batch_size: int = 200,
        send_timeout: float = 15.0,
    ) -> None:
        super().__init__("outbox-relay", producer_factory)
        self._service = service
        self._sessions = sessions
        self._table = table
        self._poll = poll_seconds
        self._batch = batch_size
        self._send_timeout = send_timeout
        self._last_gauge = 0.0
        self.published = 0

    # -- one batch ---------------------------------------------------------------------------
    def publish_batch(self) -> int:
        """Publish up to one batch of unsent rows; returns how many were marked sent."""
        t = self._table
        with self._sessions() as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                got = session.scalar(select(func.pg_try_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
                if not got:
                    return 0  # another replica's relay is publishing
            rows = session.execute(
                select(
                    t.c.id,
                    t.c.event_id,
                    t.c.topic,
                    t.c.event_key,
                    t.c.event_type,
                    t.c.source,
                    t.c.event_time,
                    t.c.payload,
                    t.c.trace_headers,
                )
                .where(t.c.published_at.is_(None))
                .order_by(t.c.id)
                .limit(self._batch)
            ).all()
            if not rows:
                return 0
            producer = self._ensure_producer()
            futures = []
            for row in rows:
                record = encode(
                    Event(
                        id=row.event_id,
                        source=row.source,
                        type=row.event_type,
                        subject=row.event_key,
                        time=aware(row.event_time),
                        data=row.payload,
                        trace_headers=row.trace_headers or {},
                    )
                )
                futures.append(
                    producer.send(
                        row.topic, key=record.key, value=record.value, headers=record.headers
                    )
                )
            producer.flush(timeout=self._send_timeout)
            for future in futures:
                future.get(timeout=self._send_timeout)  # raises if any send failed
            session.execute(
                update(t)
                .where(t.c.id.in_([r.id for r in rows]))
                .values(published_at=datetime.now(UTC))
            )
        for row in rows:
            OUTBOX_PUBLISHED.labels(self._service, row.topic).inc()
        self.published += len(rows)
        return len(rows)

    def backlog(self) -> tuple[int, float]:
        """(unsent rows, age in seconds of the oldest unsent row)."""
        t = self._table
        with self._sessions() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
            ).one()
        age = (datetime.now(UTC) - aware(oldest)).total_seconds() if oldest else 0.0
        return int(count), max(age, 0.0)

    def _update_gauges(self) -> None:
        now = time.monotonic()
        if now - self._last_gauge < 1.0:
            return
        self._last_gauge = now
        count, age = self.backlog()
        OUTBOX_BACKLOG.labels(self._service).set(count)
        OUTBOX_OLDEST_AGE.labels(self._service).set(age)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        backoff = self._poll
        while not self._stop.is_set():
            try:
                sent = self.publish_batch()
                self._update_gauges()
                backoff = self._poll
                if sent:
                    continue  # more may be waiting
            except Exception as exc:
                OUTBOX_PUBLISH_ERRORS.labels(self._service).inc()
                log.warning("outbox publish failed, will retry: %s", exc)
                self._reset_producer()
                backoff = min(backoff * 2, 5.0)
            self._stop.wait(backoff)

    def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # closing a broken producer may itself fail
                log.debug("closing producer failed", exc_info=True)
