"""Notify's batch call: a poll's events recorded with the effect of one call each.

The consumer hands a poll's dossier (or payment) events to ``NotifyService.on_events`` at once
(ADR 0012). Run in-process on SQLite and PostgreSQL with the real service class: one host
takes the events one by one through the per-event handlers, another takes them in one call,
and both must leave the same notifications, snapshots and outbox — with one statement per
table for the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from motcua_kit.auth import Principal
from motcua_kit.consumer import PermanentError
from motcua_kit.db import transaction
from motcua_kit.envelope import Event
from motcua_kit.service import ServiceHost
from motcua_notify import events
from motcua_notify.adapters.db import dossier_snapshots, notifications
from motcua_notify.domain.states import Channel
from motcua_notify.service import NotifyService
from motcua_notify.settings import NotifySettings
from notify_providers import dossier, payment_event, status_changed, submitted

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 09:00 in Hội An, a Tuesday
OPTED_OUT = "079203009999"
_ADMIN = Principal("admin-1", frozenset({"admin"}))


def _traced(ev: Event, n: int) -> Event:
    return dataclasses.replace(ev, trace_headers={"traceparent": f"00-{n:032x}-{n:016x}-01"})


@pytest.fixture
def hosts(database: Callable[[str], str]) -> Iterator[Callable[[str], ServiceHost]]:
    made: list[ServiceHost] = []

    def make(name: str) -> ServiceHost:
        settings = NotifySettings(
            database_url=database(name),
            smtp_host="127.0.0.1",  # channels configured; nothing is sent in these tests
            smtp_sender="motcua@hoian.example.vn",
            sms_provider_a_url="http://127.0.0.1:9/",
            sms_provider_a_api_key="k",
            quiet_hours="",
        )
        host = ServiceHost(NotifyService, settings, overrides={"clock": lambda: NOW})
        host.migrate()
        service = host.service
        assert isinstance(service, NotifyService)
        service.set_opt_out(_ADMIN, OPTED_OUT, Channel.SMS, True)
        made.append(host)
        return host

    yield make
    for host in made:
        host.service.close()
        host.engine.dispose()


def _records() -> list[Event]:
    x = dossier()
    y = dossier(citizen_id=OPTED_OUT, phone="0905000111", email_address="y@example.vn")
    required = dossier(x.code, status=4)
    out = [
        submitted(x),
        payment_event(
            required, events.PAYMENT_REQUESTED, link="https://pay.example/x", payer=False
        ),
        submitted(y),
        status_changed(y, events.DOSSIER_RECEIVED),
    ]
    out.append(out[2])  # redelivered: nothing new
    return [_traced(ev, i + 1) for i, ev in enumerate(out)]


def _pairs(service: NotifyService, evs: list[Event]) -> list[tuple[Event, Any]]:
    """As the consumer hands them over: each payload parsed as its handler's message."""
    types = {h.event_type: h.message_type for h in service.handlers()}
    return [(ev, ev.parse(types[ev.type])) for ev in evs]


def _state(host: ServiceHost) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    n, s = notifications, dossier_snapshots
    with host.engine.connect() as conn:
        intents = conn.execute(
            select(n.c.id, n.c.channel, n.c.recipient, n.c.subject, n.c.body, n.c.state).order_by(
                n.c.id
            )
        ).all()
        snaps = conn.execute(select(s).order_by(s.c.dossier_code)).all()
    return [tuple(r) for r in intents], [tuple(r) for r in snaps]


class Statements:
    def __init__(self, host: ServiceHost) -> None:
        self.seen: list[str] = []
        sa_event.listen(host.engine, "before_cursor_execute", self.add)

    def add(self, _c: Any, _cur: Any, sql: str, *_a: Any) -> None:
        self.seen.append(" ".join(sql.split()).lower())

    def count(self, verb: str, table: str) -> int:
        return sum(1 for s in self.seen if s.startswith(verb) and f" {table}" in s)


def test_a_batch_records_what_the_events_one_by_one_record_with_one_statement_per_table(
    hosts: Callable[[str], ServiceHost],
) -> None:
    one, many = hosts("notify_one"), hosts("notify_many")
    single, batched = one.service, many.service
    assert isinstance(single, NotifyService) and isinstance(batched, NotifyService)
    records = _pairs(single, _records())
    for ev, message in records:
        with transaction(one.sessions) as session:
            handler = (
                single.on_payment_event
                if ev.type == events.PAYMENT_REQUESTED
                else single.on_dossier_event
            )
            handler(ev, message, session)
    statements = Statements(many)
    with transaction(many.sessions) as session:
        new = batched.on_events(records, session)
    sa_event.remove(many.engine, "before_cursor_execute", statements.add)
    assert _state(one) == _state(many)
    intents, _snaps = _state(many)
    assert len(new) == len(intents)
    by_channel = {(r[1], r[2]) for r in intents}
    # The payment event names no payer: its notice goes to the contact of the dossier event
    # before it in the same call.
    pay_link = [r for r in intents if "https://pay.example/x" in r[4]]
    assert pay_link and {r[2] for r in pay_link} >= {"thuha@example.vn"}
    # y opted out of SMS: e-mail only.
    assert ("email", "y@example.vn") in by_channel
    assert not any(r[1] == "sms" and r[2].endswith("000111") for r in intents)
    assert statements.count("insert", "notifications") == 1
    assert statements.count("select", "opt_outs") == 1
    assert statements.count("select", "dossier_snapshots") == 1
    assert statements.count("insert", "dossier_snapshots") == 1


def test_each_intent_of_a_batch_carries_its_own_events_trace(
    hosts: Callable[[str], ServiceHost],
) -> None:
    host = hosts("notify_trace")
    service = host.service
    assert isinstance(service, NotifyService)
    records = _pairs(service, _records())
    with transaction(host.sessions) as session:
        service.on_events(records, session)
    n = notifications
    with host.engine.connect() as conn:
        got = {
            r.event_id: r.trace_headers
            for r in conn.execute(select(n.c.event_id, n.c.trace_headers))
        }
    for ev, _m in records[1:4]:
        assert got[ev.id] == dict(ev.trace_headers), ev.type


def test_a_poison_record_fails_the_whole_call_and_writes_nothing(
    hosts: Callable[[str], ServiceHost],
) -> None:
    host = hosts("notify_poison")
    service = host.service
    assert isinstance(service, NotifyService)
    records = _pairs(service, _records())
    nameless = dossier()
    nameless.code = ""
    records.insert(2, _pairs(service, [submitted(nameless)])[0])
    with (
        pytest.raises(PermanentError, match="names no dossier"),
        transaction(host.sessions) as session,
    ):
        service.on_events(records, session)
    assert _state(host) == ([], [])
