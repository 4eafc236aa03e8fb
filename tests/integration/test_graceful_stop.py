"""Each service, busy, stops on SIGTERM within its configured grace and exits 0.

Every service runs as its own process on a broker of this module's own (the bursts are load
other tests would read) and a PostgreSQL database. Each is kept busy the way it is in
production — a burst of events its consumer is working through, gRPC calls in flight, a timer
sending through slow providers — then gets SIGTERM. The whole stop (gRPC drained, consumers
committed and out of their group, timers finished, relay flushed, process gone) must take at
most ``SHUTDOWN_GRACE_SECONDS`` plus a small margin for the process to exit, and end with
status 0: nothing abandoned. See docs/adr/0010-one-shutdown-deadline.md.
"""

from __future__ import annotations

import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from kafka import KafkaProducer

from dossier_client import DossierClient, submit_request
from harness import Kafka, Postgres, ServiceProcess, free_port, wait_for
from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua_kit.envelope import Event, encode
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.testing import payment_requested_event
from notify_providers import dossier, notify_env, payment_event, providers, submitted

pytestmark = pytest.mark.integration

GRACE = 5.0
EXIT_MARGIN = 3.0  # the interpreter starting to exit, the OS reaping it, a loaded machine
BURST = 3000


@pytest.fixture(scope="module")
def busy_kafka() -> Iterator[Kafka]:
    state = Path(tempfile.mkdtemp(prefix="motcua-stop-kafka-"))
    broker = Kafka(state_dir=state)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def start(
    busy_kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    tmp_path: Path,
) -> Iterator[Callable[..., ServiceProcess]]:
    made: list[ServiceProcess] = []

    def make(name: str, **env: str) -> ServiceProcess:
        base = {
            "DATABASE_URL": postgres.create_database(name),
            "KAFKA_BOOTSTRAP": busy_kafka.bootstrap,
            "JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
            "CONSUMER_GROUP": f"motcua-{name}-{uuid.uuid4().hex[:8]}",
            "OUTBOX_POLL_SECONDS": "0.05",
            "SHUTDOWN_GRACE_SECONDS": str(GRACE),
            "LOG_LEVEL": "INFO",
            **env,
        }
        prefix = f"MOTCUA_{name.upper()}_"
        proc = ServiceProcess(name, {prefix + k: v for k, v in base.items()}, tmp_path)
        made.append(proc)
        return proc.start()

    yield make
    for proc in made:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)


# -- load --------------------------------------------------------------------------------------
def burst(kafka: Kafka, topic: str, events: Callable[[int], Event], count: int = BURST) -> None:
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0), linger_ms=5)
    try:
        for i in range(count):
            record = encode(events(i))
            producer.send(topic, key=record.key, value=record.value, headers=record.headers)
        producer.flush(60)
    finally:
        producer.close()


@dataclass
class CallLoad:
    """``threads`` clients calling one RPC in a loop until stopped; counts what is in flight."""

    call: Callable[[int], Any]
    threads: int = 6
    ok: int = 0
    in_flight: int = 0
    errors: list[grpc.StatusCode] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> CallLoad:
        for n in range(self.threads):
            t = threading.Thread(target=self._loop, args=(n,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def _loop(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            with self._lock:
                self.in_flight += 1
            try:
                self.call(n * 1_000_000 + i)
                with self._lock:
                    self.ok += 1
            except grpc.RpcError as exc:
                self.errors.append(exc.code())
                self._stop.wait(0.05)  # the server is going away; do not spin
            finally:
                with self._lock:
                    self.in_flight -= 1

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(35)


def metric(proc: ServiceProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    body = httpx.get(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5).text
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", body, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def consumed(proc: ServiceProcess) -> float:
    return metric(proc, "motcua_events_consumed_total", service=proc.name)


def sigterm_and_time(proc: ServiceProcess, busy: Callable[[], str]) -> tuple[float, int, str]:
    """SIGTERM ``proc`` while ``busy()`` (evidence, for the message) says it is; time the exit."""
    assert proc.proc is not None
    evidence = busy()
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    try:
        code = proc.proc.wait(GRACE + EXIT_MARGIN + 30)  # far past the bound: measure, not hang
    except Exception:
        proc.proc.kill()
        proc.proc.wait(10)
        raise
    return time.monotonic() - started, code, evidence


def assert_stopped_in_grace(proc: ServiceProcess, elapsed: float, code: int, evidence: str) -> None:
    log = proc.log_tail(200)
    assert code == 0, f"{proc.name} exited {code} after {elapsed:.1f}s ({evidence})\n{log}"
    assert elapsed <= GRACE + EXIT_MARGIN, (
        f"{proc.name} took {elapsed:.1f}s to stop, grace {GRACE}s ({evidence})\n{log}"
    )
    assert "service stopped" in log and "abandon" not in log, log


# -- the four services -----------------------------------------------------------------------------
def test_audit_stops_in_grace_while_consuming_a_burst_and_recording_access(
    busy_kafka: Kafka, start: Callable[..., ServiceProcess], token: Callable[..., str]
) -> None:
    burst(
        busy_kafka,
        "motcua.payment.v1",
        lambda i: payment_event(dossier(), "vn.motcua.payment.requested.v1"),
    )
    audit = start("audit", TREE_HEAD_INTERVAL_SECONDS="3600", SELF_CHECK_INTERVAL_SECONDS="0.2")
    officer = [("authorization", f"Bearer {token('officer', agency='STP')}")]
    channel = grpc.insecure_channel(audit.target)
    stub = audit_pb2_grpc.AuditServiceStub(channel)

    def record(i: int) -> None:
        stub.RecordAccess(
            audit_pb2.RecordAccessRequest(
                record_id=f"r-{uuid.uuid4()}",
                citizen_id="079203004567",
                dossier_code="STP-261129-0001",
                purpose="Thẩm định hồ sơ",
                resource="applicant",
            ),
            metadata=officer,
            timeout=30,
        )

    load = CallLoad(record).start()
    try:
        try:
            wait_for(lambda: consumed(audit) >= 50 and load.ok >= 20, 90, 0.1, "audit busy")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: consumed {consumed(audit)}, calls ok {load.ok}, "
                f"errors {load.errors[-5:]}\n{audit.log_tail(80)}"
            ) from None

        def busy() -> str:
            left = BURST - consumed(audit)
            assert left > 0, "the burst was consumed before SIGTERM: not a busy stop"
            return f"{left:.0f} events still to consume, {load.in_flight} calls in flight"

        elapsed, code, evidence = sigterm_and_time(audit, busy)
    finally:
        load.stop()
        channel.close()
    assert_stopped_in_grace(audit, elapsed, code, evidence)


def test_dossier_stops_in_grace_with_submissions_in_flight(
    start: Callable[..., ServiceProcess], token: Callable[..., str]
) -> None:
    service = start("dossier")
    client = DossierClient(service.target, token("citizen", citizen_id="079203004567"))
    load = CallLoad(lambda i: client.submit(submit_request("HT-001", f"k-{uuid.uuid4()}"))).start()
    try:
        wait_for(lambda: load.ok >= 30, 90, 0.1, "dossier busy")
        elapsed, code, evidence = sigterm_and_time(
            service, lambda: f"{load.in_flight} submissions in flight, {load.ok} done"
        )
    finally:
        load.stop()
        client.close()
    assert_stopped_in_grace(service, elapsed, code, evidence)


def test_payment_stops_in_grace_while_opening_a_burst_of_fee_requests(
    busy_kafka: Kafka, start: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    secret = "stop-test-hash-secret-0123456789ab"
    secret_file = tmp_path / "gateway.secret"
    secret_file.write_text(secret)
    callback_port = free_port()
    ipn = f"http://127.0.0.1:{callback_port}/payment/sandbox/ipn"
    with SandboxGateway(merchants=[Merchant("MOTCUA01", secret.encode(), ipn)]) as sandbox:
        burst(
            busy_kafka,
            "motcua.dossier.v1",
            lambda i: payment_requested_event(
                f"SXD-260316-{uuid.uuid4().hex[:8].upper()}", "SXD", 8000
            ),
        )
        payment = start(
            "payment",
            GATEWAY_BASE_URL=sandbox.url,
            GATEWAY_MERCHANT_CODE="MOTCUA01",
            GATEWAY_HASH_SECRET_FILE=str(secret_file),
            CALLBACK_PORT=str(callback_port),
        )
        wait_for(lambda: consumed(payment) >= 50, 90, 0.1, "payment busy")

        def busy() -> str:
            left = metric(payment, "motcua_consumer_lag", service="payment")
            return f"{consumed(payment):.0f} consumed, lag {left:.0f}"

        elapsed, code, evidence = sigterm_and_time(payment, busy)
    assert_stopped_in_grace(payment, elapsed, code, evidence)


def test_notify_stops_in_grace_while_sending_through_slow_providers(
    busy_kafka: Kafka, start: Callable[..., ServiceProcess]
) -> None:
    with providers() as (smtp, sms_a, sms_b):
        sms_a.behave(delay=0.4)  # sends are in flight when the signal comes
        burst(busy_kafka, "motcua.dossier.v1", lambda i: submitted(dossier()), count=600)
        notify = start("notify", **notify_env(smtp, sms_a, sms_b))
        wait_for(lambda: consumed(notify) >= 20 and sms_a.received(), 90, 0.1, "notify busy")
        elapsed, code, evidence = sigterm_and_time(
            notify,
            lambda: f"{consumed(notify):.0f} consumed, {len(sms_a.received())} SMS sent so far",
        )
    assert_stopped_in_grace(notify, elapsed, code, evidence)
    # What it had claimed but not yet sent went back to the queue with the stop: no lease
    # left to run out first, so the next sender (another replica, this one restarted) takes it.
    import psycopg

    url = notify.env["MOTCUA_NOTIFY_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn:
        (held,) = conn.execute(
            "SELECT count(*) FROM notifications"
            " WHERE state = 'sending' AND provider_ref = '' AND lease_until > now()"
        ).fetchone()
    assert held == 0, f"{held} unsent messages keep a lease after the stop"


def test_a_stuck_component_is_abandoned_at_the_deadline_and_the_exit_says_so(
    start: Callable[..., ServiceProcess], tmp_path: Path, token: Callable[..., str]
) -> None:
    """A gRPC call that never finishes (its database is locked) cannot hold the process."""
    import psycopg

    audit = start("audit", TREE_HEAD_INTERVAL_SECONDS="3600")
    url = audit.env["MOTCUA_AUDIT_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    officer = [("authorization", f"Bearer {token('officer', agency='STP')}")]
    with psycopg.connect(url) as conn, grpc.insecure_channel(audit.target) as channel:
        conn.execute("LOCK TABLE audit_entries IN ACCESS EXCLUSIVE MODE")
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        call = stub.RecordAccess.future(
            audit_pb2.RecordAccessRequest(
                record_id=f"r-{uuid.uuid4()}",
                dossier_code="STP-261129-0001",
                purpose="Thẩm định hồ sơ",
                resource="applicant",
            ),
            metadata=officer,
            timeout=60,
        )
        wait_for(lambda: _waiting_on_lock(url), 30, 0.1, "the call to wait on the lock")
        elapsed, code, _ = sigterm_and_time(audit, lambda: "one call blocked on a lock")
        conn.rollback()
        assert call.exception() is not None
    log = audit.log_tail(400)
    assert code == 0, log  # stopped by the deadline; the abandoned call is only logged
    assert elapsed <= GRACE + EXIT_MARGIN, f"{elapsed:.1f}s\n{log}"
    assert "abandoning grpc" in log and "record_access" in log, log  # with the handler's stack


def _waiting_on_lock(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0] > 0)
