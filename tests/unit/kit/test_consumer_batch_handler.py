"""The consumer runner's batch handlers (ADR 0012), on SQLite, without a broker: records are
handed to ``ConsumerRunner.process_batch`` as Kafka would, dead letters go to a fake producer.

The same behaviour against a real broker and PostgreSQL is in
tests/integration/test_kit_batch_handler.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.orm import Session

from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_kit.consumer import ANY_TYPE, ConsumerRunner, Handler, PermanentError, inbox_table
from motcua_kit.db import make_engine, session_factory
from motcua_kit.envelope import Event, encode

TOPIC = "kit.unit.batch"
SUBMITTED = "vn.motcua.dossier.submitted.v1"
RECEIVED = "vn.motcua.dossier.received.v1"


class FakeFuture:
    def get(self, timeout: float | None = None) -> None:
        return None


class FakeProducer:
    """Takes dead letters (``send(...).get()``) and keeps them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, bytes]]] = []

    def send(self, topic: str, key: Any = None, value: Any = None, headers: Any = None) -> Any:
        self.sent.append((topic, dict(headers or [])))
        return FakeFuture()

    def close(self, timeout: float | None = None) -> None:
        return None


def _event(i: int, event_type: str = SUBMITTED) -> Event:
    code = f"UNIT-{i:03d}"
    if event_type == SUBMITTED:
        message: Any = events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code=code))
    else:
        message = events_pb2.DossierStatusChanged(dossier=dossier_pb2.Dossier(code=code))
    return Event.new(source="/motcua/dossier", type=event_type, subject=code, message=message)


def _records(events: Sequence[Event], first_offset: int = 0) -> list[ConsumerRecord]:
    out = []
    for n, ev in enumerate(events):
        r = encode(ev)
        out.append(
            ConsumerRecord(
                TOPIC, 0, -1, first_offset + n, 0, 0, r.key, r.value, r.headers, None, 0, 0, 0
            )
        )
    return out


def _garbage(offset: int) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, 0, -1, offset, 0, 0, b"k", b"v", [], None, 0, 0, 0)


class World:
    """A runner with per-event and batch handlers that write one effect row per event."""

    def __init__(self, tmp_path: Path) -> None:
        md = MetaData()
        self.inbox = inbox_table(md)
        self.effects = Table(
            "effects",
            md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("event_id", String(64), nullable=False),  # no unique: a double would show
            Column("via", String(8), nullable=False),
        )
        self.engine = make_engine(f"sqlite:///{tmp_path}/kit.db")
        md.create_all(self.engine)
        self.sessions = session_factory(self.engine)
        self.producer = FakeProducer()
        self.poison: set[str] = set()
        self.permanent: set[str] = set()
        self.fn_calls: Counter[str] = Counter()
        self.batch_calls: list[list[str]] = []
        self.on_batch: Callable[[], None] | None = None

    def fn(self, ev: Event, message: Any, session: Session) -> None:
        self.fn_calls[ev.id] += 1
        session.execute(insert(self.effects).values(event_id=ev.id, via="one"))
        if ev.id in self.permanent:
            raise PermanentError("refused")
        if ev.id in self.poison:
            raise RuntimeError("poison: this handler always fails")

    def batch(self, pairs: Sequence[tuple[Event, Any]], session: Session) -> None:
        self.batch_calls.append([ev.id for ev, _ in pairs])
        assert all(m is not None for _, m in pairs), "messages parsed as declared"
        session.execute(
            insert(self.effects), [{"event_id": ev.id, "via": "batch"} for ev, _ in pairs]
        )
        if self.on_batch is not None:
            self.on_batch()
        if any(ev.id in self.poison | self.permanent for ev, _ in pairs):
            raise RuntimeError("one record of the batch is poison")

    def runner(self, handlers: Sequence[Handler] | None = None) -> ConsumerRunner:
        handlers = handlers or [
            Handler(TOPIC, ANY_TYPE, self.fn, events_pb2.DossierSubmitted, batch=self.batch)
        ]
        return ConsumerRunner(
            "kit-test",
            "kit-unit",
            handlers,
            self.sessions,
            self.inbox,
            lambda group: pytest.fail("no broker in these tests"),
            lambda: self.producer,  # type: ignore[arg-type, return-value]
            max_attempts=2,
            retry_backoff=0.0,
        )

    def effects_by_event(self) -> Counter[str]:
        with self.sessions() as session:
            return Counter(session.scalars(select(self.effects.c.event_id)))

    def effect_order(self) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(select(self.effects.c.event_id).order_by(self.effects.c.id))
            )

    def inbox_ids(self) -> set[str]:
        with self.sessions() as session:
            return set(session.scalars(select(self.inbox.c.event_id)))

    def inbox_count(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(self.inbox)) or 0)

    def dead_letter_ids(self) -> list[str]:
        return [h["ce_id"].decode() for _t, h in self.producer.sent]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.engine.dispose()


def test_a_batch_handler_takes_the_whole_batch_in_one_call(world: World) -> None:
    events = [_event(i) for i in range(50)]
    outcomes = world.runner().process_batch(_records(events))
    assert outcomes == ["processed"] * 50
    assert world.batch_calls == [[ev.id for ev in events]]
    assert not world.fn_calls
    assert world.effect_order() == [ev.id for ev in events]
    assert world.inbox_count() == 50


def test_a_poison_record_mid_batch_is_dead_lettered_alone_and_the_others_applied_once(
    world: World,
) -> None:
    events = [_event(i) for i in range(40)]
    poison = events[17]
    world.poison = {poison.id}
    outcomes = world.runner().process_batch(_records(events))
    assert outcomes == ["processed"] * 17 + ["dead_lettered"] + ["processed"] * 22
    assert world.dead_letter_ids() == [poison.id]
    good = [ev.id for ev in events if ev is not poison]
    assert world.effects_by_event() == Counter({i: 1 for i in good})
    assert world.inbox_ids() == set(good)
    # The batch call failed and rolled back; the records before the poison went one by one
    # in the same transaction, the poison was retried alone, the rest went as a batch again.
    ids = [ev.id for ev in events]
    assert world.batch_calls == [ids, ids[18:]]
    assert {i: world.fn_calls[i] for i in ids[:17]} == {i: 1 for i in ids[:17]}
    assert world.fn_calls[poison.id] == 2  # the fallback's attempt, then alone: max_attempts
    assert not any(world.fn_calls[i] for i in ids[18:])


def test_a_permanent_error_in_a_batch_dead_letters_only_its_record(world: World) -> None:
    events = [_event(i) for i in range(10)]
    world.permanent = {events[4].id}
    outcomes = world.runner().process_batch(_records(events))
    assert outcomes == ["processed"] * 4 + ["dead_lettered"] + ["processed"] * 5
    assert world.dead_letter_ids() == [events[4].id]
    assert world.effects_by_event() == Counter({ev.id: 1 for ev in events if ev is not events[4]})
    assert world.fn_calls[events[4].id] == 1  # permanent: not retried


def test_a_payload_that_does_not_parse_falls_back_and_is_dead_lettered_alone(
    world: World,
) -> None:
    events = [_event(i) for i in range(6)]
    bad = replace(_event(99), data=b"\xff\xff not protobuf")
    batch = [*events[:3], bad, *events[3:]]
    outcomes = world.runner().process_batch(_records(batch))
    assert outcomes == ["processed"] * 3 + ["dead_lettered"] + ["processed"] * 3
    assert world.dead_letter_ids() == [bad.id]
    assert world.effects_by_event() == Counter({ev.id: 1 for ev in events})


def test_duplicates_and_records_already_in_the_inbox_never_reach_the_batch_function(
    world: World,
) -> None:
    events = [_event(i) for i in range(8)]
    runner = world.runner()
    assert runner.process_batch(_records(events[:3])) == ["processed"] * 3
    world.batch_calls.clear()
    # A redelivery of the first three, with the rest, and one event twice in the batch.
    again = [*events, events[5]]
    outcomes = runner.process_batch(_records(again, first_offset=3))
    assert outcomes == ["duplicate"] * 3 + ["processed"] * 5 + ["duplicate"]
    assert world.batch_calls == [[ev.id for ev in events[3:]]]
    assert world.effects_by_event() == Counter({ev.id: 1 for ev in events})


def test_undecodable_and_unhandled_records_do_not_split_the_batch(world: World) -> None:
    events = [_event(i) for i in range(6)]
    unhandled = replace(_event(98), type="vn.motcua.other.v1")
    handler = Handler(TOPIC, SUBMITTED, world.fn, events_pb2.DossierSubmitted, batch=world.batch)
    records = _records([*events[:3], unhandled, *events[3:]])
    records.insert(2, _garbage(99))
    outcomes = world.runner([handler]).process_batch(records)
    assert (
        outcomes
        == ["processed"] * 2 + ["dead_lettered", "processed", "ignored"] + ["processed"] * 3
    )
    assert world.batch_calls == [[ev.id for ev in events]]
    [(topic, headers)] = world.producer.sent
    assert (topic, headers["motcua_original_offset"]) == (TOPIC + ".dlq", b"99")


def test_records_of_another_handler_between_keep_the_partition_order(world: World) -> None:
    """A batch function takes its records up to one another handler takes, so each handler
    sees the effects of every record before it, as record by record."""
    order: list[str] = []

    def other(ev: Event, message: Any, session: Session) -> None:
        order.append(ev.id)
        session.execute(insert(world.effects).values(event_id=ev.id, via="other"))

    handlers = [
        Handler(TOPIC, SUBMITTED, world.fn, events_pb2.DossierSubmitted, batch=world.batch),
        Handler(TOPIC, RECEIVED, other, events_pb2.DossierStatusChanged),
    ]
    events = [
        _event(0),
        _event(1),
        _event(2, RECEIVED),
        _event(3),
        _event(4),
        _event(5),
        _event(6, RECEIVED),
    ]
    outcomes = world.runner(handlers).process_batch(_records(events))
    assert outcomes == ["processed"] * 7
    ids = [ev.id for ev in events]
    assert world.batch_calls == [ids[0:2], ids[3:6]]
    assert order == [ids[2], ids[6]]
    assert world.effect_order() == ids


def test_per_event_handlers_without_a_batch_function_are_unchanged(world: World) -> None:
    handler = Handler(TOPIC, ANY_TYPE, world.fn, events_pb2.DossierSubmitted)
    events = [_event(i) for i in range(5)]
    assert world.runner([handler]).process_batch(_records(events)) == ["processed"] * 5
    assert not world.batch_calls
    assert world.fn_calls == Counter({ev.id: 1 for ev in events})


def test_a_stop_during_the_batch_call_still_records_every_record_it_applied(
    world: World,
) -> None:
    """Effects a batch function applied are in the transaction: the stop is honoured after
    them, never between them, or a redelivery would apply them twice."""
    events = [_event(i) for i in range(12)]
    runner = world.runner()
    world.on_batch = runner._stop.set  # the stop arrives while the batch function runs
    outcomes = runner.process_batch(_records(events))
    assert outcomes == ["processed"] * 12
    assert world.inbox_count() == 12
    assert world.effects_by_event() == Counter({ev.id: 1 for ev in events})
