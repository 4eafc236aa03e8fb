"""Consumer runner: handlers per CloudEvents type, an inbox for exactly-once effects, a DLQ.

For each record: decode the envelope; find the handler for its ``ce_type``; in one database
transaction check the inbox, run the handler, record the event id — so a redelivered event
changes nothing. A handler that keeps failing, or a record that cannot be decoded, goes to the
topic's ``.dlq`` companion with the error in its headers, and the runner goes on. Offsets are
committed only after the records before them are processed or dead-lettered.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
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
from motcua_kit.metrics import CONSUMER_LAG, DLQ_PUBLISHED, EVENTS_CONSUMED
from motcua_kit.tracing import context_from_kafka_headers
from motcua_kit.worker import ProducingWorker

log = logging.getLogger(__name__)

ANY_TYPE = "*"
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


@dataclass(frozen=True)
class Handler:
    """One event handler: the types it takes, and the protobuf message its payload must parse as.

    ``message_type`` None means the handler takes the raw event (e.g. audit records any event).
    """

    topic: str
    event_type: str
    fn: HandlerFn
    message_type: type[Message] | None = None


class PermanentError(Exception):
    """A handler's way to say retrying cannot help: dead-letter at once."""


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
        self._tracer = trace.get_tracer(f"motcua.{service}.consumer")
        self.assigned = threading.Event()
        self._lag_reported: set[TopicPartition] = set()
        for topic in self.topics:
            # Start every DLQ counter at 0, so "increased" alerts see the first dead letter.
            DLQ_PUBLISHED.labels(service, topic)

    # -- one record --------------------------------------------------------------------------
    def _handler_for(self, topic: str, event_type: str) -> Handler | None:
        return self._handlers.get((topic, event_type)) or self._handlers.get((topic, ANY_TYPE))

    def process(self, record: ConsumerRecord) -> str:
        """Handle one record; returns the outcome (processed, duplicate, ignored, dead_lettered)."""
        try:
            event = decode(record.key, record.value, record.headers or [])
        except EnvelopeError as exc:
            self._dead_letter(record, exc)
            return "dead_lettered"
        handler = self._handler_for(record.topic, event.type)
        if handler is None:
            return "ignored"
        parent = context_from_kafka_headers(record.headers or [])
        last_error: Exception | None = None
        for attempt in range(1, self._max_attempts + 1):
            token = otel_context.attach(parent)
            try:
                with self._tracer.start_as_current_span(
                    f"{record.topic} process",
                    kind=trace.SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.destination.name": record.topic,
                        "messaging.message.id": event.id,
                        "cloudevents.event_type": event.type,
                        "motcua.attempt": attempt,
                    },
                ):
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
    def run(self) -> None:
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                consumer = self._consumer_factory(self.group_id)
                consumer.subscribe(self.topics)
                self._consume(consumer)
            except Exception as exc:
                log.warning("consumer %s failed, restarting: %s", self.group_id, exc)
                self._stop.wait(1.0)
            finally:
                if consumer is not None:
                    try:
                        consumer.close(autocommit=False)
                    except Exception:
                        log.debug("closing consumer failed", exc_info=True)

    def _consume(self, consumer: KafkaConsumer) -> None:
        last_lag = 0.0
        while not self._stop.is_set():
            batch: Mapping[TopicPartition, list[ConsumerRecord]] = consumer.poll(timeout_ms=200)
            if consumer.assignment():
                self.assigned.set()
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, records in batch.items():
                for record in records:
                    if self._stop.is_set():
                        break
                    outcome = self.process(record)
                    EVENTS_CONSUMED.labels(self.service, record.topic, outcome).inc()
                    offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
            if offsets:
                consumer.commit(offsets)
            if time.monotonic() - last_lag > 2.0:
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
