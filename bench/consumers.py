"""Each service's consumer against raw kafka-python, and one replica against two.

For audit, notify and payment: the service (a process, on PostgreSQL) starts with a consumer
group positioned at the end of the topic; once it has joined, N events of a type it handles are
produced, and the rate is N over the time from its first inbox row to its last. Raw
kafka-python reads N such records with no work, timed from its first batch to its last. Then
the same with two replicas of the service in one consumer group. (The dossier service's only
consumer takes payment results for dossiers it has; left out.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import create_engine, text

from harness import Kafka, Postgres, ServiceProcess, free_port, wait_for
from motcua.dossier.v1 import events_pb2
from motcua_kit.envelope import Event, encode
from motcua_payment.sandbox import Merchant, SandboxGateway
from motcua_payment.testing import payment_requested_event
from notify_providers import dossier, fresh_group, notify_env, providers

N = 1500


def _produce(kafka: Kafka, topic: str, events: list[Event]) -> None:
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0), linger_ms=5)
    for event in events:
        record = encode(event)
        producer.send(topic, key=record.key, value=record.value, headers=record.headers)
    producer.flush()
    producer.close()


def _raw_rate(kafka: Kafka, topic: str, group: str, total: int) -> float:
    """Records per second a bare kafka-python consumer reads, first record to last."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[kafka.bootstrap],
        api_version=(4, 0),
        group_id=group,
        enable_auto_commit=False,
    )
    seen, first, t0 = 0, 0, 0.0
    while seen < total:
        for batch in consumer.poll(timeout_ms=200).values():
            if not seen:
                first, t0 = len(batch), time.perf_counter()
            seen += len(batch)
    rate = (total - first) / max(time.perf_counter() - t0, 1e-9)
    consumer.close()
    return rate


def _group_stable(kafka: Kafka, group: str, members: int) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    try:
        described = admin.describe_groups([group]).get(group) or {}
    finally:
        admin.close()
    return bool(
        described.get("group_state") == "Stable" and len(described.get("members", [])) == members
    )


def _service_rate(
    console: Console,
    kafka: Kafka,
    make: Callable[[str], ServiceProcess],
    url: str,
    group: str,
    replicas: int,
    produce: Callable[[], None],
    label: str,
) -> float:
    """Events per second the service's consumers handle, first inbox row to last.

    The replicas start and join the group before the events are produced, so neither start-up
    nor a rebalance is in the figure; the producer outruns every consumer measured here.
    """
    procs = [make(group) for _ in range(replicas)]
    engine = create_engine(url)
    try:
        for p in procs:
            p.start()
        wait_for(lambda: _group_stable(kafka, group, replicas), 120, 0.5, f"{label} joined")
        produce()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(label, total=N)
            done = 0
            deadline = time.monotonic() + 600
            while done < N:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{label}: {done} of {N} events handled in 600 s"
                        " (a dead-lettered event never lands in the inbox)"
                    )
                with engine.connect() as conn:
                    done = int(
                        conn.execute(
                            text("SELECT count(*) FROM inbox WHERE consumer_group = :g"),
                            {"g": group},
                        ).scalar_one()
                    )
                progress.update(task, completed=done)
                time.sleep(0.05)
        with engine.connect() as conn:
            first, last = conn.execute(
                text(
                    "SELECT min(processed_at), max(processed_at) FROM inbox"
                    " WHERE consumer_group = :g"
                ),
                {"g": group},
            ).one()
        return (N - 1) / max((last - first).total_seconds(), 1e-9)
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.terminate()
        engine.dispose()


def run(
    console: Console,
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    folder: Path,
) -> list[tuple[str, str, float]]:
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, float]] = []
    base = {
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "JWT_PUBLIC_KEY_FILE": str(signing_keys[1]),
        "LOG_LEVEL": "WARNING",
    }
    secret = folder / "gateway.secret"
    secret.write_text("bench-gateway-secret-0123456789")
    callback = free_port()
    with (
        providers() as (smtp, sms_a, sms_b),
        SandboxGateway(
            merchants=[
                Merchant(
                    "MOTCUA01",
                    secret.read_bytes(),
                    f"http://127.0.0.1:{callback}/payment/sandbox/ipn",
                )
            ]
        ) as sandbox,
    ):

        def audit_events(run: str) -> list[Event]:
            return [
                Event.new(
                    source="/bench",
                    type="vn.motcua.dossier.submitted.v1",
                    subject=f"STP-{run}-{i:04d}",
                    message=events_pb2.DossierSubmitted(dossier=dossier(f"STP-{run}-{i:04d}")),
                )
                for i in range(N)
            ]

        def notify_events(run: str) -> list[Event]:
            return [
                Event.new(
                    source="/bench",
                    type="vn.motcua.dossier.submitted.v1",
                    subject=f"PHOIAN-{run}-{i:04d}",
                    message=events_pb2.DossierSubmitted(
                        dossier=dossier(f"PHOIAN-{run}-{i:04d}", email_address=f"b{i}@x.vn")
                    ),
                )
                for i in range(N)
            ]

        def payment_events(run: str) -> list[Event]:
            return [payment_requested_event(f"STP-{run}-{i:04d}", "STP", 8000) for i in range(N)]

        cases: dict[str, tuple[Callable[[str], list[Event]], dict[str, str]]] = {
            "audit": (audit_events, {}),
            # Sending is paused (hourly tick): the figure is the consumer's, not the SMTP's.
            "notify": (
                notify_events,
                {**notify_env(smtp, sms_a, sms_b), "DISPATCH_INTERVAL_SECONDS": "3600"},
            ),
            "payment": (
                payment_events,
                {
                    "GATEWAY_BASE_URL": sandbox.url,
                    "GATEWAY_HASH_SECRET_FILE": str(secret),
                    "CALLBACK_PORT": str(callback),
                },
            ),
        }
        topic = "motcua.dossier.v1"
        for name, (events_for, extra) in cases.items():
            one = 0.0
            for replicas in (1, 2):
                url = postgres.create_database(f"bench_{name}_{replicas}")
                group = fresh_group(kafka.bootstrap, (topic,))
                events = events_for(f"{replicas}{uuid.uuid4().hex[:4]}".upper())

                def make(
                    group: str, name: str = name, url: str = url, extra: dict[str, str] = extra
                ) -> ServiceProcess:
                    prefix = f"MOTCUA_{name.upper()}_"
                    env = {**base, **extra, "DATABASE_URL": url, "CONSUMER_GROUP": group}
                    for port in ("RECEIPTS_PORT", "CALLBACK_PORT"):  # one per replica
                        if port in env:
                            env[port] = str(free_port())
                    return ServiceProcess(name, {prefix + k: v for k, v in env.items()}, folder)

                label = f"{name} consumer, {replicas} replica(s)"
                rate = _service_rate(
                    console,
                    kafka,
                    make,
                    url,
                    group,
                    replicas,
                    partial(_produce, kafka, topic, events),
                    label,
                )
                if replicas == 1:
                    one = rate
                    raw_group = fresh_group(kafka.bootstrap, (topic,))
                    _produce(kafka, topic, events_for(f"RAW{uuid.uuid4().hex[:4]}".upper()))
                    raw = _raw_rate(kafka, topic, raw_group, N)
                    rows.append(
                        (
                            f"{name} consumer rate vs raw kafka-python consume",
                            f"{rate:.0f}/s vs {raw:.0f}/s",
                            rate / raw,
                        )
                    )
                else:
                    rows.append(
                        (
                            f"{name} consumer, two replicas vs one (same group)",
                            f"{rate:.0f}/s vs {one:.0f}/s",
                            rate / one,
                        )
                    )
    return rows
