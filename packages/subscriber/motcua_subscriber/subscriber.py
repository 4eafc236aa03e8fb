"""A subscriber: typed handlers per event type, run by the motcua services' own consumer runner.

Handlers are registered by protobuf message class (every documented type carrying it) or by
CloudEvents type; the topic registry says which topic each type is on and which message its
payload is, so a typo or a wrong class fails at registration, not in production. Running is
``motcua_kit.consumer.ConsumerRunner`` — the same code the services run — so a subscriber
gets the same guarantees: CloudEvents decoding, protobuf parsing, the inbox (each ``ce_id``
applied once, in the handler's transaction), bounded retries, then ``<topic>.dlq``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar, cast

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import Session, sessionmaker

from motcua_kit.consumer import ConsumerRunner, Handler, inbox_table
from motcua_kit.db import make_engine, session_factory
from motcua_kit.envelope import Event
from motcua_kit.kafka import make_consumer, make_producer
from motcua_kit.logging import configure_logging
from motcua_kit.metrics import MetricsEndpoint
from motcua_kit.registry import TopicRegistry, default_registry
from motcua_subscriber.settings import SubscriberSettings

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


class SubscriptionError(ValueError):
    """A handler asks for a type the registry does not document, or with the wrong message."""


@dataclass(frozen=True)
class Delivery:
    """What a handler gets beside the payload: the event's envelope and the transaction.

    Write the subscriber's effects with ``session``: they commit together with the event id
    in the inbox, so a redelivered event changes nothing.
    """

    event: Event
    session: Session
    topic: str

    @property
    def dossier_code(self) -> str:
        """The record key and ``ce_subject``."""
        return self.event.subject


TypedHandler = Callable[[M, Delivery], None]


class Subscriber:
    """Named handlers for motcua events; ``run()`` consumes them from Kafka.

    ``name`` names the consumer group (``motcua-<name>`` unless configured), the metrics and
    the dead letters' ``motcua_consumer_group`` header.
    """

    def __init__(
        self,
        name: str,
        *,
        metadata: MetaData | None = None,
        registry: TopicRegistry | None = None,
    ) -> None:
        if not name.strip():
            raise ValueError("a subscriber needs a name (its consumer group)")
        self.name = name
        self.registry = registry or default_registry()
        self.metadata = metadata if metadata is not None else MetaData()
        existing = self.metadata.tables.get("inbox")
        self.inbox: Table = existing if existing is not None else inbox_table(self.metadata)
        self._handlers: dict[tuple[str, str], Handler] = {}

    # -- registration --------------------------------------------------------------------------
    def handler(
        self, message_class: type[M], *, types: Iterable[str] | None = None
    ) -> Callable[[TypedHandler[M]], TypedHandler[M]]:
        """Decorate ``fn(message, delivery)`` to handle every documented type whose payload is
        ``message_class`` — or only ``types`` of them."""
        descriptor = cast(Descriptor, message_class.DESCRIPTOR)
        documented = self.registry.types_of_message(descriptor.full_name)
        if not documented:
            raise SubscriptionError(f"no documented event type carries {descriptor.full_name}")
        chosen = tuple(types) if types is not None else documented
        for event_type in chosen:
            if event_type not in documented:
                raise SubscriptionError(
                    f"{event_type} does not carry {descriptor.full_name} "
                    f"(types that do: {', '.join(documented)})"
                )

        def register(fn: TypedHandler[M]) -> TypedHandler[M]:
            for event_type in chosen:
                self._add(event_type, message_class, cast(TypedHandler[Message], fn))
            return fn

        return register

    def on(
        self, *event_types: str
    ) -> Callable[[Callable[[Any, Delivery], None]], Callable[[Any, Delivery], None]]:
        """Decorate ``fn(message, delivery)`` for the given types; the registry names their
        message (all of them must carry the same one). Prefer :meth:`handler` for typing."""
        if not event_types:
            raise SubscriptionError("name at least one event type")
        messages = {self._documented(t).message for t in event_types}
        if len(messages) > 1:
            raise SubscriptionError(
                f"{', '.join(event_types)} carry different messages "
                f"({', '.join(sorted(messages))}); register one handler per message"
            )
        message_class = self.registry.message_class(event_types[0])

        def register(fn: Callable[[Any, Delivery], None]) -> Callable[[Any, Delivery], None]:
            for event_type in event_types:
                self._add(event_type, message_class, fn)
            return fn

        return register

    def _documented(self, event_type: str) -> Any:
        try:
            return self.registry.event(event_type)
        except Exception as exc:
            raise SubscriptionError(str(exc)) from None

    def _add(
        self,
        event_type: str,
        message_class: type[Message],
        fn: Callable[[Any, Delivery], None],
    ) -> None:
        spec = self._documented(event_type)
        expected = self.registry.message_class(event_type)
        if expected is not message_class:
            raise SubscriptionError(
                f"{event_type} carries {spec.message}, not {message_class.DESCRIPTOR.full_name}"
            )
        topic = self.registry.topic_of(event_type).name
        if (topic, event_type) in self._handlers:
            raise SubscriptionError(f"{event_type} already has a handler in {self.name}")

        def call(event: Event, message: Message | None, session: Session) -> None:
            fn(message, Delivery(event, session, topic))

        call.__qualname__ = getattr(fn, "__qualname__", "handler")
        self._handlers[(topic, event_type)] = Handler(topic, event_type, call, message_class)

    # -- what the runner takes -----------------------------------------------------------------
    @property
    def handlers(self) -> list[Handler]:
        """The kit's handlers, one per (topic, type)."""
        return list(self._handlers.values())

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({topic for topic, _ in self._handlers}))

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(sorted(event_type for _, event_type in self._handlers))

    def consumer_group(self, settings: SubscriberSettings) -> str:
        """The configured group, else the registry's for this system, else motcua-<name>."""
        if settings.consumer_group:
            return settings.consumer_group
        system = self.registry.systems.get(self.name)
        return system.consumer_group if system is not None else f"motcua-{self.name}"

    def runner(
        self, settings: SubscriberSettings, sessions: sessionmaker[Session]
    ) -> ConsumerRunner:
        """The services' consumer runner, wired to Kafka for this subscriber."""
        if not self._handlers:
            raise SubscriptionError(f"{self.name} has no handlers")
        kafka = settings.kafka_settings(self.name)
        return ConsumerRunner(
            self.name,
            self.consumer_group(settings),
            self.handlers,
            sessions,
            self.inbox,
            lambda group: make_consumer(
                kafka, group, session_timeout_ms=settings.session_timeout_ms
            ),
            lambda: make_producer(kafka),
            max_attempts=settings.max_attempts,
            retry_backoff=settings.retry_backoff_seconds,
        )

    # -- running -------------------------------------------------------------------------------
    def start(self, settings: SubscriberSettings | None = None) -> Running:
        """Start consuming in a background thread; stop it with ``Running.stop()``."""
        chosen = settings or SubscriberSettings()
        engine = make_engine(chosen.database_url)
        if chosen.create_tables:
            self.metadata.create_all(engine)
        runner = self.runner(chosen, session_factory(engine))
        metrics = None
        if chosen.metrics_port:
            metrics = MetricsEndpoint(chosen.metrics_host, chosen.metrics_port, lambda: True)
            metrics.start()
        runner.start()
        log.info(
            "subscriber %s consuming %s as %s",
            self.name,
            ", ".join(self.topics),
            self.consumer_group(chosen),
        )
        return Running(runner, engine, chosen.shutdown_grace_seconds, metrics)

    def run(self, settings: SubscriberSettings | None = None) -> None:
        """Consume until SIGTERM or SIGINT, then stop gracefully (finish, commit, flush)."""
        chosen = settings or SubscriberSettings()
        configure_logging(self.name, chosen.log_level)
        done = threading.Event()

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s received, stopping", signal.Signals(signum).name)
            done.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        running = self.start(chosen)
        done.wait()
        running.stop()


class Running:
    """A started subscriber: its runner thread and its database engine."""

    def __init__(
        self,
        runner: ConsumerRunner,
        engine: Any,
        grace: float,
        metrics: MetricsEndpoint | None = None,
    ) -> None:
        self.runner = runner
        self.engine = engine
        self.metrics = metrics
        self._grace = grace

    @property
    def assigned(self) -> threading.Event:
        """Set once the consumer has partitions (useful to wait on in tests)."""
        return self.runner.assigned

    def stop(self) -> None:
        self.runner.stop(self._grace)
        if self.metrics is not None:
            self.metrics.stop()
        self.engine.dispose()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
