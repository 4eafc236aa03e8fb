"""Batch handlers (ADR 0012) on the real broker, on SQLite and PostgreSQL: a handler declared
with a batch function gets a batch's records in one call, in the batch's transaction; when it
fails, the records take the per-record path, so a poison record is dead-lettered alone and the
others are applied exactly once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from sqlalchemy import Column, Integer, MetaData, String, Table, event, func, insert, select
from sqlalchemy.orm import Session

from harness import Kafka, wait_for
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_kit.consumer import ConsumerRunner, Handler, inbox_table
from motcua_kit.db import make_engine, session_factory
from motcua_kit.dlq import read_dead_letters
from motcua_kit.envelope import Event, encode
from motcua_kit.kafka import API_VERSION, ensure_topics, make_consumer, make_producer
from motcua_kit.settings import ServiceSettings

pytestmark = pytest.mark.integration
SUBMITTED = "vn.motcua.dossier.submitted.v1"
RECEIVED = "vn.motcua.dossier.received.v1"


def _event(code: str, event_type: str = SUBMITTED) -> Event:
    return Event.new(
        source="/motcua/dossier",
        type=event_type,
        subject=code,
        message=events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code=code)),
    )


def _produce(bootstrap: str, topic: str, events: list[Event]) -> None:
    producer = KafkaProducer(bootstrap_servers=[bootstrap], api_version=API_VERSION)
    for ev in events:
        record = encode(ev)
        producer.send(
            topic, key=record.key, value=record.value, headers=record.headers, partition=0
        )
    producer.flush()
    producer.close()


class Bench:
    """A runner with a batch handler on a fresh topic and database, and its effects table."""

    def __init__(
        self, kafka: Kafka, url: str, poison: set[str], batch: int, types: Sequence[str]
    ) -> None:
        self.topic = f"kit.batchfn.{uuid.uuid4().hex[:8]}"
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
        self.fn_calls: Counter[str] = Counter()
        self.batch_calls: list[list[str]] = []
        self.statements: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._statement)

        def one(ev: Event, message: Any, session: Session) -> None:
            self.fn_calls[ev.id] += 1
            session.execute(insert(self.effects).values(event_id=ev.id))
            if ev.id in poison:
                raise RuntimeError("poison: this handler always fails")

        def many(pairs: Sequence[tuple[Event, Any]], session: Session) -> None:
            self.batch_calls.append([ev.id for ev, _ in pairs])
            assert all(isinstance(m, events_pb2.DossierSubmitted) for _, m in pairs)
            # One multi-row statement for the whole batch: what a batch function is for.
            session.execute(insert(self.effects).values([{"event_id": ev.id} for ev, _ in pairs]))
            if any(ev.id in poison for ev, _ in pairs):
                raise RuntimeError("a record of this batch is poison")

        self.runner = ConsumerRunner(
            "kit-test",
            f"kit-batchfn-{uuid.uuid4().hex[:6]}",
            [Handler(self.topic, t, one, events_pb2.DossierSubmitted, batch=many) for t in types],
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

    def statements_on(self, table: str, verb: str) -> list[str]:
        return [
            s for s in self.statements if s.startswith(verb) and table in s and "count(*)" not in s
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

    def make(
        poison: set[str] = frozenset(),  # type: ignore[assignment]
        batch: int = 60,
        types: Sequence[str] = (SUBMITTED,),
    ) -> Bench:
        b = Bench(kafka, database("batchfn"), set(poison), batch, types)
        made.append(b)
        return b

    yield make
    for b in made:
        b.runner.stop(10)
        b.engine.dispose()


def test_a_batch_handler_gets_the_whole_batch_in_one_call(
    kafka: Kafka, bench: Callable[..., Bench]
) -> None:
    events = [_event(f"BFN-{i:03d}") for i in range(60)]
    b = bench(batch=len(events))
    _produce(kafka.bootstrap, b.topic, events)
    b.runner.start()
    wait_for(lambda: b.inbox_count() == len(events), 60, 0.1, "the batch recorded")
    wait_for(lambda: b.committed() == len(events), 30, 0.1, "the batch's offsets committed")
    assert b.batch_calls == [[ev.id for ev in events]]
    assert not b.fn_calls
    assert b.effects_by_event() == Counter({ev.id: 1 for ev in events})
    # Constant statements for the batch: one inbox query, one effects insert, one inbox insert.
    assert len(b.statements_on("inbox", "select")) == 1
    assert len(b.statements_on("effects", "insert")) == 1
    assert len(b.statements_on("inbox", "insert")) == 1


def test_event_types_that_share_a_batch_function_go_in_one_call_in_order(
    kafka: Kafka, bench: Callable[..., Bench]
) -> None:
    """Dossier's two payment handlers share one batch function: a poll of both types
    alternating is one call, not one per record."""
    events = [_event(f"BFNT-{i:03d}", (SUBMITTED, RECEIVED)[i % 2]) for i in range(40)]
    b = bench(batch=len(events), types=(SUBMITTED, RECEIVED))
    _produce(kafka.bootstrap, b.topic, events)
    b.runner.start()
    wait_for(lambda: b.inbox_count() == len(events), 60, 0.1, "the batch recorded")
    assert b.batch_calls == [[ev.id for ev in events]]
    assert not b.fn_calls
    assert len(b.statements_on("effects", "insert")) == 1


def test_a_poison_record_in_the_middle_of_a_batch_is_dead_lettered_alone(
    kafka: Kafka, bench: Callable[..., Bench]
) -> None:
    events = [_event(f"BFNP-{i:03d}") for i in range(60)]
    poison = events[23]
    b = bench(poison={poison.id}, batch=len(events))
    _produce(kafka.bootstrap, b.topic, events)
    b.runner.start()
    letters = wait_for(
        lambda: read_dead_letters(kafka.bootstrap, b.topic), 60, 0.2, "the poison dead-lettered"
    )
    wait_for(lambda: b.committed() == len(events), 30, 0.1, "every offset committed")
    assert [d.header("ce_id") for d in letters] == [poison.id]
    assert letters[0].header("motcua_error_type") == "RuntimeError"
    ids = [ev.id for ev in events]
    good = [i for i in ids if i != poison.id]
    # The failed batch call rolled back with its savepoint: every other record once.
    assert b.effects_by_event() == Counter({i: 1 for i in good})
    assert b.inbox_count() == len(good)
    # The batch call, then one by one up to the poison (which is retried alone), then the
    # records after it as a batch again.
    assert b.batch_calls == [ids, ids[24:]]
    assert {i: b.fn_calls[i] for i in ids[:23]} == {i: 1 for i in ids[:23]}
    assert b.fn_calls[poison.id] == 2  # max_attempts
    assert not any(b.fn_calls[i] for i in ids[24:])
