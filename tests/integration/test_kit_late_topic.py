"""A consumer sees partitions added after it joined within the kit's metadata age.

The operator may raise a topic's partitions (KafkaTopic spec.partitions) while the pods run,
and locally one service may create a topic another already subscribed to. kafka-python's
default metadata age would leave such partitions unread for five minutes (the demo's payment
waited 90 s for its first payment request); the kit refreshes every KAFKA_METADATA_MAX_AGE_MS.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition

from harness import Kafka
from motcua_kit.kafka import API_VERSION, ensure_topics, make_consumer
from motcua_kit.settings import ServiceSettings

pytestmark = pytest.mark.integration


def test_partitions_added_after_the_join_are_consumed_within_the_metadata_age(
    kafka: Kafka,
) -> None:
    topic = f"kit.late.{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(
        kafka_bootstrap=kafka.bootstrap, topic_partitions=1, kafka_metadata_max_age_ms=1_000
    )
    ensure_topics(settings, [topic])
    consumer = make_consumer(settings, f"kit-late-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap], api_version=API_VERSION)
    try:
        deadline = time.monotonic() + 15
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        assert consumer.assignment() == {TopicPartition(topic, 0)}
        admin.create_partitions({topic: 2})
        producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=API_VERSION)
        producer.send(topic, b"on the new partition", partition=1).get(timeout=10)
        producer.close()
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 20  # kafka-python's default age (300 s) misses this
        while not got and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                got += [(tp.partition, r.value) for r in records]
        assert got == [(1, b"on the new partition")]
    finally:
        consumer.close(autocommit=False)
        admin.close()
