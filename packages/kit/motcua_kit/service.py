"""A service declared as a class, nameko-style, and the host that runs it.

A service class names its entrypoints — gRPC servicers (:meth:`Service.grpc_services`), event
handlers (:func:`event_handler`) and timers (:func:`timer`) — and its dependencies
(:class:`Dependency`). The :class:`ServiceHost` builds the dependencies, wires the database,
outbox relay, consumer runners, gRPC server and metrics endpoint, and stops them gracefully.
A test replaces a dependency in one line::

    host = ServiceHost(DossierService, settings, overrides={"clock": FrozenClock(t)})
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar, cast, overload

from google.protobuf.message import Message
from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.orm import Session, sessionmaker

from motcua_kit.auth import TokenVerifier
from motcua_kit.consumer import ConsumerRunner, Handler, dlq_topic
from motcua_kit.db import make_engine, migrate, session_factory
from motcua_kit.grpc_server import GrpcServer, Registration, ServerTLS
from motcua_kit.kafka import ensure_topics, make_consumer, make_producer
from motcua_kit.logging import configure_logging
from motcua_kit.metrics import MetricsEndpoint
from motcua_kit.outbox import Outbox, OutboxRelay
from motcua_kit.settings import ServiceSettings
from motcua_kit.tracing import configure_tracing

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ServiceContext:
    """What dependency factories may use."""

    settings: ServiceSettings
    engine: Engine
    sessions: sessionmaker[Session]
    outbox: Outbox


class Dependency(Generic[T]):
    """A dependency declared on a service class, built by the host, replaceable by name."""

    def __init__(self, factory: Callable[[ServiceContext], T]) -> None:
        self.factory = factory
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Dependency[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> T | Dependency[T]:
        if instance is None:
            return self
        try:
            return cast(T, instance.__dict__[self.name])
        except KeyError:
            raise RuntimeError(f"dependency {self.name!r} used before the host built it") from None


@dataclass(frozen=True)
class _HandlerSpec:
    topic: str
    event_type: str
    message_type: type[Message] | None


@dataclass(frozen=True)
class _TimerSpec:
    interval: float | str  # seconds, or the name of a settings field holding them


def event_handler(
    topic: str, event_type: str = "*", message: type[Message] | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a method ``(self, event, message, session)`` as the handler of an event type."""

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        specs = [*getattr(fn, "_motcua_handlers", []), _HandlerSpec(topic, event_type, message)]
        fn._motcua_handlers = specs  # type: ignore[attr-defined]
        return fn

    return mark


def timer(interval_seconds: float | str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Mark a method ``(self)`` to run every ``interval_seconds`` in its own thread.

    A string names the settings field that holds the interval, so operators can tune it.
    """

    def mark(fn: Callable[..., T]) -> Callable[..., T]:
        fn._motcua_timer = _TimerSpec(interval_seconds)  # type: ignore[attr-defined]
        return fn

    return mark


class Service:
    """Base of every motcua service class."""

    name: ClassVar[str]
    settings_class: ClassVar[type[ServiceSettings]]
    metadata: ClassVar[MetaData]
    outbox_table: ClassVar[Table | None] = None
    inbox_table: ClassVar[Table | None] = None
    migrations: ClassVar[str]  # Alembic script location, "package:folder"
    publishes: ClassVar[tuple[str, ...]] = ()

    def grpc_services(self) -> list[tuple[str, Registration]]:
        """(full service name, registration function) for each gRPC servicer of the service."""
        return []

    def on_start(self) -> None:
        """Hook: runs before the relay, consumers, timers and gRPC start.

        A service checks its own configuration here (raise to refuse to start) and starts its
        extra endpoints (e.g. payment's HTTP callbacks).
        """

    def on_stop(self) -> None:
        """Hook: runs once gRPC, consumers and timers stopped, before the relay's last flush."""

    def handlers(self) -> list[Handler]:
        out: list[Handler] = []
        for attr in dir(type(self)):
            fn = getattr(self, attr, None)
            for spec in getattr(fn, "_motcua_handlers", []):
                out.append(Handler(spec.topic, spec.event_type, fn, spec.message_type))  # type: ignore[arg-type]
        return out

    def timers(self) -> list[tuple[str, float | str, Callable[[], object]]]:
        out = []
        for attr in dir(type(self)):
            fn = getattr(self, attr, None)
            spec = getattr(fn, "_motcua_timer", None)
            if spec is not None and callable(fn):
                out.append((attr, spec.interval, fn))
        return out


class ServiceHost:
    """Runs one service: database, outbox relay, consumers, timers, gRPC, metrics."""

    def __init__(
        self,
        service_cls: type[Service],
        settings: ServiceSettings,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.service_cls = service_cls
        self.settings = settings
        self.overrides = overrides or {}
        self.engine = make_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        table = service_cls.outbox_table
        self.outbox = Outbox(table) if table is not None else None
        self.service = self._build()
        self.grpc: GrpcServer | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[ConsumerRunner] = []
        self.metrics: MetricsEndpoint | None = None
        self._timers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._ready = False

    def _build(self) -> Service:
        service = self.service_cls.__new__(self.service_cls)
        ctx = ServiceContext(self.settings, self.engine, self.sessions, self.outbox)  # type: ignore[arg-type]
        for klass in reversed(type(service).__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, Dependency):
                    value = self.overrides[name] if name in self.overrides else attr.factory(ctx)
                    service.__dict__[name] = value
        init = getattr(service, "setup", None)
        if callable(init):
            init()
        return service

    def migrate(self) -> None:
        migrate(self.settings.database_url, self.service_cls.migrations)

    def start(self) -> None:
        s = self.settings
        if s.jwt_public_key_file is None:
            raise SystemExit(
                f"MOTCUA_{self.service_cls.name.upper()}_JWT_PUBLIC_KEY_FILE is not set: "
                "every gRPC call must be authenticated"
            )
        verifier = TokenVerifier.from_file(s.jwt_public_key_file, s.jwt_issuer, s.jwt_audience)
        tls = None
        if s.tls_cert_file and s.tls_key_file:
            tls = ServerTLS(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file)
        handlers = self.service.handlers()
        if s.kafka_create_topics:
            topics = [*self.service_cls.publishes, *{h.topic for h in handlers}]
            topics += [dlq_topic(t) for t in {h.topic for h in handlers}]
            try:
                ensure_topics(s, sorted(set(topics)))
            except Exception as exc:  # the broker may be down; the relay and consumers retry
                log.warning("could not ensure topics %s: %s", topics, exc)
        self.metrics = MetricsEndpoint(s.bind_host, s.metrics_port, lambda: self._ready)
        self.metrics.start()
        self.service.on_start()
        if self.outbox is not None and s.outbox_relay_enabled:
            self.relay = OutboxRelay(
                self.service_cls.name,
                self.sessions,
                self.outbox.table,
                lambda: make_producer(s),
                poll_seconds=s.outbox_poll_seconds,
                batch_size=s.outbox_batch_size,
            )
            self.relay.start()
        if handlers:
            assert self.service_cls.inbox_table is not None, "a consuming service needs an inbox"
            runner = ConsumerRunner(
                self.service_cls.name,
                s.consumer_group or f"motcua-{self.service_cls.name}",
                handlers,
                self.sessions,
                self.service_cls.inbox_table,
                lambda group: make_consumer(
                    s, group, session_timeout_ms=s.consumer_session_timeout_ms
                ),
                lambda: make_producer(s),
                max_attempts=s.consumer_max_attempts,
                retry_backoff=s.consumer_retry_backoff_seconds,
            )
            runner.start()
            self.consumers.append(runner)
        for name, every, fn in self.service.timers():
            interval = float(getattr(s, every) if isinstance(every, str) else every)
            thread = threading.Thread(
                target=self._run_timer, args=(name, interval, fn), name=f"timer-{name}", daemon=True
            )
            thread.start()
            self._timers.append(thread)
        self.grpc = GrpcServer(
            self.service_cls.name,
            host=s.bind_host,
            port=s.grpc_port,
            registrations=self.service.grpc_services(),
            verifier=verifier,
            tls=tls,
            max_workers=s.grpc_max_workers,
        )
        self.grpc.start()
        self._ready = True
        log.info(
            "service started",
            extra={"grpc_port": self.grpc.port, "metrics_port": self.metrics.port},
        )

    def _run_timer(self, name: str, interval: float, fn: Callable[[], object]) -> None:
        while not self._stop.wait(interval):
            try:
                fn()
            except Exception:
                log.exception("timer %s failed", name)

    def stop(self) -> None:
        """Graceful: refuse new calls, finish in-flight ones, drain consumers, flush the relay."""
        self._ready = False
        grace = self.settings.shutdown_grace_seconds
        if self.grpc is not None:
            self.grpc.stop(grace)
        self._stop.set()
        for runner in self.consumers:
            runner.stop(grace)
        for thread in self._timers:
            thread.join(grace)
        self.service.on_stop()
        if self.relay is not None:
            self.relay.stop(grace)
        if self.metrics is not None:
            self.metrics.stop()
        self.engine.dispose()
        log.info("service stopped")

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM or SIGINT, then stop gracefully."""
        configure_logging(self.service_cls.name, self.settings.log_level)
        configure_tracing(self.service_cls.name, self.settings.otlp_endpoint)
        done = threading.Event()

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s received, stopping", signal.Signals(signum).name)
            done.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        self.start()
        done.wait()
        self.stop()
