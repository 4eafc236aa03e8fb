"""Batched consumption (ADR 0012): one transaction per partition batch, one inbox query and
one inbox insert per batch, a savepoint per record so a poison record is dead-lettered alone,
and exactly-once across a SIGKILL between the handlers and the commit."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from harness import Kafka, Postgres, ServiceProcess, wait_for
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_audit.adapters.db import entries
from motcua_kit.consumer import ConsumerRunner, Handler, inbox_table
from motcua_kit.db import make_engine, session_factory
from motcua_kit.dlq import read_dead_letters
from motcua_kit.envelope import Event, encode
from motcua_kit.kafka import API_VERSION, ensure_topics, make_consumer, make_producer
from motcua_kit.settings import ServiceSettings

pytestmark = pytest.mark.integration
SUBMITTED = "vn.motcua.dossier.submitted.v1"


def _event(code: str) -> Event:
    return Event.new(
        source="/motcua/dossier",
        type=SUBMITTED,
        subject=code,
        message=events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code=code)),
    )


def _produce(bootstrap: str, topic: str, events: list[Event], partition: int | None) -> None:
    producer = KafkaProducer(bootstrap_servers=[bootstrap], api_version=API_VERSION)
    for ev in events:
        record = encode(ev)
        producer.send(
            topic, key=record.key, value=record.value, headers=record.headers, partition=partition
        )
    producer.flush()
    producer.close()


class Bench:
    """A runner on a fresh topic and database, its effects table, and its SQL statements."""

    def __init__(self, kafka: Kafka, url: str, fail: set[str], batch: int) -> None:
        self.topic = f"kit.batch.{uuid.uuid4().hex[:8]}"
        self.settings = ServiceSettings(kafka_bootstrap=kafka.bootstrap, topic_partitions=1)
        ensure_topics(self.settings, [self.topic, self.topic + ".dlq"])
        md = MetaData()
        self.inbox = inbox_table(md)
        self.effects = Table(
            "effects",
            md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("event_id", String(64), nullable=False),  # no unique: a double would show
        )
        self.engine = make_engine(url)
        md.create_all(self.engine)
        self.sessions = session_factory(self.engine)
        self.calls: Counter[str] = Counter()
        self.statements: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._statement)

        def handle(ev: Event, message: Any, session: Session) -> None:
            self.calls[ev.id] += 1
            session.execute(insert(self.effects).values(event_id=ev.id))
            if ev.id in fail:
                raise RuntimeError("poison: this handler always fails")

        self.runner = ConsumerRunner(
            "kit-test",
            f"kit-batch-{uuid.uuid4().hex[:6]}",
            [Handler(self.topic, SUBMITTED, handle, events_pb2.DossierSubmitted)],
            self.sessions,
            self.inbox,
            lambda group: make_consumer(self.settings, group),
            lambda: make_producer(self.settings),
            max_attempts=2,
            retry_backoff=0.01,
            batch_size=batch,
            batch_wait_ms=5_000,  # wait until the whole batch is in hand: one transaction
        )

    def _statement(self, _conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        self.statements.append(" ".join(sql.split()).lower())

    def inbox_statements(self, verb: str) -> list[str]:
        """The runner's statements on the inbox (not the test's own counts)."""
        return [
            s
            for s in self.statements
            if s.startswith(verb) and "inbox" in s and "count(*)" not in s
        ]

    def effects_by_event(self) -> Counter[str]:
        with self.sessions() as session:
            return Counter(session.scalars(select(self.effects.c.event_id)))

    def inbox_count(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(self.inbox)) or 0)

    def committed(self) -> int | None:
        consumer = KafkaConsumer(
            bootstrap_servers=[self.settings.kafka_bootstrap],
            api_version=API_VERSION,
            group_id=self.runner.group_id,
            enable_auto_commit=False,
        )
        try:
            return consumer.committed(TopicPartition(self.topic, 0))
        finally:
            consumer.close(autocommit=False)


@pytest.fixture
def bench(kafka: Kafka, database: Callable[[str], str]) -> Iterator[Callable[..., Bench]]:
    made: list[Bench] = []

    def make(fail: set[str] = frozenset(), batch: int = 40) -> Bench:  # type: ignore[assignment]
        b = Bench(kafka, database("batch"), set(fail), batch)
        made.append(b)
        return b

    yield make
    for b in made:
        b.runner.stop(10)
        b.engine.dispose()


def test_a_batch_checks_the_inbox_in_one_query_and_records_it_in_one_insert(
    kafka: Kafka, bench: Callable[..., Bench]
) -> None:
    events = [_event(f"BATCH-{i:03d}") for i in range(40)]
    b = bench(batch=len(events))
    _produce(kafka.bootstrap, b.topic, events, partition=0)
    b.runner.start()
    wait_for(lambda: b.inbox_count() == len(events), 60, 0.1, "the batch recorded")
    wait_for(lambda: b.committed() == len(events), 30, 0.1, "the batch's offsets committed")
    assert len(b.inbox_statements("select")) == 1, b.inbox_statements("select")
    assert len(b.inbox_statements("insert")) == 1, b.inbox_statements("insert")
    assert b.effects_by_event() == Counter({ev.id: 1 for ev in events})


def test_a_poison_record_mid_batch_is_dead_lettered_alone(
    kafka: Kafka, bench: Callable[..., Bench]
) -> None:
    events = [_event(f"POISON-{i:03d}") for i in range(40)]
    poison = events[17]
    b = bench(fail={poison.id}, batch=len(events))
    _produce(kafka.bootstrap, b.topic, events, partition=0)
    b.runner.start()
    letters = wait_for(
        lambda: read_dead_letters(kafka.bootstrap, b.topic), 60, 0.2, "the poison dead-lettered"
    )
    wait_for(lambda: b.committed() == len(events), 30, 0.1, "every offset committed")
    assert [d.header("ce_id") for d in letters] == [poison.id]
    assert letters[0].header("motcua_error_type") == "RuntimeError"
    good = [ev.id for ev in events if ev is not poison]
    # The poison's own write rolled back with its savepoint; every other record once.
    assert b.effects_by_event() == Counter({i: 1 for i in good})
    assert b.inbox_count() == len(good)
    assert {i: b.calls[i] for i in good} == {i: 1 for i in good}
    assert b.calls[poison.id] == 2  # the batch's attempt, then the retry alone: max_attempts


def _audit_rows(url: str, ids: set[str]) -> tuple[Counter[str], Counter[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            recorded = Counter(
                conn.scalars(select(entries.c.event_id).where(entries.c.event_id.in_(ids)))
            )
            md = MetaData()
            inbox = inbox_table(md)
            seen = Counter(conn.scalars(select(inbox.c.event_id).where(inbox.c.event_id.in_(ids))))
    finally:
        engine.dispose()
    return recorded, seen


def test_a_consumer_killed_after_its_handlers_before_the_commit_loses_and_doubles_nothing(
    own_kafka: Kafka,
    postgres: Postgres,
    tmp_path: Path,
    service_factory: Callable[..., ServiceProcess],
) -> None:
    # A broker of its own: the shared one holds other tests' poison records, which audit
    # would rightly dead-letter.
    kafka = own_kafka
    url = postgres.create_database("audit")
    events = [_event(f"KILL-{uuid.uuid4().hex[:6]}-{i:03d}") for i in range(200)]
    ids = {ev.id for ev in events}
    _produce(kafka.bootstrap, "motcua.dossier.v1", events, partition=None)
    audit = service_factory("audit", url, KAFKA_BOOTSTRAP=kafka.bootstrap)
    audit.start(wait=False, TEST_KILL_BEFORE_COMMIT="1")
    assert audit.proc is not None
    wait_for(lambda: audit.proc.poll() is not None, 90, 0.1, "the test-only SIGKILL")  # type: ignore[union-attr]
    assert audit.proc.returncode == -9, audit.log_tail()
    assert "TEST ONLY: killing the process before the batch's commit" in audit.log_tail(400)

    audit.start()  # the same group, without the kill: it takes the batch again
    wait_for(lambda: sum(_audit_rows(url, ids)[0].values()) >= len(ids), 90, 0.2, "all recorded")
    recorded, seen = _audit_rows(url, ids)
    assert recorded == Counter({i: 1 for i in ids})
    assert seen == Counter({i: 1 for i in ids})
    assert "dead-lettered" not in audit.log_tail(2000)
    assert audit.terminate() == 0
