"""The subscriber kit on the real broker: typed handlers run once per event id across a
restart, a record that cannot be decoded lands on the topic's .dlq with the group named, and
the consumer metrics are served as the services serve theirs."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, insert, select

from harness import Kafka, free_port, header, read_topic, wait_for
from motcua.dossier.v1 import dossier_pb2
from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua_kit.envelope import Event, encode
from motcua_subscriber import Delivery, Subscriber, SubscriberSettings

pytestmark = pytest.mark.integration

TOPIC = "motcua.dossier.v1"


def _recorder() -> tuple[Subscriber, Table]:
    metadata = MetaData()
    seen = Table(
        "seen",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("event_id", String(64)),
        Column("code", String(64)),
    )
    subscriber = Subscriber("kit-test", metadata=metadata)

    @subscriber.handler(dossier_events.DossierSubmitted)
    def on_submitted(message: dossier_events.DossierSubmitted, delivery: Delivery) -> None:
        delivery.session.execute(
            insert(seen).values(event_id=delivery.event.id, code=message.dossier.code)
        )

    return subscriber, seen


def _send(producer: KafkaProducer, event: Event) -> None:
    record = encode(event)
    producer.send(TOPIC, key=record.key, value=record.value, headers=record.headers).get(30)


def test_handlers_run_once_per_event_across_a_restart_and_poison_goes_to_the_dlq(
    kafka: Kafka, tmp_path: Path
) -> None:
    prefix = "SK" + uuid.uuid4().hex[:6].upper()
    code = f"{prefix}-260302-0001"
    # Two events of one dossier: one key, one partition, so they are consumed in this order.
    events = [
        Event.new(
            source="/motcua/dossier",
            type="vn.motcua.dossier.submitted.v1",
            subject=code,
            message=dossier_events.DossierSubmitted(dossier=dossier_pb2.Dossier(code=code)),
        )
        for _ in range(2)
    ]
    group = f"kit-test-{uuid.uuid4().hex[:8]}"
    settings = SubscriberSettings(
        kafka_bootstrap=kafka.bootstrap,
        database_url=f"sqlite:///{tmp_path}/subscriber.db",
        consumer_group=group,
        retry_backoff_seconds=0.05,
        shutdown_grace_seconds=5,
        metrics_port=free_port(),
    )
    subscriber, seen = _recorder()
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))

    def rows(engine: Engine) -> list[tuple[str, str]]:
        query = select(seen.c.event_id, seen.c.code).where(seen.c.code == code)
        with engine.connect() as conn:
            return [(r.event_id, r.code) for r in conn.execute(query)]

    try:
        _send(producer, events[0])
        _send(producer, events[0])  # the producer retried: same ce_id twice on the topic
        producer.send(TOPIC, key=code.encode(), value=b"not a cloudevent").get(30)
        with subscriber.start(settings) as running:
            wait_for(lambda: len(rows(running.engine)) == 1, 60, 0.2, "the first event")
            metrics = httpx.get(f"http://127.0.0.1:{settings.metrics_port}/metrics").text
            assert any(
                line.startswith("motcua_events_consumed_total{")
                and 'service="kit-test"' in line
                and 'outcome="processed"' in line
                for line in metrics.splitlines()
            ), metrics
        # Restarted with the same group: nothing already handled is handled again, and the
        # same event published once more is a duplicate for the inbox. The second event comes
        # after it on the same partition, so once it is in, the duplicate has been seen.
        _send(producer, events[0])
        _send(producer, events[1])
        with subscriber.start(settings) as running:
            wait_for(
                lambda: any(r[0] == events[1].id for r in rows(running.engine)),
                60,
                0.2,
                "the second event",
            )
            assert sorted(rows(running.engine)) == sorted((e.id, code) for e in events)
    finally:
        producer.close()

    letters = wait_for(
        lambda: [
            r
            for r in read_topic(kafka.bootstrap, TOPIC + ".dlq")
            if header(r, "motcua_consumer_group") == group.encode() and r.key == code.encode()
        ],
        30,
        0.5,
        "the dead letter",
    )
    assert len(letters) == 1
    assert letters[0].value == b"not a cloudevent"
    assert header(letters[0], "motcua_error_type") == b"EnvelopeError"
    assert header(letters[0], "motcua_original_topic") == TOPIC.encode()
