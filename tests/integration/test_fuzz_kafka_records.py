"""Fuzzing what arrives on Kafka: random headers and payloads never stop a consumer.

Generated records go to the real topic; the audit service must keep consuming — each record
is either recorded (a well-formed event of a type it does not parse) or dead-lettered with
its error — and an ordinary event sent after them is still recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.request import urlopen

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer
from sqlalchemy import create_engine, func, select

from harness import Kafka, ServiceProcess, read_topic, wait_for
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_kit.envelope import Event, encode

pytestmark = pytest.mark.integration
TOPIC = "motcua.dossier.v1"

header_names = st.sampled_from(
    [
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_subject",
        "ce_time",
        "ce_specversion",
        "content-type",
        "traceparent",
        "x-other",
    ]
)
header_values = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"1.0",
            b"application/protobuf",
            b"vn.motcua.dossier.submitted.v1",
            b"2026-11-29T10:00:00Z",
            b"not-a-time",
            b"00-zz-zz-01",
            b"\xff\xfe",
        ]
    ),
)
records = st.tuples(
    st.lists(st.tuples(header_names, header_values), max_size=9),
    st.one_of(st.binary(max_size=200), st.just(b"")),
)


def test_random_records_are_recorded_or_dead_lettered_and_consumption_goes_on(
    own_kafka: Kafka,
    service_factory: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    audit_url = f"sqlite:///{tmp_path}/audit.db"
    kafka = own_kafka  # the garbage stays off the shared broker other tests read from the start
    audit = service_factory(
        "audit", audit_url, CONSUMER_MAX_ATTEMPTS="1", KAFKA_BOOTSTRAP=kafka.bootstrap
    ).start()
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0), linger_ms=5)
    run_key = f"FUZZ-{uuid.uuid4().hex[:8]}"
    sent = 0

    @settings(
        max_examples=600,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(record=records)
    def send(record: tuple[list[tuple[str, bytes]], bytes]) -> None:
        nonlocal sent
        headers, value = record
        producer.send(TOPIC, key=run_key.encode(), value=value, headers=headers)
        sent += 1

    send()
    producer.flush()
    marker = Event.new(
        source="/fuzz",
        type="vn.motcua.dossier.submitted.v1",
        subject=run_key,
        message=events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code=run_key)),
    )
    record = encode(marker)
    producer.send(TOPIC, key=record.key, value=record.value, headers=record.headers).get(30)
    producer.close()

    engine = create_engine(audit_url)
    from motcua_audit.adapters.db import entries

    def recorded(event_id: str | None = None) -> int:
        with engine.connect() as conn:
            q = select(func.count()).select_from(entries)
            q = q.where(entries.c.event_id == event_id) if event_id else q
            return int(conn.scalar(q) or 0)

    wait_for(lambda: recorded(marker.id) == 1, 120, 0.3, "the marker after the fuzz records")
    assert audit.proc is not None and audit.proc.poll() is None, "the consumer died"
    dead = [r for r in read_topic(kafka.bootstrap, TOPIC + ".dlq") if r.key == run_key.encode()]
    assert dead, "undecodable fuzz records must be dead-lettered"
    assert all(any(k == "motcua_error" for k, _ in (r.headers or [])) for r in dead)
    # Nothing lost: every record on the topic got exactly one outcome (processed, duplicate,
    # ignored or dead_lettered) from the consumer, fuzz records included.
    on_topic = len(read_topic(kafka.bootstrap, TOPIC))
    wait_for(lambda: _consumed(audit) == on_topic, 60, 0.3, "every record accounted for")
    engine.dispose()
    audit.terminate()


def _consumed(service: ServiceProcess) -> int:
    body = urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith("motcua_events_consumed_total{") and f'topic="{TOPIC}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
