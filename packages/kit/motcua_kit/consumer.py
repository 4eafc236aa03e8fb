"""Consumer runner: handlers per CloudEvents type, an inbox for exactly-once effects, a DLQ.

The records of one poll are handled per partition, in batches (ADR 0012): in ONE database
transaction, one query checks the inbox for the whole batch, each record's handler runs in a
savepoint of its own, and one statement records the processed event ids — so a redelivered
event changes nothing. A handler that fails has only its savepoint rolled back: the records
before it commit, it is retried alone (:meth:`ConsumerRunner.process`), and the rest go on in
the next transaction, in order. A handler that keeps failing, or a record that cannot be
decoded, goes to the topic's ``.dlq`` companion with the error in its headers, and the runner
goes on. Offsets are committed only after the records before them are committed or
dead-lettered. A handler may also declare a batch function (:attr:`Handler.batch`) that takes
all of a batch's records for it in one call; if it fails, those records take the per-record
path above.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import Message
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry import context as otel_context
from opentelemetry import trace
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    exists,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from motcua_kit.envelope import EnvelopeError, Event, decode
from motcua_kit.kafka import describe_auth_error, is_auth_error, sticky_auth_failure
from motcua_kit.metrics import CONSUMER_LAG, DLQ_PUBLISHED, EVENTS_CONSUMED
from motcua_kit.readiness import READINESS
from motcua_kit.tracing import context_from_kafka_headers
from motcua_kit.worker import ProducingWorker

log = logging.getLogger(__name__)

ANY_TYPE = "*"
MAX_BATCH_SPAN_LINKS = 128
"""Links of a batch call's span at most: OpenTelemetry's default span link limit."""
DLQ_SUFFIX = ".dlq"


def inbox_table(metadata: MetaData) -> Table:
    """Add the inbox (processed event ids per consumer group) to a service's metadata."""
    return Table(
        "inbox",
        metadata,
        Column("consumer_group", String(200), nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", Integer, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("consumer_group", "event_id", name="pk_inbox"),
    )


HandlerFn = Callable[[Event, Message | None, Session], None]
BatchFn = Callable[[Sequence[tuple[Event, Message | None]], Session], None]


@dataclass(frozen=True)
class Handler:
    """One event handler: the types it takes, and the protobuf message its payload must parse as.

    ``message_type`` None means the handler takes the raw event (e.g. audit records any event).

    ``batch``, when set, takes many records of this handler at once: a batch's records for it,
    in offset order, after the inbox dedupe, as ``[(event, message), ...]`` in the batch's
    transaction (one call where ``fn`` would be called per record). It must have the same
    effect as ``fn`` on each, in order. If it raises, its savepoint is rolled back and those
    records go through ``fn`` one by one (savepoint each, retried and dead-lettered alone), so
    a poison record still fails alone. ``fn`` is required either way: the retries, the replay
    of a failed batch and a lone record all use it.
    """

    topic: str
    event_type: str
    fn: HandlerFn
    message_type: type[Message] | None = None
    batch: BatchFn | None = None


class PermanentError(Exception):
    """A handler's way to say retrying cannot help: dead-letter at once."""


def _is_psycopg(session: Session) -> bool:
    """PostgreSQL through psycopg: batches go as binary arrays, one statement each."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


# After an authentication or authorization failure: the retry waits double up to this, and the
# service is ready again once its partitions have been read for this long without one.
_AUTH_RETRY_MAX_SECONDS = 30.0
_AUTH_PROBATION_SECONDS = 3.0


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


class ConsumerRunner(ProducingWorker):
    """Consumes topics for one consumer group and dispatches to handlers, in a thread."""

    def __init__(
        self,
        service: str,
        group_id: str,
        handlers: Iterable[Handler],
        sessions: sessionmaker[Session],
        inbox: Table,
        consumer_factory: Callable[[str], KafkaConsumer],
        producer_factory: Callable[[], KafkaProducer],
        *,
        max_attempts: int = 3,
        retry_backoff: float = 0.2,
        batch_size: int = 500,
        batch_wait_ms: int = 10,
        test_kill_before_commit: bool = False,
    ) -> None:
        super().__init__(f"consumer-{group_id}", producer_factory)
        self.service = service
        self.group_id = group_id
        self._handlers: dict[tuple[str, str], Handler] = {}
        for h in handlers:
            self._handlers[(h.topic, h.event_type)] = h
        self.topics = sorted({t for t, _ in self._handlers})
        self._sessions = sessions
        self._inbox = inbox
        self._consumer_factory = consumer_factory
        self._max_attempts = max_attempts
        self._backoff = retry_backoff
        self._batch_size = max(batch_size, 1)
        self._batch_wait = max(batch_wait_ms, 0) / 1000
        # TEST ONLY (MOTCUA_<SVC>_TEST_KILL_BEFORE_COMMIT): the crash test's SIGKILL point.
        self._test_kill_before_commit = test_kill_before_commit
        self._tracer = trace.get_tracer(f"motcua.{service}.consumer")
        self.assigned = threading.Event()
        self._lag_reported: set[TopicPartition] = set()
        self._refused = 0  # authentication/authorization failures since it last worked
        for topic in self.topics:
            # Start every DLQ counter at 0, so "increased" alerts see the first dead letter.
            DLQ_PUBLISHED.labels(service, topic)

    # -- one record --------------------------------------------------------------------------
    def _handler_for(self, topic: str, event_type: str) -> Handler | None:
        return self._handlers.get((topic, event_type)) or self._handlers.get((topic, ANY_TYPE))

    def process(self, record: ConsumerRecord, failed: Exception | None = None) -> str:
        """Handle one record alone, in a transaction of its own; returns the outcome
        (processed, duplicate, ignored, dead_lettered).

        ``failed`` is the error of a first attempt already made (in a batch): the retries go on
        from the second attempt, after the backoff.
        """
        try:
            event = decode(record.key, record.value, record.headers or [])
        except EnvelopeError as exc:
            self._dead_letter(record, exc)
            return "dead_lettered"
        handler = self._handler_for(record.topic, event.type)
        if handler is None:
            return "ignored"
        parent = context_from_kafka_headers(record.headers or [])
        last_error: Exception | None = failed
        first = 1
        if failed is not None:
            first = 2
            if self._max_attempts > 1:
                self._stop.wait(self._backoff)
        for attempt in range(first, self._max_attempts + 1):
            token = otel_context.attach(parent)
            try:
                with self._span(record, event, attempt):
                    return self._apply(handler, event, record)
            except (EnvelopeError, PermanentError) as exc:
                self._dead_letter(record, exc)
                return "dead_lettered"
            except Exception as exc:
                last_error = exc
                log.warning(
                    "handler failed (attempt %d/%d) for %s %s: %s",
                    attempt,
                    self._max_attempts,
                    event.type,
                    event.id,
                    exc,
                )
                if attempt < self._max_attempts:
                    self._stop.wait(self._backoff * 2 ** (attempt - 1))
            finally:
                otel_context.detach(token)
        assert last_error is not None
        self._dead_letter(record, last_error)
        return "dead_lettered"

    def _apply(self, handler: Handler, event: Event, record: ConsumerRecord) -> str:
        message = event.parse(handler.message_type) if handler.message_type else None
        inbox = self._inbox
        try:
            with self._sessions() as session, session.begin():
                seen = session.scalar(
                    select(
                        exists().where(
                            inbox.c.consumer_group == self.group_id, inbox.c.event_id == event.id
                        )
                    )
                )
                if seen:
                    return "duplicate"
                handler.fn(event, message, session)
                session.execute(
                    insert(inbox).values(
                        consumer_group=self.group_id,
                        event_id=event.id,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        processed_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            # Another replica recorded the same event id first: its effects stand, ours rolled back.
            with self._sessions() as session:
                if session.scalar(
                    select(
                        exists().where(
                            inbox.c.consumer_group == self.group_id, inbox.c.event_id == event.id
                        )
                    )
                ):
                    return "duplicate"
            raise
        return "processed"

    # -- a batch of one partition's records --------------------------------------------------
    def process_batch(self, records: Sequence[ConsumerRecord]) -> list[str]:
        """Handle one partition's records in order, in as few transactions as it takes.

        Returns the outcomes of the records handled: all of them, or a prefix when the runner
        is stopping (the rest stay uncommitted in Kafka).
        """
        outcomes: list[str] = []
        while len(outcomes) < len(records) and not self._stop.is_set():
            done, failed = self._transaction(records[len(outcomes) :])
            outcomes += done
            if failed is not None:
                # Its savepoint rolled back, the records before it committed: retry it alone.
                outcomes.append(self.process(records[len(outcomes)], failed))
            elif not done:
                break
        return outcomes

    def _transaction(self, records: Sequence[ConsumerRecord]) -> tuple[list[str], Exception | None]:
        """Records in one transaction, up to the first whose handler fails transiently.

        Returns the outcomes of the records committed or dead-lettered, and the failure of
        the record after them (None when every record was handled or the runner stops).
        """
        items: list[tuple[ConsumerRecord, Event | EnvelopeError, Handler | None]] = []
        for record in records:
            try:
                event: Event | EnvelopeError = decode(
                    record.key, record.value, record.headers or []
                )
            except EnvelopeError as exc:
                event = exc
            handler = None
            if isinstance(event, Event):
                handler = self._handler_for(record.topic, event.type)
            items.append((record, event, handler))
        ids = list({e.id for _r, e, h in items if isinstance(e, Event) and h is not None})
        outcomes: list[str] = []
        failed: Exception | None = None
        try:
            with self._sessions() as session, session.begin():
                seen = self._inbox_seen(session, ids) if ids else set()
                rows: list[dict[str, object]] = []
                # Records a batch function applied (their effects are in the transaction now)
                # and records whose batch function failed (they go one by one instead).
                applied: set[int] = set()
                unbatched: set[int] = set()
                applied_through = -1
                for pos, (record, event, handler) in enumerate(items):
                    # Stop between records, never inside what a batch function applied: its
                    # records' effects are in the transaction and need their inbox rows.
                    if self._stop.is_set() and pos > applied_through:
                        break
                    if isinstance(event, EnvelopeError):
                        self._dead_letter(record, event)
                        outcomes.append("dead_lettered")
                        continue
                    if handler is None:
                        outcomes.append("ignored")
                        continue
                    if event.id in seen:
                        outcomes.append("duplicate")
                        continue
                    if handler.batch is not None and pos not in applied and pos not in unbatched:
                        run = self._run_for(items, pos, handler, seen)
                        if self._handle_batch_in_savepoint(session, handler, run, items):
                            applied.update(run)
                            applied_through = run[-1]
                        else:
                            unbatched.update(run)
                    if pos not in applied:
                        try:
                            self._handle_in_savepoint(session, handler, event, record)
                        except (EnvelopeError, PermanentError) as exc:
                            self._dead_letter(record, exc)
                            outcomes.append("dead_lettered")
                            continue
                        except Exception as exc:
                            log.warning(
                                "handler failed (attempt 1/%d) for %s %s: %s",
                                self._max_attempts,
                                event.type,
                                event.id,
                                exc,
                            )
                            failed = exc
                            break
                    seen.add(event.id)
                    rows.append(
                        {
                            "consumer_group": self.group_id,
                            "event_id": event.id,
                            "topic": record.topic,
                            "partition": record.partition,
                            "offset": record.offset,
                            "processed_at": datetime.now(UTC),
                        }
                    )
                    outcomes.append("processed")
                if rows:
                    self._inbox_insert(session, rows)
                    if self._test_kill_before_commit:
                        self._test_kill()
        except Exception as exc:
            # Not a handler's failure: the inbox (another replica recorded an event first) or
            # the database. Nothing of the batch committed: replay it record by record, each in
            # its own transaction with its own retries, so one bad record cannot hold the rest.
            log.warning("batch of %d failed, replaying it record by record: %s", len(items), exc)
            replayed: list[str] = []
            final = [*outcomes, *[""] * (len(items) - len(outcomes))]
            for (record, _e, _h), outcome in zip(items, final, strict=True):
                if self._stop.is_set():
                    break
                if outcome in ("dead_lettered", "ignored"):
                    replayed.append(outcome)  # not the transaction's: already final
                else:
                    replayed.append(self.process(record))
            return replayed, None
        return outcomes, failed

    # -- the inbox, for a whole batch ------------------------------------------------------------
    def _inbox_seen(self, session: Session, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the inbox holds for this group: one query."""
        inbox = self._inbox
        if _is_psycopg(session):
            # One index probe per id, written so PostgreSQL cannot plan anything else: with
            # ``event_id IN (...)`` and stale statistics (an inbox that grew from empty) it
            # may match the group on the index and compare every row of it with every id,
            # which grows with the inbox (130 ms per batch of 500 with 15k rows). A scalar
            # subquery with LIMIT 1 is never flattened into a join or hashed.
            sql = (
                "SELECT u.id FROM unnest(CAST(%(ids)b AS TEXT[])) AS u(id) "
                f"WHERE (SELECT 1 FROM {inbox.name} i WHERE i.consumer_group = %(group)s "
                "AND i.event_id = u.id LIMIT 1) IS NOT NULL"
            )
            result = session.connection().exec_driver_sql(
                sql, {"ids": list(ids), "group": self.group_id}
            )
            return {str(r[0]) for r in result}
        return set(
            session.scalars(
                select(inbox.c.event_id).where(
                    inbox.c.consumer_group == self.group_id, inbox.c.event_id.in_(ids)
                )
            )
        )

    def _inbox_insert(self, session: Session, rows: Sequence[dict[str, object]]) -> None:
        """Record the batch's processed event ids: one statement."""
        if _is_psycopg(session):
            # One INSERT ... SELECT over arrays (binary), not one execution per row.
            sql = (
                f"INSERT INTO {self._inbox.name} (consumer_group, event_id, topic, partition, "
                '"offset", processed_at) '
                "SELECT %(group)s, u.event_id, u.topic, u.partition, u.off, u.at "
                "FROM unnest(CAST(%(event_id)b AS TEXT[]), CAST(%(topic)b AS TEXT[]), "
                "CAST(%(partition)b AS INTEGER[]), CAST(%(offset)b AS BIGINT[]), "
                "CAST(%(processed_at)b AS TIMESTAMPTZ[])) AS u(event_id, topic, partition, off, at)"
            )
            arrays: dict[str, object] = {
                c: [r[c] for r in rows]
                for c in ("event_id", "topic", "partition", "offset", "processed_at")
            }
            session.connection().exec_driver_sql(sql, {"group": self.group_id, **arrays})
            return
        session.execute(insert(self._inbox), list(rows))  # in-process (SQLite): executemany

    def _span(
        self, record: ConsumerRecord, event: Event, attempt: int
    ) -> AbstractContextManager[trace.Span]:
        """The consumer span of one attempt at one record."""
        return self._tracer.start_as_current_span(
            f"{record.topic} process",
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.message.id": event.id,
                "cloudevents.event_type": event.type,
                "motcua.attempt": attempt,
            },
        )

    def _batch_span(
        self, records: Sequence[ConsumerRecord], events: Sequence[Event]
    ) -> AbstractContextManager[trace.Span]:
        """The consumer span of one batch call, as OpenTelemetry's messaging conventions have
        it for batch processing: ONE span, linked to the producer context of each record (up
        to the SDK's default limit of links per span). Its parent is the oldest record's
        producer context, so a batch of one record is the per-record span exactly; its
        message id and event type are that record's. (A span per record cost more than the
        handler itself: some 0.1 ms each with the SDK.)"""
        links = []
        for record in records[:MAX_BATCH_SPAN_LINKS]:
            linked = trace.get_current_span(context_from_kafka_headers(record.headers or []))
            if linked.get_span_context().is_valid:
                links.append(trace.Link(linked.get_span_context()))
        # The oldest record (by its timestamp; poll order on a tie) is the parent: when one poll
        # brings records of several topics, the span continues the work that waited longest.
        oldest = min(range(len(records)), key=lambda i: (records[i].timestamp, i))
        first, event = records[oldest], events[oldest]
        return self._tracer.start_as_current_span(
            f"{first.topic} process",
            context=context_from_kafka_headers(first.headers or []),
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": first.topic,
                "messaging.message.id": event.id,
                "messaging.batch.message_count": len(records),
                "cloudevents.event_type": event.type,
                "motcua.attempt": 1,
            },
        )

    def _handle_in_savepoint(
        self, session: Session, handler: Handler, event: Event, record: ConsumerRecord
    ) -> None:
        """The first attempt at one record, in a savepoint (rolled back alone if it fails)."""
        token = otel_context.attach(context_from_kafka_headers(record.headers or []))
        try:
            with self._span(record, event, 1):
                message = event.parse(handler.message_type) if handler.message_type else None
                with session.begin_nested():
                    handler.fn(event, message, session)
                _log_handled([(record, event)])
        finally:
            otel_context.detach(token)

    def _run_for(
        self,
        items: Sequence[tuple[ConsumerRecord, Event | EnvelopeError, Handler | None]],
        start: int,
        handler: Handler,
        seen: set[str],
    ) -> list[int]:
        """Positions of the records from ``start`` on that ``handler``'s batch function takes
        in one call: the records, in order, that are not duplicates, of every handler that
        declares the same batch function (one function may take several event types), up to
        the first record another function takes (which must see the effects before it, in
        partition order). Records nobody handles, duplicates and undecodable ones in between
        do not split it."""
        run: list[int] = []
        ids: set[str] = set()
        for pos in range(start, len(items)):
            _record, event, other = items[pos]
            if not isinstance(event, Event) or other is None or event.id in seen:
                continue
            if other is not handler and (other.batch is None or other.batch != handler.batch):
                break
            if event.id not in ids:
                ids.add(event.id)
                run.append(pos)
        return run

    def _handle_batch_in_savepoint(
        self,
        session: Session,
        handler: Handler,
        run: Sequence[int],
        items: Sequence[tuple[ConsumerRecord, Event | EnvelopeError, Handler | None]],
    ) -> bool:
        """The first attempt at a run of records with the handler's batch function, in one
        savepoint; False (savepoint rolled back) if it failed, for the per-record path."""
        assert handler.batch is not None
        records = [items[p][0] for p in run]
        taken = [(e, h) for _r, e, h in (items[p] for p in run) if isinstance(e, Event)]
        events = [e for e, _h in taken]
        try:
            with self._batch_span(records, events):
                pairs = [
                    (e, e.parse(h.message_type) if h is not None and h.message_type else None)
                    for e, h in taken
                ]
                with session.begin_nested():
                    handler.batch(pairs, session)
        except Exception as exc:
            log.warning(
                "batch handler failed for %d records of %s; handling them one by one: %s",
                len(run),
                records[0].topic,
                exc,
            )
            return False
        _log_handled([(r, e) for r, e, _h in (items[p] for p in run) if isinstance(e, Event)])
        return True

    def _test_kill(self) -> None:
        """TEST ONLY: die like a crashed pod, after the handlers ran, before the commit (once)."""
        self._test_kill_before_commit = False
        log.warning("TEST ONLY: killing the process before the batch's commit (SIGKILL)")
        for h in logging.getLogger().handlers:
            h.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def _dead_letter(self, record: ConsumerRecord, error: BaseException) -> None:
        """Publish the record unchanged to ``<topic>.dlq`` with the error; wait for the ack."""
        headers = list(record.headers or [])
        headers += [
            ("motcua_error", str(error)[:2000].encode("utf-8", "replace")),
            ("motcua_error_type", type(error).__name__.encode()),
            ("motcua_error_trace", "".join(traceback.format_exception(error))[-4000:].encode()),
            ("motcua_original_topic", record.topic.encode()),
            ("motcua_original_partition", str(record.partition).encode()),
            ("motcua_original_offset", str(record.offset).encode()),
            ("motcua_consumer_group", self.group_id.encode()),
            ("motcua_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        producer = self._ensure_producer()
        producer.send(
            dlq_topic(record.topic), key=record.key, value=record.value, headers=headers
        ).get(timeout=30)
        DLQ_PUBLISHED.labels(self.service, record.topic).inc()
        log.error(
            "dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, error
        )

    # -- the loop ----------------------------------------------------------------------------
    @property
    def _component(self) -> str:
        return f"consumer {self.group_id}"

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                consumer: KafkaConsumer | None = None
                refused_wait = 0.0
                try:
                    consumer = self._consumer_factory(self.group_id)
                    consumer.subscribe(self.topics)
                    self._consume(consumer)
                except Exception as exc:
                    if not is_auth_error(exc):
                        log.warning("consumer %s failed, restarting: %s", self.group_id, exc)
                        self._stop.wait(1.0)
                        continue
                    # Not a crash and no restart of the process: an ACL or a password is
                    # missing. Not ready (the pod leaves rotation), retrying ever more slowly.
                    self._refused += 1
                    user = str(consumer.config.get("sasl_plain_username") or "") if consumer else ""
                    reason = f"consumer group {self.group_id}: " + describe_auth_error(
                        exc, user, group=self.group_id
                    )
                    READINESS.block(self.service, self._component, reason)
                    refused_wait = min(2.0**self._refused, _AUTH_RETRY_MAX_SECONDS)
                    log.error("%s; not ready, retrying in %.0f s", reason, refused_wait)
                finally:
                    if consumer is not None:
                        try:
                            # Leaving the group within what is left of the stop's budget.
                            close_ms = int(self._remaining(5.0) * 1000)
                            consumer.close(autocommit=False, timeout_ms=close_ms)
                        except Exception:
                            log.debug("closing consumer failed", exc_info=True)
                if refused_wait:
                    self._stop.wait(refused_wait)  # closed meanwhile: no retries in the background
        finally:
            READINESS.clear(self.service, self._component)

    def _poll(self, consumer: KafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """One poll, topped up for at most the batch wait while under the batch size."""
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        got: Mapping[TopicPartition, list[ConsumerRecord]] = consumer.poll(
            timeout_ms=200, max_records=self._batch_size
        )
        count = 0
        until = time.monotonic() + self._batch_wait
        while got:
            for tp, records in got.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
            left = until - time.monotonic()
            if count >= self._batch_size or left <= 0 or self._stop.is_set():
                break
            got = consumer.poll(timeout_ms=int(left * 1000), max_records=self._batch_size - count)
        return batch

    def _consume(self, consumer: KafkaConsumer) -> None:
        last_lag = 0.0
        created = time.monotonic()
        assigned_since: float | None = None
        while not self._stop.is_set():
            batch = self._poll(consumer)
            if consumer.assignment():
                self.assigned.set()
                now = time.monotonic()
                assigned_since = assigned_since or now
                # A refusal of the fetches comes within a poll or two of the assignment:
                # ready again only once the partitions have been read for a while.
                if self._refused and now - assigned_since >= _AUTH_PROBATION_SECONDS:
                    self._refused = 0
                    READINESS.clear(self.service, self._component)
            elif not batch:
                failure = sticky_auth_failure(consumer, created)
                if failure is not None:
                    raise failure  # kafka-python only logs a refused handshake and retries
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, records in batch.items():
                if self._stop.is_set():
                    break
                outcomes = self.process_batch(records)
                for outcome, count in Counter(outcomes).items():  # one partition: one topic
                    EVENTS_CONSUMED.labels(self.service, tp.topic, outcome).inc(count)
                if outcomes:
                    offsets[tp] = OffsetAndMetadata(records[len(outcomes) - 1].offset + 1, "", -1)
            if offsets:
                stopping = self._stop_by is not None
                consumer.commit(
                    offsets, timeout_ms=int(self._remaining(0.0) * 1000) if stopping else None
                )
            if time.monotonic() - last_lag > 2.0 and not self._stop.is_set():
                last_lag = time.monotonic()
                self._report_lag(consumer)

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        assigned = set(consumer.assignment())
        for tp in self._lag_reported - assigned:
            # Revoked in a rebalance: another replica reports it now; stale lag would alert.
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.service, tp.topic, str(tp.partition))
        self._lag_reported = assigned
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = consumer.position(tp, timeout_ms=1000)
            except Exception:
                continue
            if position is not None:
                CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(
                    max(high - position, 0)
                )


def _log_handled(handled: Sequence[tuple[ConsumerRecord, Event]]) -> None:
    """DEBUG: one line per handled record, in the record's own trace, so that a trace id seen
    in the tracing backend finds the service's log lines (and the other way round), also for
    records handled together in one batch span."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    for record, event in handled:
        token = otel_context.attach(context_from_kafka_headers(record.headers or []))
        try:
            log.debug(
                "handled %s",
                event.type,
                extra={
                    "event_id": event.id,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            )
        finally:
            otel_context.detach(token)
