"""Audit's batch handler (ADR 0012, ADR 0046) on SQLite: a batch of consumed events becomes the
same entries as the per-event handler would make one by one, staged with one insert."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import events_pb2
from motcua_audit.adapters import db
from motcua_audit.adapters.keys import LazyKeyRing
from motcua_audit.service import AuditService
from motcua_audit.settings import AuditSettings
from motcua_kit.db import transaction
from motcua_kit.envelope import EnvelopeError, Event
from motcua_kit.service import ServiceHost

TOPICS = ("motcua.dossier.v1", "motcua.payment.v1", "motcua.notify.v1")


class SteppingClock:
    """One millisecond per reading, from the same start in every host: equal entries."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def _events(n: int, source: str = "/motcua/dossier") -> list[Event]:
    out = []
    for i in range(n):
        out.append(
            Event.new(
                source=source,
                type="vn.motcua.dossier.received.v1",
                subject=f"STP-261129-{i:04d}",
                message=events_pb2.DossierStatusChanged(
                    action="receive",
                    actor=common_pb2.Actor(
                        subject=f"officer-{i}", role=common_pb2.ROLE_OFFICER, agency_code="STP"
                    ),
                ),
            )
        )
    return out


def _host(tmp_path: Path, settings: AuditSettings, name: str) -> ServiceHost:
    s = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path}/{name}.db"})
    host = ServiceHost(
        AuditService, s, overrides={"clock": SteppingClock(), "keys": LazyKeyRing(s)}
    )
    host.migrate()
    return host


def _log(host: ServiceHost) -> tuple[list[bytes], bytes]:
    with host.sessions() as session:
        size = db.AuditLogRepository.size(session)
        stored = db.AuditLogRepository.range(session, 0, size)
        return [s.canonical for s in stored], db.AuditLogRepository.log(session).root(size)


def test_every_handler_is_declared_with_a_batch_function(service: AuditService) -> None:
    handlers = service.handlers()
    assert {h.topic for h in handlers} == set(TOPICS)
    assert all(h.batch is not None for h in handlers)


def test_a_batch_gives_the_entries_of_one_by_one_with_one_staging_insert(
    tmp_path: Path, settings: AuditSettings
) -> None:
    one, many = _host(tmp_path, settings, "one"), _host(tmp_path, settings, "many")
    try:
        per_topic = {t: _events(30, f"/motcua/{t.split('.')[1]}") for t in TOPICS}
        by_topic = {h.topic: h for h in one.service.handlers()}
        for topic, events in per_topic.items():
            with transaction(one.sessions) as session:
                for ev in events:
                    by_topic[topic].fn(ev, None, session)
        statements: list[str] = []
        event.listen(
            many.engine, "before_cursor_execute", lambda *a: statements.append(a[2].lower())
        )
        by_topic = {h.topic: h for h in many.service.handlers()}
        for topic, events in per_topic.items():
            with transaction(many.sessions) as session:
                batch = by_topic[topic].batch
                assert batch is not None
                batch([(ev, None) for ev in events], session)
        staging = [s for s in statements if s.startswith("insert") and "staged" in s]
        assert len(staging) == len(TOPICS)  # one per batch (SQLite: one executemany)
        for host in (one, many):
            assert isinstance(host.service, AuditService)
            assert host.service.sequence_staged() == 3 * 30
        assert _log(one) == _log(many)  # byte for byte, root included
    finally:
        one.engine.dispose()
        many.engine.dispose()


def test_a_dossier_payload_that_does_not_parse_fails_the_whole_batch(
    service: AuditService, host: ServiceHost
) -> None:
    events = _events(5)
    events[2] = replace(events[2], data=b"\xff\xff not a DossierStatusChanged")
    [dossier] = [h for h in service.handlers() if h.topic == "motcua.dossier.v1"]
    assert dossier.batch is not None
    with pytest.raises(EnvelopeError), transaction(host.sessions) as session:
        dossier.batch([(ev, None) for ev in events], session)
    with host.sessions() as session:
        assert db.AuditLogRepository.staged_count(session) == 0  # the runner falls back
