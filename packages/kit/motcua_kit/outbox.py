"""Transactional outbox: a state change and the event it emits commit in one transaction.

The service writes its rows and an outbox row in the same database transaction
(:meth:`Outbox.add`); the :class:`OutboxRelay` publishes unsent rows in id order with an
idempotent, acks=all producer and marks them sent. A crash between publish and mark means the
row is published again with the same ``ce_id``, which consumers deduplicate — so nothing is
lost and nothing is applied twice. On PostgreSQL one relay at a time holds an advisory lock,
which keeps one dossier's events in order even with several replicas (ADR 0004).

The relay works in batches (ADR 0011): one SELECT, every record handed to the producer without
waiting on it, one flush, one UPDATE marking the acknowledged prefix. It sleeps until there is
work: on PostgreSQL the insert raises a NOTIFY that the relay LISTENs for, on SQLite a commit
in the same process wakes it; the poll interval is only the fallback.
"""

from __future__ import annotations

import contextlib
import logging
import select as _select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
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

from motcua_kit.db import aware, on_commit
from motcua_kit.envelope import Event, encode
from motcua_kit.kafka import describe_auth_error, is_auth_error, sticky_auth_failure
from motcua_kit.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_ERRORS,
    OUTBOX_PUBLISHED,
)
from motcua_kit.readiness import READINESS
from motcua_kit.tracing import current_traceparent
from motcua_kit.worker import ProducingWorker

log = logging.getLogger(__name__)

_ADVISORY_LOCK_KEY = 0x6D6F74637561  # "motcua": one relay per database at a time
_WAKE_PENDING = "motcua_outbox_wake_pending"  # session.info key: a local wake-up is registered
_GAUGE_SECONDS = 1.0  # how often the backlog gauges are refreshed
_LISTEN_RETRY_SECONDS = 5.0  # after a failed LISTEN connection, poll this long before retrying


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


def notify_channel(table: Table) -> str:
    """The PostgreSQL channel on which inserts into ``table`` are announced."""
    return f"motcua_{table.name}"


class _Wakeup:
    """A wake-up another thread sets and ``select()`` waits on, beside the LISTEN socket.

    A socket pair rather than a :class:`threading.Event`, so that one ``select`` waits for a
    local commit, a NOTIFY and a stop at once (and it works on Windows too).
    """

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def set(self) -> None:
        # OSError: the buffer is full (a wake-up is pending anyway), or it is closed.
        with contextlib.suppress(OSError):
            self._w.send(b"\0")

    def clear(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except OSError:  # drained (BlockingIOError) or closed
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


# Relays of this process, by the outbox table they publish: a local commit wakes them (SQLite).
_local_relays: dict[Table, set[_Wakeup]] = {}
_local_lock = threading.Lock()


def _wake_local(table: Table) -> None:
    with _local_lock:
        wakeups = list(_local_relays.get(table, ()))
    for wakeup in wakeups:
        wakeup.set()


class Outbox:
    """Writes events into the outbox inside the caller's transaction."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._channel = notify_channel(table)
        # Built once: constructing them per submit was a measurable share of intake's CPU.
        self._insert = insert(table)
        # The NOTIFY rides on the INSERT (no extra round trip). Like the rows, it is delivered
        # only if the transaction commits, and PostgreSQL folds a transaction's identical
        # notifications into one. Many rows go as SQLAlchemy's "insertmanyvalues" (multi-row
        # VALUES, in order, so the ids keep the events' order).
        self._insert_notify = self._insert.returning(
            func.pg_notify(self._channel, ""), sort_by_parameter_order=True
        )

    def add(self, session: Session, topic: str, event: Event) -> None:
        """Queue ``event`` for ``topic``; it is published only if the transaction commits."""
        self.add_many(session, topic, [event])

    def add_many(self, session: Session, topic: str, events: Sequence[Event]) -> None:
        """Queue ``events`` for ``topic`` in order, with ONE insert (a batch handler's events)."""
        if not events:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "event_id": event.id,
                "topic": topic,
                "event_key": event.subject,
                "event_type": event.type,
                "source": event.source,
                "event_time": event.time,
                "payload": event.data,
                "trace_headers": dict(event.trace_headers) or current_traceparent(),
                "created_at": now,
            }
            for event in events
        ]
        if session.get_bind().dialect.name == "postgresql":
            session.execute(self._insert_notify, rows).close()
            return
        session.execute(self._insert, rows)
        if self.table in _local_relays and not session.info.get(_WAKE_PENDING):
            session.info[_WAKE_PENDING] = True
            on_commit(session, lambda: self._committed(session))

    def _committed(self, session: Session) -> None:
        session.info.pop(_WAKE_PENDING, None)
        _wake_local(self.table)


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
        self._backlog = 0
        self._dialect: str | None = None
        self._wakeup = _Wakeup()
        self._listener: Any = None  # the psycopg connection LISTENing, on PostgreSQL
        self._listen_retry_at = 0.0
        self.published = 0

    @property
    def listening(self) -> bool:
        """True once the relay is subscribed to its NOTIFY channel (PostgreSQL)."""
        return self._listener is not None

    def _engine(self) -> Engine:
        with self._sessions() as session:
            bind = session.get_bind()
        assert isinstance(bind, Engine)
        return bind

    def _is_postgresql(self) -> bool:
        if self._dialect is None:
            self._dialect = self._engine().dialect.name
        return self._dialect == "postgresql"

    # -- one batch ---------------------------------------------------------------------------
    def publish_batch(self) -> int:
        """Publish up to one batch of unsent rows; returns how many were marked sent.

        Raises after marking when a record was not acknowledged: only the rows before it in
        id order are marked, so nothing later overtakes it when it is sent again.
        """
        if self._is_postgresql():
            with self._sessions() as session, session.begin():
                got = session.scalar(select(func.pg_try_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
                if not got:
                    return 0  # another replica's relay is publishing
                rows = self._read(session)
                if not rows:
                    return 0
                acked, error = self._send(rows)
                self._mark(session, rows[:acked])
        else:
            # SQLite: one relay per database, no lock to hold. Keep the write lock (every
            # transaction is BEGIN IMMEDIATE) off the broker's round trip: writers go on.
            with self._sessions() as session, session.begin():
                rows = self._read(session)
            if not rows:
                return 0
            acked, error = self._send(rows)
            if acked:
                with self._sessions() as session, session.begin():
                    self._mark(session, rows[:acked])
        self._count(rows[:acked])
        if error is not None:
            raise error
        return acked

    def _read(self, session: Session) -> Sequence[Any]:
        t = self._table
        return session.execute(
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

    def _send(self, rows: Sequence[Any]) -> tuple[int, Exception | None]:
        """Hand every row to the producer, flush once: (rows acknowledged in order, error)."""
        producer = self._ensure_producer()
        futures = []
        error: Exception | None = None
        try:
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
        except Exception as exc:  # e.g. no metadata within max_block_ms, record too large
            error = exc  # what was handed over before it is still flushed and marked
        try:
            producer.flush(timeout=self._send_timeout)
        except KafkaError as exc:
            error = error or exc
        acked = 0
        for future in futures:
            if not future.succeeded():
                if error is None:
                    error = future.exception or KafkaTimeoutError("record not acknowledged")
                break
            acked += 1
        return acked, error

    def _mark(self, session: Session, rows: Sequence[Any]) -> None:
        """One UPDATE for the batch, by id: never a range, which could take in a row that
        committed later with a lower id and was never sent."""
        if rows:
            t = self._table
            session.execute(
                update(t)
                .where(t.c.id.in_([r.id for r in rows]))
                .values(published_at=datetime.now(UTC))
            )

    def _count(self, rows: Sequence[Any]) -> None:
        for topic, n in Counter(r.topic for r in rows).items():
            OUTBOX_PUBLISHED.labels(self._service, topic).inc(n)
        self.published += len(rows)

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
        if now - self._last_gauge < _GAUGE_SECONDS:
            return
        self._last_gauge = now
        try:
            count, age = self.backlog()
        except Exception as exc:  # the database may be down; the gauges keep their last values
            log.debug("outbox backlog not read: %s", exc)
            return
        self._backlog = count
        OUTBOX_BACKLOG.labels(self._service).set(count)
        OUTBOX_OLDEST_AGE.labels(self._service).set(age)

    # -- the loop ----------------------------------------------------------------------------
    def start(self) -> None:
        with _local_lock:
            _local_relays.setdefault(self._table, set()).add(self._wakeup)
        super().start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Wake the loop out of its wait, then stop as every worker does."""
        self._stop.set()
        self._wakeup.set()
        finished = super().stop(timeout)
        with _local_lock:
            relays = _local_relays.get(self._table)
            if relays is not None:
                relays.discard(self._wakeup)
                if not relays:
                    del _local_relays[self._table]
        return finished

    def run(self) -> None:
        backoff = self._poll
        try:
            while not self._stop.is_set():
                try:
                    full = self.publish_batch() >= self._batch
                    backoff = self._poll
                    READINESS.clear(self._service, "outbox relay")
                except Exception as exc:
                    OUTBOX_PUBLISH_ERRORS.labels(self._service).inc()
                    refused = exc if is_auth_error(exc) else sticky_auth_failure(self._producer)
                    if refused is not None:
                        user = ""
                        if self._producer is not None:
                            user = str(self._producer.config.get("sasl_plain_username") or "")
                        reason = "outbox relay: " + describe_auth_error(refused, user, writing=True)
                        READINESS.block(self._service, "outbox relay", reason)
                        log.error("%s; not ready, will retry", reason)
                    else:
                        log.warning("outbox publish failed, will retry: %s", exc)
                    self._reset_producer()
                    backoff = min(backoff * 2, 5.0)
                    self._update_gauges()
                    self._stop.wait(backoff)  # no wake-ups: do not hammer a broker that is down
                    continue
                self._update_gauges()
                if not full:
                    self._wait_for_work(backoff)
        finally:
            READINESS.clear(self._service, "outbox relay")
            self._close_listener()
            self._wakeup.close()  # a late set() on it is a no-op

    def _wait_for_work(self, timeout: float) -> None:
        """Sleep until a NOTIFY, a local commit or a stop, or ``timeout`` at the latest."""
        if self._backlog:
            timeout = min(timeout, _GAUGE_SECONDS)  # rows wait: keep their age gauge fresh
        waits: list[Any] = [self._wakeup]
        if self._is_postgresql():
            if self._listener is None and self._listen():
                return  # just subscribed: a row may have committed before, look once more
            if self._listener is not None:
                waits.append(self._listener)
        ready, _, _ = _select.select(waits, [], [], timeout)
        self._wakeup.clear()
        if self._listener is not None and self._listener in ready:
            try:
                for _ in self._listener.notifies(timeout=0):
                    pass  # one look at the outbox serves them all
            except Exception as exc:  # the connection broke: poll until it is back
                log.warning("outbox LISTEN connection lost: %s", exc)
                self._close_listener()

    def _listen(self) -> bool:
        """Open the dedicated autocommit connection and LISTEN; False (and poll) if it fails."""
        if time.monotonic() < self._listen_retry_at:
            return False
        try:
            proxied = self._engine().raw_connection()
            conn = proxied.driver_connection  # the psycopg connection itself
            proxied.detach()  # the engine's settings, but out of the pool for good
            assert conn is not None
            conn.rollback()  # the pool's ping may have opened a transaction
            conn.autocommit = True
            conn.execute(f'LISTEN "{notify_channel(self._table)}"')
        except Exception as exc:
            log.warning("outbox relay cannot LISTEN, polling every %ss: %s", self._poll, exc)
            self._listen_retry_at = time.monotonic() + _LISTEN_RETRY_SECONDS
            return False
        self._listener = conn
        return True

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except Exception:  # closing a broken connection may itself fail
                log.debug("closing the LISTEN connection failed", exc_info=True)

    def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # closing a broken producer may itself fail
                log.debug("closing producer failed", exc_info=True)
