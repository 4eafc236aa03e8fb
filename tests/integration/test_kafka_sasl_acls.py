"""The services on a secured broker: SASL_SSL, SCRAM-SHA-512 users, ACLs (ADR 0084).

One broker of its own for the module (``KAFKA_SECURITY=sasl_ssl infra/kafka.sh``), its CA
made here, one user per service with the ACLs the topic registry implies
(tests/integration/secured_kafka.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import SaslAuthenticationFailedError, TopicAuthorizationFailedError
from secured_kafka import SERVICES, SecuredKafka, secured_kafka
from sqlalchemy import create_engine, text

import suite as suite_module
from dossier_client import CITIZEN_ID, submit_request
from harness import Kafka, Postgres, ServiceProcess, running, wait_for
from motcua_kit.kafka import sticky_auth_failure
from suite import running_suite, unique_email

pytestmark = pytest.mark.integration

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OBSERVE_SECONDS = 12.0  # how long a refused service is watched: up, not ready, same process


@pytest.fixture(scope="module")
def broker() -> Iterator[SecuredKafka]:
    with secured_kafka() as k:
        for service in SERVICES:
            k.setup_service(service)
        # Two audit principals that each lack one grant audit needs.
        k.setup_service("audit", user="audit-noread", without=("READ motcua.notify.v1",))
        k.setup_service("audit", user="audit-nogroup", without=("READ group",))
        yield k


def _health(proc: ServiceProcess) -> int | None:
    try:
        with grpc.insecure_channel(proc.target) as ch:
            return int(
                health_pb2_grpc.HealthStub(ch)
                .Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                .status
            )
    except grpc.RpcError:
        return None  # not listening yet


def _audit(broker: SecuredKafka, folder: Path, key_file: Path, **kafka: str) -> ServiceProcess:
    env = {
        "DATABASE_URL": f"sqlite:///{folder / f'audit-{uuid.uuid4().hex[:6]}.db'}",
        "JWT_PUBLIC_KEY_FILE": str(key_file),
        "LOG_LEVEL": "INFO",
        **broker.service_env("audit", **kafka),
    }
    return ServiceProcess("audit", {f"MOTCUA_AUDIT_{k}": v for k, v in env.items()}, folder)


def _refused_but_up(proc: ServiceProcess, *said: str) -> None:
    """The log says why, health turns NOT_SERVING, /readyz is 503 with the reason, and the
    process stays up — the same process, not a restarted one — for the observation window."""
    assert proc.proc is not None
    pid = proc.proc.pid

    def explained() -> bool:
        if proc.proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"audit exited with {proc.proc.returncode}:\n{proc.log_tail()}")
        log = proc.log_path.read_text(errors="replace")
        return all(s in log for s in said)

    wait_for(explained, 60, 0.2, f"the log to say {said}")
    wait_for(lambda: _health(proc) == NOT_SERVING, 30, 0.2, "gRPC health NOT_SERVING")
    ready = httpx.get(f"http://127.0.0.1:{proc.metrics_port}/readyz", timeout=5)
    assert ready.status_code == 503
    assert said[0] in ready.text
    until = time.monotonic() + OBSERVE_SECONDS
    while time.monotonic() < until:
        assert proc.proc.poll() is None, f"audit exited:\n{proc.log_tail()}"
        assert _health(proc) == NOT_SERVING, "a refused service must not become ready"
        time.sleep(0.5)  # sampling inside a bounded window, not waiting for something
    assert proc.proc.pid == pid and proc.proc.poll() is None
    assert proc.log_path.read_text(errors="replace").count("service started") == 1


# ---------------------------------------------------------------------------- (a)
def test_a_dossier_reaches_audit_over_sasl_ssl(
    broker: SecuredKafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    token: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All four services over SASL_SSL: submitted → notify tells the citizen (its own
    events) → audit records the dossier's and notify's events."""
    # running_suite positions a fresh group over PLAINTEXT; on a broker of its own every
    # service starts from the beginning in its own (ACL'd) group instead.
    monkeypatch.setattr(suite_module, "fresh_group", lambda *_a, **_k: "unused")
    extra = {s: {**broker.service_env(s), "CONSUMER_GROUP": f"motcua-{s}"} for s in SERVICES}
    with running_suite(
        cast(Kafka, broker), postgres, signing_keys, token, tmp_path, extra_env=extra
    ) as s:
        email = unique_email()
        citizen = s.dossiers("citizen", citizen_id=CITIZEN_ID)
        d = citizen.submit(submit_request("HT-004", f"sasl-{uuid.uuid4()}", email=email)).dossier

        def told() -> bool:
            return any("Tiếp nhận hồ sơ" in str(m["Subject"]) for m in s.smtp.to(email))

        wait_for(told, 90, 0.3, "the citizen's email (notify consumed over SASL_SSL)")

        def audited_topics() -> set[str]:
            engine = create_engine(s.urls["audit"])
            try:
                with engine.connect() as conn:
                    rows = conn.execute(
                        text("SELECT topic FROM audit_entries WHERE dossier_code = :c"),
                        {"c": d.code},
                    ).all()
            finally:
                engine.dispose()
            return {r[0] for r in rows}

        wanted = {"motcua.dossier.v1", "motcua.notify.v1"}
        wait_for(lambda: audited_topics() >= wanted, 90, 0.5, f"audit entries from {wanted}")
        for name, proc in s.services.items():
            assert _health(proc) == health_pb2.HealthCheckResponse.SERVING, name
            assert "not authorized" not in proc.log_path.read_text(errors="replace"), name


# ---------------------------------------------------------------------------- (b)
@pytest.mark.parametrize(
    ("user", "said"),
    [
        (
            "audit-noread",
            (
                "User:audit-noread is not authorized to READ topic motcua.notify.v1",
                "grant User:audit-noread READ on topic motcua.notify.v1",
            ),
        ),
        (
            "audit-nogroup",
            (
                "User:audit-nogroup is not authorized to use consumer group motcua-audit",
                "grant User:audit-nogroup READ on group motcua-audit",
            ),
        ),
    ],
)
def test_a_missing_acl_leaves_the_service_up_but_not_ready(
    broker: SecuredKafka,
    signing_keys: tuple[bytes, Path],
    tmp_path: Path,
    user: str,
    said: tuple[str, ...],
) -> None:
    proc = _audit(broker, tmp_path, signing_keys[1], user=user)
    with running(proc):
        proc.start(wait=False)
        _refused_but_up(proc, *said)
        assert proc.terminate() == 0  # and it still stops gracefully


# ---------------------------------------------------------------------------- (c)
def test_a_wrong_password_is_refused(
    broker: SecuredKafka, signing_keys: tuple[bytes, Path], tmp_path: Path
) -> None:
    # The client: the broker refuses the SCRAM handshake.
    since = time.monotonic()
    consumer = KafkaConsumer(
        **broker.client_options("audit", "not-the-password"), reconnect_backoff_max_ms=500
    )
    try:

        def refusal() -> BaseException | None:
            consumer.poll(timeout_ms=100)
            return sticky_auth_failure(consumer, since)

        failure = wait_for(refusal, 30, 0.1, "the broker to refuse the password")
        assert isinstance(failure, SaslAuthenticationFailedError)
        assert "invalid credentials" in str(failure)
    finally:
        consumer.close()
    # The service: says why, is not ready, stays up.
    proc = _audit(broker, tmp_path, signing_keys[1], password="not-the-password")
    with running(proc):
        proc.start(wait=False)
        _refused_but_up(proc, "Kafka refused the credentials of User:audit")
        assert proc.terminate() == 0


# ---------------------------------------------------------------------------- (d)
def _producer(broker: SecuredKafka, user: str) -> KafkaProducer:
    opts: dict[str, Any] = broker.client_options(user, broker.passwords[user])
    return KafkaProducer(**opts, acks="all", enable_idempotence=True, max_block_ms=15_000)


def test_a_principal_cannot_write_another_services_topic(broker: SecuredKafka) -> None:
    intruder = _producer(broker, "notify")
    try:
        with pytest.raises(TopicAuthorizationFailedError) as refused:
            intruder.send("motcua.dossier.v1", key=b"X-1", value=b"forged").get(timeout=30)
        assert "motcua.dossier.v1" in str(refused.value)
    finally:
        intruder.close(timeout=5)
    # Its own topic, and the topic's owner, are fine (the refusal is the ACL, not the setup).
    for user, topic in (("notify", "motcua.notify.v1"), ("dossier", "motcua.dossier.v1")):
        producer = _producer(broker, user)
        try:
            assert producer.send(topic, key=b"X-1", value=b"ok").get(timeout=30).topic == topic
        finally:
            producer.close(timeout=5)
