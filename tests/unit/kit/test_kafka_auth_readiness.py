"""Kafka authentication/authorization failures make a service not ready (ADR 0084)."""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer
from kafka.errors import (
    GroupAuthorizationFailedError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)

from motcua_kit.kafka import describe_auth_error, is_auth_error, sticky_auth_failure
from motcua_kit.readiness import Readiness


def test_the_messages_name_the_principal_the_resource_and_the_grant() -> None:
    topic = describe_auth_error(TopicAuthorizationFailedError({"motcua.notify.v1"}), "audit")
    assert "User:audit is not authorized to READ topic motcua.notify.v1" in topic
    assert "grant User:audit READ on topic motcua.notify.v1" in topic
    write = describe_auth_error(TopicAuthorizationFailedError("t.v1"), "x", writing=True)
    assert "not authorized to WRITE topic t.v1" in write
    group = describe_auth_error(GroupAuthorizationFailedError("motcua-audit"), "audit")
    assert "not authorized to use consumer group motcua-audit" in group
    assert "grant User:audit READ on group motcua-audit" in group
    refused = describe_auth_error(SaslAuthenticationFailedError("bad"), "audit")
    assert refused.startswith("Kafka refused the credentials of User:audit")
    assert all(
        is_auth_error(e)
        for e in (
            TopicAuthorizationFailedError(),
            GroupAuthorizationFailedError(),
            SaslAuthenticationFailedError(),
        )
    )
    assert not is_auth_error(TimeoutError())


def test_readiness_blocks_per_service_and_tells_its_watchers() -> None:
    r = Readiness()
    seen: list[dict[str, str]] = []
    unwatch = r.watch("audit", seen.append)
    r.block("audit", "consumer g", "no READ")
    r.block("audit", "consumer g", "no READ")  # unchanged: no news
    r.block("notify", "outbox relay", "other service")
    r.clear("audit", "consumer g")
    unwatch()
    r.block("audit", "consumer g", "again")
    assert seen == [{}, {"consumer g": "no READ"}, {}]
    assert r.reasons("audit") == {"consumer g": "again"}
    assert r.reasons() == {"audit: consumer g": "again", "notify: outbox relay": "other service"}


def test_a_logged_sasl_refusal_is_found_for_a_client_that_never_bootstrapped() -> None:
    """Pins the kafka-python internals sticky_auth_failure reads."""
    consumer = KafkaConsumer(bootstrap_servers=["127.0.0.1:9"], api_version=(4, 0))
    try:
        manager = consumer._manager  # type: ignore[attr-defined]
        assert isinstance(manager._auth_failures, dict)
        assert manager.bootstrapped is False
        since = time.monotonic()
        assert sticky_auth_failure(consumer, since) is None
        exc = SaslAuthenticationFailedError("invalid credentials")
        logging.getLogger("kafka.net.manager").warning(
            "Bootstrap connection to %s failed: %s (backoff %.2f secs)", "bootstrap-0", exc, 0.1
        )
        assert sticky_auth_failure(consumer, since) is exc
        assert sticky_auth_failure(consumer, time.monotonic()) is None  # older than the client
    finally:
        consumer.close()
