"""The subscriber kit through its one-line test double: typed handlers, the services' own
runner (decoding, parsing, inbox, retries, dead letters), registration checked against the
registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import dossier_pb2
from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua.payment.v1 import events_pb2 as payment_events
from motcua.payment.v1 import payment_pb2
from motcua_kit.consumer import ConsumerRunner
from motcua_kit.envelope import Event, encode
from motcua_subscriber import (
    Delivery,
    PermanentError,
    Subscriber,
    SubscriberSettings,
    SubscriptionError,
)
from motcua_subscriber.testing import FakeBroker

RECEIVED = "vn.motcua.dossier.received.v1"
SUBMITTED = "vn.motcua.dossier.submitted.v1"
CODE = "PHOIAN-260302-0007"


def _dossier(code: str = CODE, version: int = 1) -> dossier_pb2.Dossier:
    return dossier_pb2.Dossier(code=code, agency_code="PHOIAN", version=version)


class Recorder:
    """A subscriber writing one row per handled event, in the handler's transaction."""

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.seen = Table(
            "seen",
            self.metadata,
            Column("id", Integer, primary_key=True),
            Column("code", String(64)),
            Column("type", String(200)),
        )
        self.subscriber = Subscriber("recorder", metadata=self.metadata)
        self.calls = 0
        self.fail_times = 0
        self.fail_with: type[Exception] = RuntimeError

        @self.subscriber.handler(dossier_events.DossierStatusChanged)
        def on_change(message: dossier_events.DossierStatusChanged, delivery: Delivery) -> None:
            self._record(message.dossier.code, delivery)

        @self.subscriber.handler(dossier_events.DossierSubmitted)
        def on_submitted(message: dossier_events.DossierSubmitted, delivery: Delivery) -> None:
            self._record(message.dossier.code, delivery)

    def _record(self, code: str, delivery: Delivery) -> None:
        self.calls += 1
        delivery.session.execute(insert(self.seen).values(code=code, type=delivery.event.type))
        if self.fail_times:
            self.fail_times -= 1
            raise self.fail_with("told to fail")

    def rows(self, broker: FakeBroker) -> list[tuple[str, str]]:
        with broker.session() as session:
            return [tuple(r) for r in session.execute(select(self.seen.c.code, self.seen.c.type))]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def broker(recorder: Recorder) -> Iterator[FakeBroker]:
    with FakeBroker(recorder.subscriber) as fake:
        yield fake


def _inbox_count(broker: FakeBroker, recorder: Recorder) -> int:
    with broker.session() as session:
        return int(session.scalar(select(func.count()).select_from(recorder.subscriber.inbox)) or 0)


def test_one_line_publish_runs_the_typed_handler_in_a_transaction(
    recorder: Recorder, broker: FakeBroker
) -> None:
    assert broker.publish(dossier_events.DossierSubmitted(dossier=_dossier())) == "processed"
    assert recorder.rows(broker) == [(CODE, SUBMITTED)]
    assert _inbox_count(broker, recorder) == 1


def test_a_message_class_subscribes_every_type_that_carries_it(recorder: Recorder) -> None:
    types = set(recorder.subscriber.event_types)
    assert {SUBMITTED, RECEIVED, "vn.motcua.dossier.processed.v1"} <= types
    assert "vn.motcua.dossier.overdue.v1" not in types  # DossierDeadline: not subscribed
    assert recorder.subscriber.topics == ("motcua.dossier.v1",)


def test_the_same_event_twice_is_applied_once(recorder: Recorder, broker: FakeBroker) -> None:
    event = Event.new(
        source="/motcua/dossier",
        type=RECEIVED,
        subject=CODE,
        message=dossier_events.DossierStatusChanged(dossier=_dossier(version=2)),
    )
    assert broker.deliver(event) == "processed"
    assert broker.deliver(event) == "duplicate"
    assert recorder.rows(broker) == [(CODE, RECEIVED)]
    assert recorder.calls == 1


def test_an_unsubscribed_type_on_a_subscribed_topic_is_ignored(
    recorder: Recorder, broker: FakeBroker
) -> None:
    deadline = dossier_events.DossierDeadline(dossier=_dossier())
    assert broker.publish(deadline, type="vn.motcua.dossier.overdue.v1") == "ignored"
    assert recorder.rows(broker) == []
    assert broker.dead_letters == []


def test_a_record_that_is_no_cloudevent_is_dead_lettered(broker: FakeBroker) -> None:
    outcome = broker.deliver_record("motcua.dossier.v1", CODE.encode(), b"\x00", [])
    assert outcome == "dead_lettered"
    (letter,) = broker.dead_letters
    assert letter.topic == "motcua.dossier.v1.dlq"
    assert letter.error_type == "EnvelopeError"
    assert letter.header("motcua_consumer_group") == "motcua-recorder"
    assert letter.value == b"\x00"


def test_a_payload_that_does_not_parse_is_dead_lettered(
    recorder: Recorder, broker: FakeBroker
) -> None:
    record = encode(
        Event.new(
            source="/motcua/dossier",
            type=RECEIVED,
            subject=CODE,
            message=dossier_events.DossierStatusChanged(dossier=_dossier()),
        )
    )
    outcome = broker.deliver_record(
        "motcua.dossier.v1", record.key, b"\xff\xff\xff", record.headers
    )
    assert outcome == "dead_lettered"
    assert broker.dead_letters[0].error_type == "EnvelopeError"
    assert recorder.calls == 0


def test_a_failing_handler_is_retried_then_dead_lettered_and_its_writes_roll_back(
    recorder: Recorder, broker: FakeBroker
) -> None:
    recorder.fail_times = 10
    outcome = broker.publish(dossier_events.DossierSubmitted(dossier=_dossier()))
    assert outcome == "dead_lettered"
    assert recorder.calls == 3  # the runner's bound (max_attempts)
    assert recorder.rows(broker) == []
    assert _inbox_count(broker, recorder) == 0
    assert broker.dead_letters[0].error == "told to fail"


def test_a_handler_that_fails_once_succeeds_on_the_retry(
    recorder: Recorder, broker: FakeBroker
) -> None:
    recorder.fail_times = 1
    assert broker.publish(dossier_events.DossierSubmitted(dossier=_dossier())) == "processed"
    assert recorder.calls == 2
    assert recorder.rows(broker) == [(CODE, SUBMITTED)]


def test_a_permanent_error_is_dead_lettered_at_once(recorder: Recorder, broker: FakeBroker) -> None:
    recorder.fail_times = 1
    recorder.fail_with = PermanentError
    assert broker.publish(dossier_events.DossierSubmitted(dossier=_dossier())) == "dead_lettered"
    assert recorder.calls == 1
    assert broker.dead_letters[0].error_type == "PermanentError"


def test_publish_needs_a_type_when_several_carry_the_message(broker: FakeBroker) -> None:
    with pytest.raises(ValueError, match="say which with type="):
        broker.publish(dossier_events.DossierStatusChanged(dossier=_dossier()))


def test_publish_finds_the_dossier_code_in_the_payload() -> None:
    subscriber = Subscriber("payments")
    got: list[tuple[str, int]] = []

    @subscriber.on("vn.motcua.payment.succeeded.v1")
    def on_paid(message: payment_events.PaymentEvent, delivery: Delivery) -> None:
        got.append((delivery.dossier_code, message.payment.amount_vnd))

    payment = payment_pb2.Payment(dossier_code=CODE, amount_vnd=75_000)
    with FakeBroker(subscriber) as broker:
        outcome = broker.publish(
            payment_events.PaymentEvent(payment=payment), type="vn.motcua.payment.succeeded.v1"
        )
        assert outcome == "processed"
        with pytest.raises(ValueError, match="subject="):
            broker.publish(
                payment_events.PaymentEvent(actor=common_pb2.Actor(subject="x")),
                type="vn.motcua.payment.failed.v1",
            )
    assert got == [(CODE, 75_000)]


def test_registration_refuses_a_type_that_does_not_carry_the_class() -> None:
    subscriber = Subscriber("x")
    with pytest.raises(
        SubscriptionError, match=r"does not carry motcua\.dossier\.v1\.DossierSubmitted"
    ):
        subscriber.handler(dossier_events.DossierSubmitted, types=[RECEIVED])


def test_registration_refuses_a_class_no_event_carries() -> None:
    with pytest.raises(SubscriptionError, match="no documented event type carries"):
        Subscriber("x").handler(dossier_pb2.Dossier)


def test_registration_refuses_an_undocumented_type() -> None:
    with pytest.raises(SubscriptionError, match=r"vn\.motcua\.dossier\.teleported\.v1"):
        Subscriber("x").on("vn.motcua.dossier.teleported.v1")


def test_registration_refuses_types_with_different_messages() -> None:
    with pytest.raises(SubscriptionError, match="carry different messages"):
        Subscriber("x").on(SUBMITTED, RECEIVED)


def test_registration_refuses_a_second_handler_for_a_type() -> None:
    subscriber = Subscriber("x")
    subscriber.on(SUBMITTED)(lambda m, d: None)
    with pytest.raises(SubscriptionError, match="already has a handler"):
        subscriber.on(SUBMITTED)(lambda m, d: None)


def test_it_runs_on_the_services_consumer_runner(recorder: Recorder) -> None:
    settings = SubscriberSettings(kafka_bootstrap="127.0.0.1:1", consumer_group="g1")
    with FakeBroker(recorder.subscriber) as broker:
        runner = recorder.subscriber.runner(settings, broker.sessions)
    assert type(runner) is ConsumerRunner  # the kit's class itself, not a copy
    assert runner.group_id == "g1"
    assert runner.topics == ["motcua.dossier.v1"]
    assert type(broker.runner) is ConsumerRunner


def test_a_subscriber_without_handlers_does_not_start() -> None:
    with (
        FakeBroker(Recorder().subscriber) as broker,
        pytest.raises(SubscriptionError, match="has no handlers"),
    ):
        Subscriber("empty").runner(SubscriberSettings(), broker.sessions)
