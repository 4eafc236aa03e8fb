"""kafka-python clients configured the same way everywhere (security, idempotence, timeouts)."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

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


# -- authentication and authorization failures (ADR 0084) ----------------------------------
AUTH_ERRORS: tuple[type[Exception], ...] = (AuthorizationError, SaslAuthenticationFailedError)


def is_auth_error(exc: BaseException) -> bool:
    """Kafka refused the credentials, or the principal lacks an ACL: retrying cannot help
    until an operator acts (the worker keeps retrying, the service is not ready)."""
    return isinstance(exc, AUTH_ERRORS)


class _RefusalWatch(logging.Filter):
    """Remembers the last refused SASL handshake kafka-python logs (and lets the line pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[float, Exception] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, SaslAuthenticationFailedError):
                self.last = (time.monotonic(), arg)
        return True


_REFUSALS = _RefusalWatch()
for _name in ("kafka.net.manager", "kafka.net.connection"):
    if _REFUSALS not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_REFUSALS)


def _connection_manager(client: Any) -> Any:
    for path in (("_manager",), ("_client", "_manager"), ("_sender", "_client", "_manager")):
        obj = client
        for name in path:
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def sticky_auth_failure(client: Any, since: float = 0.0) -> Exception | None:
    """The authentication failure that keeps a kafka-python client from working, if any.

    kafka-python 3 raises a refused SASL handshake neither from ``poll`` (a consumer polls
    nothing for ever) nor from ``send`` (a timeout): it logs it and retries. This finds it:
    the failure its connection manager records for a broker, or — while the client has not
    bootstrapped — a refusal kafka-python logged at or after ``since`` (``time.monotonic()``;
    one process has one set of credentials). Pinned by tests/unit/kit/test_kafka_auth.py.
    """
    manager = _connection_manager(client)
    failures = getattr(manager, "_auth_failures", None)
    if isinstance(failures, dict):
        for exc in list(failures.values()):
            if isinstance(exc, Exception):
                return exc
    last = _REFUSALS.last
    if last is not None and last[0] >= since and not getattr(manager, "bootstrapped", False):
        return last[1]
    return None


def describe_auth_error(
    exc: BaseException, settings_user: str, *, group: str = "", writing: bool = False
) -> str:
    """One line an operator can act on: who was refused what, and what to grant."""
    who = f"User:{settings_user}" if settings_user else "the client's principal"
    kind = type(exc).__name__
    if isinstance(exc, SaslAuthenticationFailedError):
        return (
            f"Kafka refused the credentials of {who} ({kind}: {exc}); check the SASL username "
            "and password (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD)"
        )
    if isinstance(exc, TopicAuthorizationFailedError):
        topics = _names(exc)
        op = "WRITE" if writing else "READ"
        return (
            f"{who} is not authorized to {op} topic {topics} ({kind}); "
            f"grant {who} {op} on topic {topics}"
        )
    if isinstance(exc, GroupAuthorizationFailedError):
        name = _names(exc) or group
        return (
            f"{who} is not authorized to use consumer group {name} ({kind}); "
            f"grant {who} READ on group {name}"
        )
    if isinstance(exc, ClusterAuthorizationFailedError):
        return f"{who} is not authorized for a cluster operation ({kind}: {exc})"
    return f"{who} is not authorized ({kind}: {exc})"


def _names(exc: BaseException) -> str:
    """The topic or group names a kafka-python authorization error carries, comma-joined."""
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, (set, frozenset, list, tuple)):
        return ", ".join(sorted(str(a) for a in arg))
    return str(arg)
