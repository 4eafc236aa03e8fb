"""The outbox relay against the real broker and PostgreSQL/SQLite (ADR 0004, ADR 0011).

One SELECT and one UPDATE per batch; only the acknowledged prefix is marked when a send fails;
a commit wakes the relay at once (NOTIFY on PostgreSQL, in-process on SQLite) however long the
poll interval; one key's events stay in order; rows wait out a broker that is down.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, MetaData, Table, event, func, select

from harness import Kafka, Postgres, header, read_topic, wait_for
from motcua_kit.db import make_engine, session_factory, transaction
from motcua_kit.envelope import Event
from motcua_kit.kafka import ensure_topics, make_producer
from motcua_kit.outbox import Outbox, OutboxRelay, outbox_table
from motcua_kit.settings import ServiceSettings

pytestmark = pytest.mark.integration


@dataclass
class Rig:
    """One outbox database, its topic on the broker, and a relay factory."""

    engine: Engine
    table: Table
    outbox: Outbox
    topic: str
    service: str
    settings: ServiceSettings
    relays: list[OutboxRelay]

    def relay(self, **kwargs: Any) -> OutboxRelay:
        producer_opts = kwargs.pop("producer_opts", {})
        relay = OutboxRelay(
            self.service,
            session_factory(self.engine),
            self.table,
            lambda: make_producer(self.settings, **producer_opts),
            **kwargs,
        )
        self.relays.append(relay)
        return relay

    def add(self, key: str, n: int = 1, payload: bytes = b"\x08\x01") -> list[str]:
        """Commit ``n`` events for ``key`` in one transaction; their ids, in order."""
        ids = []
        with transaction(session_factory(self.engine)) as session:
            for _ in range(n):
                ev = Event(
                    id=str(uuid.uuid4()),
                    source="/motcua/test",
                    type="vn.gov.motcua.test.happened",
                    subject=key,
                    time=datetime.now(UTC),
                    data=payload,
                )
                self.outbox.add(session, self.topic, ev)
                ids.append(ev.id)
        return ids

    def unsent(self) -> int:
        with self.engine.connect() as conn:
            t = self.table
            return int(conn.scalar(select(func.count()).where(t.c.published_at.is_(None))) or 0)

    def published(self) -> list[Any]:
        return read_topic(self.settings.kafka_bootstrap, self.topic)


def _rig(url: str, kafka: Kafka) -> Rig:
    engine = make_engine(url)
    metadata = MetaData()
    table = outbox_table(metadata)
    metadata.create_all(engine)
    tag = uuid.uuid4().hex[:10]
    settings = ServiceSettings(service_name=f"relay-{tag}", kafka_bootstrap=kafka.bootstrap)
    topic = f"motcua.test.relay-{tag}.v1"
    ensure_topics(settings, [topic])  # three partitions: keys spread over them
    return Rig(engine, table, Outbox(table), topic, f"relay-{tag}", settings, [])


@pytest.fixture
def rig(database: Callable[[str], str], kafka: Kafka) -> Iterator[Rig]:
    made = _rig(database("outbox"), kafka)
    yield made
    for relay in made.relays:
        relay.stop(5)
    made.engine.dispose()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_is_read_with_one_select_and_marked_with_one_update(rig: Rig) -> None:
    ids = rig.add("HS-A", 250) + rig.add("HS-B", 200)
    statements: list[str] = []

    @event.listens_for(rig.engine, "before_cursor_execute")
    def _seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()).upper())

    relay = rig.relay(batch_size=200)
    assert [relay.publish_batch() for _ in range(4)] == [200, 200, 50, 0]
    event.remove(rig.engine, "before_cursor_execute", _seen)

    updates = [s for s in statements if s.startswith("UPDATE OUTBOX")]
    selects = [s for s in statements if s.startswith("SELECT OUTBOX.ID")]
    assert len(updates) == 3, updates  # one per batch, not one per row
    assert len(selects) == 4
    assert rig.unsent() == 0
    assert sorted(header(r, "ce_id").decode() for r in rig.published()) == sorted(ids)
    published = _sample("motcua_outbox_published_total", service=rig.service, topic=rig.topic)
    assert published == 450


def test_a_failed_send_marks_only_the_rows_before_it(rig: Rig) -> None:
    before = rig.add("HS-P", 5)
    too_big = rig.add("HS-P", 1, payload=b"x" * 2_000_000)  # over the producer's 1 MB limit
    after = rig.add("HS-P", 4)
    relay = rig.relay(batch_size=50)
    with pytest.raises(Exception, match=r"(?i)too large|size"):
        relay.publish_batch()
    with rig.engine.connect() as conn:
        t = rig.table
        sent = conn.execute(
            select(t.c.event_id).where(t.c.published_at.is_not(None)).order_by(t.c.id)
        ).scalars()
        assert list(sent) == before
    assert rig.unsent() == len(too_big) + len(after)
    assert [header(r, "ce_id").decode() for r in rig.published()] == before


def test_on_postgresql_a_commit_wakes_the_relay_long_before_the_poll_interval(
    postgres: Postgres, kafka: Kafka
) -> None:
    made = _rig(postgres.create_database("relay"), kafka)
    writer = make_engine(str(made.engine.url.render_as_string(hide_password=False)))
    try:
        relay = made.relay(poll_seconds=30.0)
        relay.start()
        wait_for(lambda: relay.listening, 10, 0.02, "relay LISTENing")
        for n in range(3):  # each time: the relay sleeps, a commit elsewhere wakes it
            other = Rig(writer, made.table, made.outbox, made.topic, "", made.settings, [])
            start = time.monotonic()
            other.add(f"HS-N{n}")
            wait_for(lambda: made.unsent() == 0, 5, 0.01, "row published")
            assert time.monotonic() - start < 3.0  # the poll interval is 30 s
        assert len(made.published()) == 3
        start = time.monotonic()
        assert relay.stop(5)  # the stop wakes it too: no waiting out the 30 s
        assert time.monotonic() - start < 3.0
    finally:
        for r in made.relays:
            r.stop(5)
        writer.dispose()
        made.engine.dispose()


def test_on_sqlite_a_commit_in_this_process_wakes_the_relay(tmp_path: Any, kafka: Kafka) -> None:
    made = _rig(f"sqlite:///{tmp_path}/outbox.db", kafka)
    try:
        relay = made.relay(poll_seconds=30.0)
        relay.start()
        made.add("HS-L")  # the first pass publishes it; then the relay sleeps
        wait_for(lambda: made.unsent() == 0, 10, 0.02, "first row published")
        for n in range(3):
            start = time.monotonic()
            made.add(f"HS-L{n}")
            wait_for(lambda: made.unsent() == 0, 5, 0.01, "row published")
            assert time.monotonic() - start < 3.0  # the poll interval is 30 s
        assert len(made.published()) == 4
        start = time.monotonic()
        assert relay.stop(5)
        assert time.monotonic() - start < 3.0
    finally:
        made.engine.dispose()


def test_one_keys_events_stay_in_order_over_many_rows_and_keys(rig: Rig) -> None:
    keys = [f"HS-K{i}" for i in range(7)]
    expected: dict[str, list[str]] = defaultdict(list)
    relay = rig.relay(batch_size=64, poll_seconds=0.05)
    relay.start()  # publishing while the writers commit

    lock = threading.Lock()

    def write(own: list[str]) -> None:
        for i in range(150):
            key = own[i % len(own)]
            ids = rig.add(key, 1 + i % 5)
            with lock:
                expected[key].extend(ids)

    # Each key has one writer, so its commits follow its ids (as a dossier's row lock makes
    # them in the services); two writers commit concurrently on disjoint keys.
    writers = [
        threading.Thread(target=write, args=(keys[:4],)),
        threading.Thread(target=write, args=(keys[4:],)),
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    total = sum(len(v) for v in expected.values())
    wait_for(lambda: rig.unsent() == 0, 60, 0.05, "outbox drained")
    records = rig.published()
    assert len(records) == total  # nothing lost, nothing twice
    got: dict[str, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        got[r.key.decode()].append(header(r, "ce_id").decode())
    assert dict(got) == dict(expected)
    assert len({r.partition for r in records}) > 1  # the keys did spread over partitions


def test_rows_wait_out_a_broker_that_is_down_and_go_out_after(
    database: Callable[[str], str], own_kafka: Kafka
) -> None:
    made = _rig(database("outbox"), own_kafka)
    try:
        relay = made.relay(
            poll_seconds=0.05, send_timeout=3.0, producer_opts={"max_block_ms": 2_000}
        )
        relay.start()
        first = made.add("HS-W", 1)
        wait_for(lambda: made.unsent() == 0, 30, 0.05, "first row published")
        own_kafka.stop()
        errors = _sample("motcua_outbox_publish_errors_total", service=made.service)
        ids = made.add("HS-W", 10) + made.add("HS-X", 10)
        wait_for(
            lambda: _sample("motcua_outbox_publish_errors_total", service=made.service) > errors,
            30,
            0.1,
            "a failed attempt",
        )
        assert made.unsent() == 20
        wait_for(
            lambda: (
                _sample("motcua_outbox_backlog", service=made.service) == 20
                and _sample("motcua_outbox_oldest_pending_seconds", service=made.service) > 0
            ),
            10,
            0.1,
            "backlog gauges while the broker is down",
        )
        own_kafka.start()
        wait_for(lambda: made.unsent() == 0, 90, 0.2, "rows published after the restart")
        wait_for(
            lambda: _sample("motcua_outbox_backlog", service=made.service) == 0, 10, 0.1, "gauge"
        )
        records = sorted(made.published(), key=lambda r: (r.partition, r.offset))
        assert {header(r, "ce_id").decode() for r in records} == {*first, *ids}
        for key in ("HS-W", "HS-X"):  # first arrivals, per key, in commit order
            seen: list[str] = []
            for r in records:
                ce_id = header(r, "ce_id").decode()
                if r.key.decode() == key and ce_id in ids and ce_id not in seen:
                    seen.append(ce_id)
            assert seen == [i for i in ids if i in set(seen)]
            assert len(seen) == 10
    finally:
        for r in made.relays:
            r.stop(5)
        made.engine.dispose()
