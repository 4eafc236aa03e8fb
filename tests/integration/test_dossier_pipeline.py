"""The walking skeleton end to end: submit over gRPC → outbox → real Kafka → audit consumer.

Runs against the real broker and, for the database, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, func, select, text

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import Kafka, ServiceProcess, header, read_topic, wait_for
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_audit.adapters.db import entries
from motcua_kit.envelope import Event, encode

pytestmark = pytest.mark.integration

TOPIC = "motcua.dossier.v1"


def _audit_count(url: str, event_id: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).where(entries.c.event_id == event_id)) or 0)
    finally:
        engine.dispose()


def _events_for(kafka: Kafka, code: str) -> list:
    """This test's events for one dossier code.

    Every test starts with a fresh database, so codes repeat across tests on the shared broker;
    records produced before the test started belong to other tests.
    """
    return [
        r
        for r in read_topic(kafka.bootstrap, TOPIC)
        if r.key == code.encode() and r.timestamp >= _TEST_STARTED_MS[0]
    ]


_TEST_STARTED_MS = [0]


@pytest.fixture(autouse=True)
def _mark_test_start() -> None:
    _TEST_STARTED_MS[0] = int(time.time() * 1000)


def test_submit_publishes_cloudevent_and_audit_records_it(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    audit_url = database("audit")
    dossier = service_factory("dossier", database("dossier")).start()
    audit = service_factory("audit", audit_url).start()
    client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))

    submitted = client.submit(submit_request("HT-004", f"k-{uuid.uuid4()}")).dossier

    assert client.get(submitted.code) == submitted
    records = wait_for(lambda: _events_for(kafka, submitted.code), 30, 0.2, "the event")
    assert len(records) == 1
    record = records[0]
    assert header(record, "ce_type") == b"vn.motcua.dossier.submitted.v1"
    assert header(record, "ce_source") == b"/motcua/dossier"
    assert header(record, "ce_subject") == submitted.code.encode()
    assert header(record, "ce_specversion") == b"1.0"
    assert header(record, "content-type") == b"application/protobuf"
    assert header(record, "ce_time") is not None
    assert header(record, "traceparent") is not None
    event_id = header(record, "ce_id")
    assert event_id
    payload = events_pb2.DossierSubmitted.FromString(record.value)
    assert payload.dossier == submitted
    assert payload.dossier.applicant.citizen_id == CITIZEN_ID
    assert payload.dossier.fee_vnd == 8000

    wait_for(lambda: _audit_count(audit_url, event_id.decode()) == 1, 30, 0.2, "audit entry")
    assert dossier.terminate() == 0
    assert audit.terminate() == 0


def test_redelivered_event_is_recorded_once(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    from kafka import KafkaProducer

    audit_url = database("audit")
    dossier = service_factory("dossier", database("dossier")).start()
    client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
    code = client.submit(submit_request("HT-001", f"k-{uuid.uuid4()}")).dossier.code
    original = wait_for(lambda: _events_for(kafka, code), 30, 0.2, "the event")[0]

    # Force a redelivery: the very same record (same ce_id) lands on the topic again.
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    producer.send(TOPIC, key=original.key, value=original.value, headers=original.headers).get(30)
    producer.close()
    assert len(_events_for(kafka, code)) == 2

    # A marker on the same key, so the same partition, after both copies: once the audit has
    # recorded it, it has read both copies before it.
    marker = Event.new(
        source="/test",
        type="vn.motcua.dossier.submitted.v1",
        subject=code,
        message=events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code=code)),
    )
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    record = encode(marker)
    producer.send(TOPIC, key=original.key, value=record.value, headers=record.headers).get(30)
    producer.close()
    audit = service_factory("audit", audit_url).start()
    wait_for(lambda: _audit_count(audit_url, marker.id) == 1, 30, 0.2, "marker")
    assert _audit_count(audit_url, header(original, "ce_id").decode()) == 1
    audit.terminate()


def test_poison_record_goes_to_dlq_and_consumer_goes_on(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    from kafka import KafkaProducer

    audit_url = database("audit")
    audit = service_factory("audit", audit_url).start()
    poison_key = f"POISON-{uuid.uuid4().hex[:8]}".encode()
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    # CloudEvents headers fine, payload undecodable as protobuf.
    producer.send(
        TOPIC,
        key=poison_key,
        value=b"\xff\xff\xff not protobuf",
        headers=[
            ("ce_id", uuid.uuid4().hex.encode()),
            ("ce_source", b"/somewhere"),
            ("ce_type", b"vn.motcua.dossier.submitted.v1"),
            ("ce_subject", poison_key),
            ("ce_time", b"2026-11-29T10:00:00Z"),
            ("ce_specversion", b"1.0"),
            ("content-type", b"application/protobuf"),
        ],
    ).get(30)
    # And a record that is not a CloudEvent at all.
    producer.send(TOPIC, key=poison_key, value=b"garbage", headers=[]).get(30)
    producer.close()

    dossier = service_factory("dossier", database("dossier")).start()
    client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
    code = client.submit(submit_request("HT-001", f"k-{uuid.uuid4()}")).dossier.code
    good = wait_for(lambda: _events_for(kafka, code), 30, 0.2, "good event")[0]
    wait_for(lambda: _audit_count(audit_url, header(good, "ce_id").decode()) == 1, 30, 0.2, "good")

    wait_for(lambda: len(_dlq(kafka, poison_key)) == 2, 30, 0.3, "both dead letters")
    dlq = _dlq(kafka, poison_key)
    errors = sorted(header(r, "motcua_error_type").decode() for r in dlq)
    assert errors == ["EnvelopeError", "EnvelopeError"]
    assert all(header(r, "motcua_original_topic") == TOPIC.encode() for r in dlq)
    assert any(b"payload is not a valid" in header(r, "motcua_error") for r in dlq)
    assert {r.value for r in dlq} == {b"\xff\xff\xff not protobuf", b"garbage"}
    engine = create_engine(audit_url)
    with engine.connect() as conn:
        assert (
            conn.scalar(select(func.count()).where(entries.c.dossier_code == poison_key.decode()))
            == 0
        )
    engine.dispose()
    audit.terminate()


def _dlq(kafka: Kafka, key: bytes) -> list:
    return [r for r in read_topic(kafka.bootstrap, TOPIC + ".dlq") if r.key == key]


def test_kill9_between_commit_and_publish_loses_nothing(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    url = database("dossier")
    # The relay is switched off, so the process dies with the event committed but unpublished.
    dossier = service_factory("dossier", url).start(OUTBOX_RELAY_ENABLED="false")
    client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
    code = client.submit(submit_request("HT-001", f"k-{uuid.uuid4()}")).dossier.code
    engine = create_engine(url)
    with engine.connect() as conn:
        pending = conn.execute(
            text("SELECT event_id FROM outbox WHERE event_key = :c AND published_at IS NULL"),
            {"c": code},
        ).all()
    assert len(pending) == 1
    dossier.kill9()
    assert _events_for(kafka, code) == []

    dossier.start()
    records = wait_for(lambda: _events_for(kafka, code), 30, 0.2, "event after restart")
    assert [header(r, "ce_id").decode() for r in records] == [pending[0].event_id]
    with engine.connect() as conn:
        wait_for(
            lambda: (
                conn.execute(
                    text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                ).scalar()
                == 0
            ),
            10,
            0.1,
            "outbox drained",
        )
    engine.dispose()
    assert dossier.terminate() == 0
    assert len(_events_for(kafka, code)) == 1


def test_broker_down_submit_succeeds_and_event_arrives_once_after_restart(
    kafka: Kafka,
    database: Callable[[str], str],
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
) -> None:
    audit_url = database("audit")
    dossier = service_factory("dossier", database("dossier")).start()
    audit = service_factory("audit", audit_url).start()
    client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
    kafka.stop()
    try:
        response = client.submit(submit_request("HT-004", f"k-{uuid.uuid4()}"))
        assert response.dossier.status == dossier_pb2.DOSSIER_STATUS_NEW
    finally:
        kafka.start()
    code = response.dossier.code
    records = wait_for(lambda: _events_for(kafka, code), 60, 0.3, "event after broker restart")
    event_id = header(records[0], "ce_id").decode()
    wait_for(lambda: _audit_count(audit_url, event_id) == 1, 60, 0.3, "audit after restart")
    assert len(_events_for(kafka, code)) == 1
    assert _audit_count(audit_url, event_id) == 1
    dossier.terminate()
    audit.terminate()
