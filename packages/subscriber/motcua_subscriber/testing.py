"""A test double of the broker, so a subscriber's handlers are unit-tested without Kafka.

``FakeBroker`` hands records straight to the subscriber's real consumer runner — the kit's
``ConsumerRunner.process``, exactly as Kafka would — on an in-memory SQLite database (or the
one given). Decoding, type dispatch, payload parsing, the inbox and the dead-letter path are
the real code; only the broker is fake. One line per event::

    broker = FakeBroker(subscriber)
    assert broker.publish(events_pb2.DossierSubmitted(dossier=d)) == "processed"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import Engine, MetaData, Table, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from motcua_kit.consumer import ConsumerRunner, Handler, inbox_table
from motcua_kit.db import make_engine
from motcua_kit.envelope import Event, encode
from motcua_kit.registry import TopicRegistry, default_registry

_OUTCOMES = ("processed", "duplicate", "ignored", "dead_lettered")


@dataclass(frozen=True)
class DeadLetter:
    """A record the runner dead-lettered, as it would be on ``<topic>.dlq``."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return ""

    @property
    def error_type(self) -> str:
        return self.header("motcua_error_type")

    @property
    def error(self) -> str:
        return self.header("motcua_error")


class _Sent:
    def get(self, timeout: float | None = None) -> None:
        return None


@dataclass
class _FakeDeadLetterProducer:
    """Stands in for the runner's Kafka producer: keeps the dead letters in memory."""

    letters: list[DeadLetter] = field(default_factory=list)

    def send(
        self,
        topic: str,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> _Sent:
        self.letters.append(DeadLetter(topic, key, value, list(headers or [])))
        return _Sent()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


def _no_consumer(group: str) -> Any:
    raise RuntimeError("FakeBroker delivers records itself; there is no Kafka consumer")


def _subject_of(message: Message) -> str:
    """The dossier code a payload is about: ``dossier.code`` or a ``*.dossier_code``."""
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    for fd in descriptor.fields:
        if descriptor.name == "Dossier" and fd.name == "code":
            return str(getattr(message, fd.name))
        if fd.name == "dossier_code" and fd.type == fd.TYPE_STRING and not fd.is_repeated:
            return str(getattr(message, fd.name))
    for fd in descriptor.fields:
        if fd.message_type is not None and not fd.is_repeated and message.HasField(fd.name):
            found = _subject_of(getattr(message, fd.name))
            if found:
                return found
    return ""


class Subscribable(Protocol):
    """What FakeBroker needs of a subscriber (a :class:`~motcua_subscriber.Subscriber` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def handlers(self) -> list[Handler]: ...
    @property
    def metadata(self) -> MetaData: ...
    @property
    def inbox(self) -> Table: ...
    @property
    def registry(self) -> TopicRegistry: ...


@dataclass
class HandlerSet:
    """Bare kit handlers as a subscribable — e.g. a motcua service's handler declarations."""

    name: str
    handlers: list[Handler]
    metadata: MetaData = field(default_factory=MetaData)
    registry: TopicRegistry = field(default_factory=default_registry)

    def __post_init__(self) -> None:
        self.inbox = inbox_table(self.metadata)


class FakeBroker:
    """Test double of Kafka for one subscriber: ``publish`` runs its handlers right away."""

    def __init__(
        self,
        subscriber: Subscribable,
        *,
        database_url: str | None = None,
        max_attempts: int = 3,
        group: str | None = None,
    ) -> None:
        self.subscriber = subscriber
        self.engine: Engine = (
            make_engine(database_url)
            if database_url
            else create_engine(
                "sqlite://",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        )
        subscriber.metadata.create_all(self.engine)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self._producer = _FakeDeadLetterProducer()
        self.runner = ConsumerRunner(
            subscriber.name,
            group or f"motcua-{subscriber.name}",
            subscriber.handlers,
            self.sessions,
            subscriber.inbox,
            _no_consumer,
            lambda: cast(Any, self._producer),
            max_attempts=max_attempts,
            retry_backoff=0.0,
        )
        self._offsets: dict[str, int] = {}
        self.outcomes: list[str] = []

    # -- delivering ----------------------------------------------------------------------------
    def publish(
        self,
        message: Message,
        *,
        type: str | None = None,
        subject: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """Deliver ``message`` as the producer would publish it; returns the runner's outcome
        (processed, duplicate, ignored or dead_lettered).

        ``type`` may be left out when one documented type carries the message; ``subject``
        (the dossier code) when the payload names its dossier.
        """
        registry = self.subscriber.registry
        full_name = cast(Descriptor, message.DESCRIPTOR).full_name
        if type is None:
            candidates = registry.types_of_message(full_name)
            if len(candidates) != 1:
                raise ValueError(
                    f"{full_name} is carried by {len(candidates)} types; say which with type="
                )
            type = candidates[0]
        topic = registry.topic_of(type)
        code = subject if subject is not None else _subject_of(message)
        if not code:
            raise ValueError("the payload names no dossier; pass subject=<dossier code>")
        event = Event.new(source=topic.source, type=type, subject=code, message=message, time=time)
        if id is not None:
            event = dataclasses.replace(event, id=id)
        return self.deliver(event)

    def deliver(self, event: Event, *, topic: str | None = None) -> str:
        """Deliver an already-built event (e.g. the same one twice, to test deduplication)."""
        record = encode(event)
        chosen = topic or self.subscriber.registry.topic_of(event.type).name
        return self.deliver_record(chosen, record.key, record.value, record.headers)

    def deliver_record(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]],
    ) -> str:
        """Deliver raw record parts — e.g. a malformed record, to test dead-lettering."""
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        headers_list = list(headers)
        record = ConsumerRecord(
            topic,
            0,
            None,
            offset,
            int(datetime.now(UTC).timestamp() * 1000),
            0,
            key,
            value,
            headers_list,
            None,
            len(key or b""),
            len(value or b""),
            sum(len(k) + len(v) for k, v in headers_list),
        )
        outcome = self.runner.process(record)
        assert outcome in _OUTCOMES, outcome
        self.outcomes.append(outcome)
        return outcome

    # -- looking -------------------------------------------------------------------------------
    @property
    def dead_letters(self) -> list[DeadLetter]:
        return list(self._producer.letters)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session on the subscriber's database, to look at what the handlers wrote."""
        with self.sessions() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> FakeBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
