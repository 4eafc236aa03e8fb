"""The benchmark's peer: a service's consumer work written with FastStream instead of the kit.

``python -m bench.peer_faststream <service>`` runs the service exactly as ``serve`` does —
same settings (``MOTCUA_<SVC>_*``), migrations, dependencies, outbox relay, timers, gRPC
(health) and ``on_start`` hooks — except that its Kafka consumption is a FastStream batch
subscriber (aiokafka) instead of ``motcua_kit.consumer.ConsumerRunner``. What a team would
write with FastStream to get the same guarantees, and no more:

* one batch per ``getmany`` (at most ``consumer_batch_size`` records, all partitions), in ONE
  database transaction: one query checks the inbox for the batch's event ids, each new
  event's handler — the service's own ``@event_handler`` method, unchanged — runs in a
  savepoint (as the kit's runner does, so a failing handler could be isolated), or, where
  the service declares a batch function for the handler (audit), consecutive events of it
  go to that function in one call and one savepoint, as the kit's runner does; then one
  executemany records the processed ids with the same columns;
* the offsets are committed after the transaction commits (``AckPolicy.NACK_ON_ERROR``:
  auto-commit off, FastStream commits once the handler returned; on an exception it seeks
  back, so the batch is redelivered — no retries and no DLQ, which the bench never needs).

The handler is a plain function: FastStream runs synchronous handlers in a worker thread, so
the database work does not block the event loop that fetches and heartbeats.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session, sessionmaker

from motcua_kit.consumer import ANY_TYPE, Handler
from motcua_kit.envelope import EnvelopeError, Event, decode
from motcua_kit.kafka import ensure_topics
from motcua_kit.logging import configure_logging
from motcua_kit.service import Service, ServiceHost

log = logging.getLogger("bench.peer_faststream")

SERVICES = {
    "audit": "motcua_audit.service:AuditService",
    "notify": "motcua_notify.service:NotifyService",
    "payment": "motcua_payment.service:PaymentService",
    "dossier": "motcua_dossier.service:DossierService",
}


def service_class(name: str) -> type[Service]:
    """The service's own class, by its short name."""
    module, _, attr = SERVICES[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert isinstance(cls, type) and issubclass(cls, Service)
    return cls


def without_consumer(cls: type[Service]) -> type[Service]:
    """The service class with no event handlers: the host then starts no ConsumerRunner."""

    def handlers(self: Service) -> list[Handler]:
        return []

    return type(f"NoConsumer{cls.__name__}", (cls,), {"handlers": handlers})


class BatchWork:
    """One batch of records: inbox check, the service's handlers, inbox rows, one commit."""

    def __init__(
        self, group: str, handlers: Sequence[Handler], sessions: sessionmaker[Session], inbox: Table
    ) -> None:
        self.group = group
        self.handlers = {(h.topic, h.event_type): h for h in handlers}
        self.sessions = sessions
        self.inbox = inbox

    def _handler(self, topic: str, event_type: str) -> Handler | None:
        return self.handlers.get((topic, event_type)) or self.handlers.get((topic, ANY_TYPE))

    def __call__(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        items: list[tuple[ConsumerRecord[Any, Any], Event, Handler]] = []
        for record in records:
            try:
                event = decode(record.key, record.value, record.headers or ())
            except EnvelopeError:
                log.error(
                    "undecodable record %s[%d]@%d", record.topic, record.partition, record.offset
                )
                continue
            handler = self._handler(record.topic, event.type)
            if handler is not None:
                items.append((record, event, handler))
        if not items:
            return
        inbox = self.inbox
        with self.sessions() as session, session.begin():
            seen = set(
                session.scalars(
                    select(inbox.c.event_id).where(
                        inbox.c.consumer_group == self.group,
                        inbox.c.event_id.in_({e.id for _r, e, _h in items}),
                    )
                )
            )
            fresh: list[tuple[ConsumerRecord[Any, Any], Event, Handler]] = []
            for record, event, handler in items:
                if event.id not in seen:
                    seen.add(event.id)
                    fresh.append((record, event, handler))
            rows: list[dict[str, object]] = []
            for run in _runs(fresh):
                handler = run[0][2]
                parsed = [
                    (e, e.parse(handler.message_type) if handler.message_type else None)
                    for _r, e, _h in run
                ]
                with session.begin_nested():
                    if handler.batch is not None:
                        handler.batch(parsed, session)
                    else:
                        for event, message in parsed:
                            handler.fn(event, message, session)
                rows += [
                    {
                        "consumer_group": self.group,
                        "event_id": event.id,
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "processed_at": datetime.now(UTC),
                    }
                    for record, event, _h in run
                ]
            if rows:
                session.execute(insert(inbox), rows)


def _runs(
    items: Sequence[tuple[ConsumerRecord[Any, Any], Event, Handler]],
) -> list[list[tuple[ConsumerRecord[Any, Any], Event, Handler]]]:
    """Consecutive records of one batch handler together; any other record alone, in order."""
    runs: list[list[tuple[ConsumerRecord[Any, Any], Event, Handler]]] = []
    for item in items:
        handler = item[2]
        if runs and handler.batch is not None and runs[-1][0][2] is handler:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def build_broker(host: ServiceHost, work: BatchWork, topics: Sequence[str]) -> KafkaBroker:
    """A FastStream broker with one batch subscriber doing ``work``, offsets after commit."""
    s = host.settings
    broker = KafkaBroker(
        s.kafka_bootstrap.split(","),
        client_id=f"faststream-{s.service_name}",
        consumer_only=True,
        logger=logging.getLogger("bench.peer_faststream.broker"),
    )

    @broker.subscriber(
        *topics,
        group_id=work.group,
        batch=True,
        max_records=s.consumer_batch_size,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=s.consumer_session_timeout_ms,
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    def consume(message: KafkaMessage) -> None:
        raw = message.raw_message
        work(raw if isinstance(raw, tuple) else (raw,))

    return broker


async def _serve(broker: KafkaBroker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    await stop.wait()
    await broker.stop()


def main(argv: Sequence[str]) -> None:
    """Run one service with a FastStream consumer until SIGTERM; then stop like ``serve``."""
    if len(argv) != 1 or argv[0] not in SERVICES:
        raise SystemExit(f"usage: python -m bench.peer_faststream {{{','.join(SERVICES)}}}")
    cls = service_class(argv[0])
    settings = cls.settings_class()
    host = ServiceHost(without_consumer(cls), settings)
    handlers = cls.handlers(host.service)
    assert cls.inbox_table is not None
    topics = sorted({h.topic for h in handlers})
    configure_logging(cls.name, settings.log_level)
    host.migrate()
    if settings.kafka_create_topics:
        ensure_topics(settings, topics)
    work = BatchWork(
        settings.consumer_group or f"motcua-{cls.name}", handlers, host.sessions, cls.inbox_table
    )
    host.start()
    try:
        asyncio.run(_serve(build_broker(host, work, topics)))
    finally:
        host.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
