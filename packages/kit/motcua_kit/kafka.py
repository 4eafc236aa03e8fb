"""kafka-python clients configured the same way everywhere (security, idempotence, timeouts)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from motcua_kit.settings import ServiceSettings

API_VERSION = (4, 0)  # setting it skips kafka-python's blocking version probe


def security_options(settings: ServiceSettings) -> dict[str, Any]:
    """TLS / SASL options; PLAINTEXT needs none."""
    opts: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL") and settings.kafka_ssl_cafile:
        opts["ssl_cafile"] = settings.kafka_ssl_cafile
    if settings.kafka_security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism or "SCRAM-SHA-512"
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password
    return opts


def make_producer(settings: ServiceSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent producer with acks=all: a retried send is never written twice."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "client_id": f"motcua-{settings.service_name}",
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": 5,
        "request_timeout_ms": 10_000,
        "delivery_timeout_ms": 30_000,
        "max_block_ms": 10_000,
        "api_version": API_VERSION,
        "reconnect_backoff_max_ms": 2_000,
        **security_options(settings),
    }
    opts.update(overrides)
    return KafkaProducer(**opts)


def make_consumer(settings: ServiceSettings, group_id: str, **overrides: Any) -> KafkaConsumer:
    """A consumer that commits offsets only when told to (after processing)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "client_id": f"motcua-{settings.service_name}",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 200,
        "api_version": API_VERSION,
        "reconnect_backoff_max_ms": 2_000,
        "metadata_max_age_ms": settings.kafka_metadata_max_age_ms,
        "isolation_level": "read_committed",
        **security_options(settings),
    }
    opts.update(overrides)
    return KafkaConsumer(**opts)


def _new_topic(settings: ServiceSettings, name: str) -> NewTopic:
    """Partitions and retention from the topic registry; unknown topics get the settings'."""
    from motcua_kit.registry import RegistryError, default_registry

    try:
        spec = default_registry().kafka_topic(name, settings.environment)
    except RegistryError:
        return NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1)
    return NewTopic(
        name,
        num_partitions=spec.partitions,
        replication_factor=1,
        topic_configs={"retention.ms": str(spec.retention_ms)},
    )


def ensure_topics(settings: ServiceSettings, topics: list[str], timeout: float = 15.0) -> None:
    """Create the topics if missing, as the topic registry describes them.

    For local runs and tests; production creates them from the chart's KafkaTopic objects,
    which read the same registry.
    """
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        api_version=API_VERSION,
        **security_options(settings),
    )
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([_new_topic(settings, t) for t in missing])
            _wait_until_served(admin, missing, timeout)
    finally:
        admin.close()


def _wait_until_served(admin: KafkaAdminClient, topics: list[str], timeout: float) -> None:
    """Return once the broker serves every topic with a leader for each partition.

    A consumer that joins its group before its topic's partitions are served is assigned
    nothing until its next metadata refresh (in CI the demo's payment waited 90 s so).
    """
    deadline = time.monotonic() + timeout
    pending = list(topics)
    while True:
        described = {t["name"]: t for t in admin.describe_topics(pending)}
        pending = [name for name in pending if not _served(described.get(name))]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics {pending} not served by the broker within {timeout} s")
        time.sleep(0.05)


def _served(topic: dict[str, Any] | None) -> bool:
    """Whether a described topic has partitions, each with a leader."""
    return (
        topic is not None
        and topic.get("error_code", 0) == 0
        and bool(topic.get("partitions"))
        and all(p.get("leader_id", -1) != -1 for p in topic["partitions"])
    )
