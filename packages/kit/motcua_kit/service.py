"""A service declared as a class, nameko-style, and the host that runs it.

A service class names its settings (``Service[DossierSettings]``), its entrypoints — gRPC
servicers (:meth:`Service.grpc_services`), event handlers (:func:`event_handler`) and timers
(:func:`timer`) — and its dependencies (:class:`Dependency`). The :class:`ServiceHost` checks
the settings, builds the dependencies, calls :meth:`Service.setup`, wires the database,
outbox relay, consumer runners, gRPC server and metrics endpoint, and stops them gracefully.
Every service gets ``settings``, ``context`` and ``clock``, :meth:`Service.publish` and
:meth:`Service.idempotent` from the base (docs/adr/0083-kit-service-contract.md).
A test replaces a dependency in one line::

    host = ServiceHost(DossierService, settings, overrides={"clock": FrozenClock(t)})
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin, overload

from google.protobuf.message import Message
from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.orm import Session, sessionmaker

from motcua_kit.auth import TokenVerifier
from motcua_kit.clock import Clock, utc_now
from motcua_kit.consumer import ConsumerRunner, Handler, dlq_topic
from motcua_kit.db import make_engine, migrate, session_factory
from motcua_kit.envelope import Event
from motcua_kit.grpc_server import GrpcServer, Registration, ServerTLS
from motcua_kit.idempotency import Earlier, idempotent
from motcua_kit.kafka import ensure_topics, make_consumer, make_producer
from motcua_kit.logging import configure_logging
from motcua_kit.metrics import MetricsEndpoint
from motcua_kit.outbox import Outbox, OutboxRelay
from motcua_kit.registry import RegistryError, TopicSpec, default_registry
from motcua_kit.settings import ServiceSettings
from motcua_kit.shutdown import (
    EXIT_MARGIN_SECONDS,
    Deadline,
    Step,
    Watchdog,
    exit_process,
    run_in_parallel,
)
from motcua_kit.tracing import configure_tracing
from motcua_kit.worker import ProducingWorker

log = logging.getLogger(__name__)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
K = TypeVar("K")
R = TypeVar("R")
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class ServiceContext(Generic[SettingsT]):
    """What dependency factories may use. ``settings`` is already checked against the
    service's ``settings_class`` (a factory needs no ``isinstance``)."""

    settings: SettingsT
    engine: Engine
    sessions: sessionmaker[Session]
    outbox: Outbox


class Dependency(Generic[T_co]):
    """A dependency declared on a service class, built by the host, replaceable by name."""

    def __init__(self, factory: Callable[[ServiceContext[Any]], T_co]) -> None:
        self.factory = factory
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Dependency[T_co]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T_co: ...
    def __get__(self, instance: object | None, owner: type) -> T_co | Dependency[T_co]:
        if instance is None:
            return self
        try:
            return cast(T_co, instance.__dict__[self.name])
        except KeyError:
            raise RuntimeError(f"dependency {self.name!r} used before the host built it") from None


@dataclass(frozen=True)
class _HandlerSpec:
    topic: str
    event_type: str
    message_type: type[Message] | None
    batch: str | None = None


@dataclass(frozen=True)
class _TimerSpec:
    interval: float | str  # seconds, or the name of a settings field holding them


def event_handler(
    topic: str,
    event_type: str = "*",
    message: type[Message] | None = None,
    *,
    batch: str | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a method ``(self, event, message, session)`` as the handler of an event type.

    ``batch`` names a method ``(self, [(event, message), ...], session)`` with the same effect
    on many records at once (:attr:`motcua_kit.consumer.Handler.batch`): where a handler's
    statements cost more than its work, one call per poll pays them once.
    """

    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        spec = _HandlerSpec(topic, event_type, message, batch)
        specs = [*getattr(fn, "_motcua_handlers", []), spec]
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


class Service(Generic[SettingsT]):
    """Base of every motcua service class: ``class DossierService(Service[DossierSettings])``.

    What the host provides, once, before :meth:`setup`: ``settings`` (the instance of
    ``settings_class``, checked by the host), ``context`` (engine, sessions, outbox) and
    ``clock`` (the system's UTC clock unless a test overrides it).
    """

    name: ClassVar[str]
    # Taken from ``Service[X]`` when the class does not set it.
    settings_class: ClassVar[type[ServiceSettings]] = ServiceSettings
    metadata: ClassVar[MetaData]
    outbox_table: ClassVar[Table | None] = None
    inbox_table: ClassVar[Table | None] = None
    migrations: ClassVar[str]  # Alembic script location, "package:folder"
    publishes: ClassVar[tuple[str, ...]] = ()  # the topics the service produces

    context: Dependency[ServiceContext[Any]] = Dependency(lambda ctx: ctx)
    clock: Dependency[Clock] = Dependency(lambda ctx: utc_now)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is not Service:
                continue
            (argument,) = get_args(base)
            if not (isinstance(argument, type) and issubclass(argument, ServiceSettings)):
                continue
            declared = cls.__dict__.get("settings_class")
            if declared is None:
                cls.settings_class = argument
            elif not issubclass(declared, argument):
                raise TypeError(
                    f"{cls.__name__}: settings_class {declared.__name__} is not the "
                    f"{argument.__name__} of Service[{argument.__name__}]"
                )

    @property
    def settings(self) -> SettingsT:
        """The service's settings, of its ``settings_class`` (the host checked it)."""
        return cast(SettingsT, self.context.settings)

    def setup(self) -> None:
        """Hook: runs once, when the host has built every dependency (overrides included).

        Plain wiring only — objects made from the dependencies and settings; no I/O, since
        ``migrate`` builds the service too. Checks that may refuse to start go in
        :meth:`on_start`.
        """

    def grpc_services(self) -> list[tuple[str, Registration]]:
        """(full service name, registration function) for each gRPC servicer of the service."""
        return []

    # -- what every use case does the same way -------------------------------------------------
    def publish(
        self, session: Session, event_type: str, subject: str, message: Message, time: datetime
    ) -> None:
        """Put one event in the outbox, in the caller's transaction, on the topic that the
        registry says carries ``event_type`` (``time``: the change's, from :attr:`clock`).

        The record key is ``subject`` (the dossier code); ``ce_source`` is the topic's; a
        type on a topic the service does not publish is refused.
        """
        topic = self._topic_of(event_type)
        event = Event.new(
            source=topic.source, type=event_type, subject=subject, message=message, time=time
        )
        self._outbox().add(session, topic.name, event)

    def publish_events(self, session: Session, events: Sequence[Event]) -> None:
        """Put events already built (a batch, or events carrying their own trace) in the
        outbox in order, each on its type's topic: one insert per run of one topic."""
        outbox = self._outbox()
        for topic, run in groupby(events, key=lambda e: self._topic_of(e.type).name):
            outbox.add_many(session, topic, list(run))

    def idempotent(
        self,
        scope: K,
        fingerprint: str,
        *,
        find: Callable[[Session, K], Earlier[R] | None],
        create: Callable[[Session, K], R],
        refuse: Callable[[R], Exception],
    ) -> tuple[R, bool]:
        """Create once per scope; returns (result, replayed). The same body again replays,
        another is refused, a concurrent duplicate is resolved by one retry
        (:func:`motcua_kit.idempotency.idempotent`)."""
        return idempotent(
            self.context.sessions, scope, fingerprint, find=find, create=create, refuse=refuse
        )

    def _topic_of(self, event_type: str) -> TopicSpec:
        topic = default_registry().topic_of(event_type)
        if topic.name not in type(self).publishes:
            raise RegistryError(
                f"{type(self).__name__} does not publish {event_type}: its topic {topic.name} "
                f"is not one of publishes ({', '.join(type(self).publishes) or 'none'})"
            )
        return topic

    def _outbox(self) -> Outbox:
        outbox: Outbox | None = self.context.outbox
        if outbox is None:
            raise RuntimeError(f"{type(self).__name__} publishes but declares no outbox_table")
        return outbox

    def on_start(self) -> None:
        """Hook: runs before the relay, consumers, timers and gRPC start.

        A service checks its own configuration here (raise to refuse to start) and starts its
        extra endpoints (e.g. payment's HTTP callbacks).
        """

    def on_stop(self) -> None:
        """Hook: runs once gRPC, consumers and timers stopped, before the relay's last flush.

        It shares the one shutdown deadline: a hook still running at the deadline is abandoned.
        """

    @property
    def stopping(self) -> bool:
        """True once the host began to stop: a long timer's work checks it between steps."""
        event = self.__dict__.get("_motcua_stopping")
        return event is not None and event.is_set()

    def handlers(self) -> list[Handler]:
        out: list[Handler] = []
        for attr in dir(type(self)):
            fn = getattr(self, attr, None)
            for spec in getattr(fn, "_motcua_handlers", []):
                batch = getattr(self, spec.batch) if spec.batch else None
                out.append(Handler(spec.topic, spec.event_type, fn, spec.message_type, batch))  # type: ignore[arg-type]
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
        service_cls: type[Service[Any]],
        settings: ServiceSettings,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        expected = service_cls.settings_class
        if not isinstance(settings, expected):
            raise TypeError(
                f"{service_cls.__name__} runs with {expected.__name__}, "
                f"not {type(settings).__name__}"
            )
        self.service_cls = service_cls
        self.settings = settings
        self.overrides = overrides or {}
        self.engine = make_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        table = service_cls.outbox_table
        self.outbox = Outbox(table) if table is not None else None
        self._stop = threading.Event()
        self.service = self._build()
        self.grpc: GrpcServer | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[ConsumerRunner] = []
        self.metrics: MetricsEndpoint | None = None
        self._timers: list[threading.Thread] = []
        self._ready = False
        self.abandoned: list[str] = []  # what the last stop had to leave running

    def _build(self) -> Service[Any]:
        """The service with its dependencies (a subclass's declaration wins over its base's,
        an override over both), then its :meth:`Service.setup`."""
        service = self.service_cls.__new__(self.service_cls)
        service.__dict__["_motcua_stopping"] = self._stop
        ctx = ServiceContext(self.settings, self.engine, self.sessions, self.outbox)  # type: ignore[arg-type]
        declared: dict[str, Dependency[Any]] = {}
        for klass in reversed(type(service).__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, Dependency):
                    declared[name] = attr
                else:
                    declared.pop(name, None)  # a subclass replaced it with something else
        for name, dependency in declared.items():
            value = self.overrides[name] if name in self.overrides else dependency.factory(ctx)
            service.__dict__[name] = value
        service.setup()
        return service

    def migrate(self) -> None:
        """Apply the migrations as the schema owner (``MIGRATION_DATABASE_URL`` when set)."""
        s = self.settings
        migrate(s.migration_database_url or s.database_url, self.service_cls.migrations)

    def start(self) -> None:
        s = self.settings
        prefix = f"MOTCUA_{self.service_cls.name.upper()}_"
        jwks_url = s.jwt_jwks_url.strip()
        if s.jwt_public_key_file is not None and jwks_url:
            raise SystemExit(
                f"both {prefix}JWT_PUBLIC_KEY_FILE and {prefix}JWT_JWKS_URL are set: "
                "set exactly one source of the identity provider's keys"
            )
        if jwks_url:
            try:
                verifier = TokenVerifier.from_jwks(
                    jwks_url,
                    s.jwt_issuer,
                    s.jwt_audience,
                    cache_seconds=s.jwt_jwks_cache_seconds,
                    max_stale_seconds=s.jwt_jwks_max_stale_seconds,
                )
            except ValueError as exc:
                raise SystemExit(f"{prefix}JWT_JWKS_URL: {exc}") from exc
        elif s.jwt_public_key_file is not None:
            verifier = TokenVerifier.from_file(s.jwt_public_key_file, s.jwt_issuer, s.jwt_audience)
        else:
            raise SystemExit(
                f"neither {prefix}JWT_PUBLIC_KEY_FILE nor {prefix}JWT_JWKS_URL is set: "
                "every gRPC call must be authenticated"
            )
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
        if self._stop.is_set():
            log.info("stop requested while starting: not starting the workers")
            return
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
                batch_size=s.consumer_batch_size,
                batch_wait_ms=s.consumer_batch_wait_ms,
                test_kill_before_commit=s.test_kill_before_commit,
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

    def stop(self, deadline: Deadline | None = None) -> list[str]:
        """Graceful, within ONE deadline (``shutdown_grace_seconds`` unless given).

        1. In parallel: gRPC refuses new calls and finishes those in flight, each consumer
           finishes the record in hand, commits and leaves its group, each timer finishes its
           tick (long ticks check :attr:`Service.stopping`). The relay keeps publishing what
           they commit meanwhile.
        2. ``on_stop``, then the relay's last batch and flush, with what is left: at least a
           reserved share of the budget, so a slow drain cannot starve the flush.
        3. The metrics endpoint and the database pool close.

        Whatever is still running at the deadline is abandoned, and logged with its stack.
        Returns the names of the abandoned components (also kept in :attr:`abandoned`).
        """
        deadline = deadline or Deadline(self.settings.shutdown_grace_seconds)
        self._ready = False
        self._stop.set()
        abandoned: list[str] = []
        drain = deadline.before(_relay_reserve(deadline.remaining())) if self.relay else deadline
        steps: list[Step] = []
        grpc_server = self.grpc
        if grpc_server is not None:
            steps.append(
                Step(
                    "grpc", lambda: grpc_server.stop(drain.remaining()), grpc_server.handler_threads
                )
            )
        for runner in self.consumers:
            steps.append(_worker_step(f"consumer {runner.group_id}", runner, drain))
        for thread in self._timers:
            steps.append(_thread_step(thread, drain))
        abandoned += run_in_parallel(steps, drain)
        abandoned += run_in_parallel([Step("on_stop", self.service.on_stop)], deadline)
        if self.relay is not None:
            abandoned += run_in_parallel(
                [_worker_step("outbox relay", self.relay, deadline)], deadline
            )
        if self.metrics is not None:
            self.metrics.stop()
        if not abandoned:
            self.engine.dispose()  # with a component still running, its connection stays
        self.abandoned = abandoned
        if abandoned:
            log.error("service stopped, abandoning: %s", ", ".join(abandoned))
        else:
            log.info("service stopped")
        return abandoned

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM or SIGINT, then stop gracefully.

        The shutdown budget counts from the signal. The process exits when the stop returns:
        status 0, or 1 when something had to be abandoned at the deadline. A watchdog ends it
        :data:`~motcua_kit.shutdown.EXIT_MARGIN_SECONDS` after the deadline whatever is still
        running (a start that never returned, say). Never returns once a signal came.
        """
        configure_logging(self.service_cls.name, self.settings.log_level)
        configure_tracing(self.service_cls.name, self.settings.otlp_endpoint)
        done = threading.Event()
        grace = self.settings.shutdown_grace_seconds
        deadlines: list[Deadline] = []

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            if deadlines:
                log.info("signal %s received again, already stopping", signal.Signals(signum).name)
                return
            deadline = Deadline(grace)
            deadlines.append(deadline)
            Watchdog(deadline.at + EXIT_MARGIN_SECONDS).start()
            log.info(
                "signal %s received, stopping within %.1fs",
                signal.Signals(signum).name,
                grace,
            )
            self._stop.set()  # timers and long ticks stop at once, even during start
            done.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        self.start()
        done.wait()
        deadline = deadlines[0]
        self.stop(deadline)  # what it abandons is logged; nothing abandoned is lost (ADR 0010)
        # Not the interpreter's own exit: it joins non-daemon threads (a gRPC handler still
        # running would hold it without bound) and collects garbage for seconds under load.
        exit_process(0, deadline)


def _relay_reserve(budget: float) -> float:
    """The share of the budget kept for the relay's last flush: a quarter, at most 2 s."""
    return min(budget / 4, 2.0)


def _worker_step(name: str, worker: ProducingWorker, deadline: Deadline) -> Step:
    return Step(name, lambda: worker.stop(deadline.remaining()), lambda: [worker.thread])


def _thread_step(thread: threading.Thread, deadline: Deadline) -> Step:
    def join() -> bool:
        thread.join(deadline.remaining())
        return not thread.is_alive()

    return Step(thread.name, join, lambda: [thread])
