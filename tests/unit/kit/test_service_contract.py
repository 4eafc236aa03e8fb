"""The kit's ``Service`` contract (docs/adr/0083-kit-service-contract.md), on SQLite, without a
broker: what the host gives every service (typed settings checked once, context, clock, the
``setup`` hook), ``publish`` on the registry's topic, and ``idempotent``'s four cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import SettingsConfigDict
from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from motcua import topics as t
from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import dossier_pb2, events_pb2
from motcua_kit.actors import actor_to_proto, role_from_proto, role_to_proto
from motcua_kit.clock import aware, utc, utc_now
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import AlreadyExists
from motcua_kit.outbox import outbox_table
from motcua_kit.registry import RegistryError
from motcua_kit.service import Dependency, Service, ServiceContext, ServiceHost
from motcua_kit.settings import ServiceSettings

NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_DEMO_")
    greeting: str = "xin chào"


metadata = MetaData()
outbox = outbox_table(metadata)
requests = Table(
    "requests",
    metadata,
    Column("scope", String(100), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("result", String(100), nullable=False),
)


class Demo(Service[DemoSettings]):
    """A service as the four are written: settings from ``Service[...]``, one dependency."""

    name = "demo"
    metadata = metadata
    outbox_table = outbox
    migrations = "unused:unused"
    publishes = (t.DOSSIER_TOPIC,)

    greeting: Dependency[str] = Dependency(lambda ctx: ctx.settings.greeting.upper())

    def setup(self) -> None:
        self.setups = getattr(self, "setups", 0) + 1
        self.greeted_at = self.clock()


def _settings(tmp_path: Path, cls: type[ServiceSettings] = DemoSettings) -> Any:
    return cls(database_url=f"sqlite:///{tmp_path}/demo.db", kafka_create_topics=False)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[ServiceHost]:
    built = ServiceHost(Demo, _settings(tmp_path), overrides={"clock": lambda: NOW})
    metadata.create_all(built.engine)
    try:
        yield built
    finally:
        built.engine.dispose()


def _demo(host: ServiceHost) -> Demo:
    assert isinstance(host.service, Demo)
    return host.service


# -- what the host provides ---------------------------------------------------------------------
def test_the_settings_class_comes_from_the_type_argument() -> None:
    assert Demo.settings_class is DemoSettings


def test_settings_are_typed_and_checked_once_by_the_host(host: ServiceHost) -> None:
    demo = _demo(host)
    assert demo.settings is host.settings
    assert isinstance(demo.context, ServiceContext)
    assert demo.context.settings is host.settings
    assert demo.greeting == "XIN CHÀO"  # a factory reads its settings without isinstance


def test_settings_of_another_class_are_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Demo runs with DemoSettings, not ServiceSettings"):
        ServiceHost(Demo, _settings(tmp_path, ServiceSettings))


def test_a_settings_class_other_than_the_type_argument_is_refused() -> None:
    with pytest.raises(TypeError, match="settings_class ServiceSettings is not the DemoSettings"):

        class Wrong(Service[DemoSettings]):
            settings_class = ServiceSettings


def test_setup_runs_once_after_the_dependencies(host: ServiceHost) -> None:
    demo = _demo(host)
    assert demo.setups == 1
    assert demo.greeted_at == NOW  # the override was in place when setup ran


def test_the_clock_is_utc_unless_overridden(tmp_path: Path, host: ServiceHost) -> None:
    assert _demo(host).clock() == NOW
    plain = ServiceHost(Demo, _settings(tmp_path))
    try:
        before = datetime.now(UTC)
        now = plain.service.clock()
        assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)
    finally:
        plain.engine.dispose()


def test_a_dependency_a_subclass_replaces_is_built_once(tmp_path: Path) -> None:
    built: list[str] = []

    def make_greeting(ctx: ServiceContext[Any]) -> str:
        built.append("sub")
        return "hi"

    class Stamped(Demo):
        greeting: Dependency[str] = Dependency(make_greeting)

    host = ServiceHost(Stamped, _settings(tmp_path))
    try:
        assert isinstance(host.service, Stamped) and host.service.greeting == "hi"
        assert built == ["sub"]
    finally:
        host.engine.dispose()


# -- publish ------------------------------------------------------------------------------------
def _submitted(code: str) -> events_pb2.DossierSubmitted:
    return events_pb2.DossierSubmitted(dossier=dossier_pb2.Dossier(code=code))


def _outbox_rows(host: ServiceHost) -> list[Any]:
    with host.sessions() as session:
        return list(session.execute(select(outbox).order_by(outbox.c.id)).all())


def test_publish_puts_the_event_on_the_registry_topic(host: ServiceHost) -> None:
    with transaction(host.sessions) as session:
        _demo(host).publish(session, t.DOSSIER_SUBMITTED, "D-1", _submitted("D-1"), NOW)
    [row] = _outbox_rows(host)
    assert row.topic == t.DOSSIER_TOPIC
    assert row.source == t.DOSSIER_SOURCE
    assert (row.event_type, row.event_key) == (t.DOSSIER_SUBMITTED, "D-1")
    assert aware(row.event_time) == NOW
    assert events_pb2.DossierSubmitted.FromString(row.payload).dossier.code == "D-1"


def test_publish_refuses_a_type_the_service_does_not_publish(host: ServiceHost) -> None:
    demo = _demo(host)
    with transaction(host.sessions) as session:
        with pytest.raises(RegistryError, match=f"does not publish {t.PAYMENT_SUCCEEDED}"):
            demo.publish(session, t.PAYMENT_SUCCEEDED, "D-1", _submitted("D-1"), NOW)
        with pytest.raises(RegistryError, match="no event type"):
            demo.publish(session, "vn.motcua.dossier.invented.v1", "D-1", _submitted("D-1"), NOW)
    assert _outbox_rows(host) == []


def test_publish_events_keeps_the_order_and_the_trace(host: ServiceHost) -> None:
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    built = [
        Event.new(
            source=t.DOSSIER_SOURCE,
            type=t.DOSSIER_SUBMITTED,
            subject=f"D-{i}",
            message=_submitted(f"D-{i}"),
            time=NOW,
            trace_headers=trace,
        )
        for i in range(3)
    ]
    with transaction(host.sessions) as session:
        _demo(host).publish_events(session, built)
    rows = _outbox_rows(host)
    assert [r.event_id for r in rows] == [e.id for e in built]
    assert {r.topic for r in rows} == {t.DOSSIER_TOPIC}
    assert all(r.trace_headers == trace for r in rows)


# -- idempotent ---------------------------------------------------------------------------------
def _find(session: Session, scope: str) -> tuple[str, str | None] | None:
    row = session.execute(select(requests).where(requests.c.scope == scope)).first()
    return None if row is None else (row.result, row.fingerprint)


def _refuse(result: str) -> Exception:
    return AlreadyExists(f"the key already made {result}")


def _creator(fingerprint: str, result: str, made: list[str]) -> Any:
    def create(session: Session, scope: str) -> str:
        made.append(result)
        session.execute(
            insert(requests).values(scope=scope, fingerprint=fingerprint, result=result)
        )
        session.flush()
        return result

    return create


def _once(demo: Demo, fingerprint: str, result: str, made: list[str], find: Any = _find) -> Any:
    return demo.idempotent(
        "alice\x1fkey-1",
        fingerprint,
        find=find,
        create=_creator(fingerprint, result, made),
        refuse=_refuse,
    )


def test_idempotent_creates_once_and_replays_the_same_body(host: ServiceHost) -> None:
    demo, made = _demo(host), list[str]()
    assert _once(demo, "body-a", "first", made) == ("first", False)
    assert _once(demo, "body-a", "second", made) == ("first", True)
    assert made == ["first"]


def test_idempotent_refuses_another_body_under_the_key(host: ServiceHost) -> None:
    demo, made = _demo(host), list[str]()
    _once(demo, "body-a", "first", made)
    with pytest.raises(AlreadyExists, match="the key already made first"):
        _once(demo, "body-b", "second", made)
    assert made == ["first"]


def _racing_find() -> Any:
    """A find that misses on the first look, as when the winner commits just after it."""
    looks: list[int] = []

    def find(session: Session, scope: str) -> tuple[str, str | None] | None:
        looks.append(1)
        if len(looks) == 1:
            return None
        return _find(session, scope)

    return find, looks


def _winner(host: ServiceHost, fingerprint: str) -> None:
    with transaction(host.sessions) as session:
        session.execute(
            insert(requests).values(scope="alice\x1fkey-1", fingerprint=fingerprint, result="won")
        )


def test_a_concurrent_duplicate_with_the_same_body_is_replayed(host: ServiceHost) -> None:
    _winner(host, "body-a")
    find, looks = _racing_find()
    made: list[str] = []
    assert _once(_demo(host), "body-a", "lost", made, find) == ("won", True)
    assert (made, len(looks)) == (["lost"], 2)  # its insert failed, the retry replayed


def test_a_concurrent_duplicate_with_another_body_is_refused(host: ServiceHost) -> None:
    _winner(host, "body-a")
    find, _ = _racing_find()
    with pytest.raises(AlreadyExists, match="the key already made won"):
        _once(_demo(host), "body-b", "lost", [], find)


def test_a_second_integrity_error_is_raised(host: ServiceHost) -> None:
    _winner(host, "body-a")
    made: list[str] = []
    with pytest.raises(IntegrityError):
        _once(_demo(host), "body-a", "lost", made, lambda session, scope: None)
    assert made == ["lost", "lost"]
    with host.sessions() as session:
        assert _find(session, "alice\x1fkey-1") == ("won", "body-a")


# -- the small shared helpers -------------------------------------------------------------------
def test_utc_helpers() -> None:
    hanoi = timezone(timedelta(hours=7))
    assert utc(datetime(2026, 3, 2, 15, 30, tzinfo=hanoi)) == NOW
    assert utc(datetime(2026, 3, 2, 15, 30, tzinfo=hanoi)).tzinfo is UTC
    assert utc(datetime(2026, 3, 2, 8, 30)) == datetime(2026, 3, 2, 8, 30)  # naive: UTC already
    assert utc(None) is None
    assert aware(datetime(2026, 3, 2, 8, 30)) == NOW
    assert utc_now().tzinfo is UTC


@pytest.mark.parametrize(
    ("role", "proto"),
    [
        ("citizen", common_pb2.ROLE_CITIZEN),
        ("officer", common_pb2.ROLE_OFFICER),
        ("admin", common_pb2.ROLE_ADMIN),
        ("service", common_pb2.ROLE_SERVICE),
    ],
)
def test_roles_map_both_ways(role: str, proto: int) -> None:
    assert role_to_proto(role) == proto
    assert role_from_proto(proto) == role


def test_an_unknown_role_is_unspecified_and_back_the_callers_default() -> None:
    assert role_to_proto("") == common_pb2.ROLE_UNSPECIFIED
    assert role_to_proto("mayor") == common_pb2.ROLE_UNSPECIFIED
    assert role_from_proto(common_pb2.ROLE_UNSPECIFIED) == ""
    assert role_from_proto(99, "service") == "service"


def test_actor_to_proto() -> None:
    class Officer:
        subject, role, agency_code = "u-7", "officer", "SO-TP"

    assert actor_to_proto(Officer()) == common_pb2.Actor(
        subject="u-7", role=common_pb2.ROLE_OFFICER, agency_code="SO-TP"
    )
