"""`make bench`: each figure measured in one run, as a ratio against the bare stack.

1. SubmitDossier vs a bare grpcio unary echo server: same payload size, same concurrency;
   throughput and p50/p99 latency.
2. Outbox relay publish rate vs raw kafka-python produce (idempotent, acks=all, same records).
3. Consumer runner rate (decode + inbox transaction + handler) vs raw kafka-python consume.

A real broker is started on free loopback ports for the run and stopped after it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path

import grpc
from rich.console import Console
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from harness import Kafka, Postgres, ServiceProcess  # noqa: E402
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc, events_pb2  # noqa: E402
from motcua_kit.auth import generate_signing_key, mint_token  # noqa: E402

console = Console()


# -- load generation ------------------------------------------------------------------------
def drive(
    call: Callable[[int], None], total: int, concurrency: int, label: str
) -> dict[str, float]:
    """Run ``call(i)`` ``total`` times over ``concurrency`` threads; rate and percentiles."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)

        def worker() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                call(i)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                progress.advance(task)

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rate": total / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def _request(i: int) -> dossier_pb2.SubmitDossierRequest:
    return dossier_pb2.SubmitDossierRequest(
        procedure_code="HT-004",
        applicant=dossier_pb2.Applicant(
            full_name="Nguyễn Thị Thu Hà",
            citizen_id="079203004567",
            phone="0905123456",
            email="thuha@example.vn",
            address="12 Trần Phú, phường Hội An, thành phố Đà Nẵng",
        ),
        documents=[
            dossier_pb2.Document(
                name="Tờ khai", media_type="application/pdf", size_bytes=1000, sha256="ab" * 32
            )
        ],
        channel=dossier_pb2.CHANNEL_ONLINE,
        idempotency_key=f"bench-{i}-{uuid.uuid4().hex[:8]}",
    )


# -- 1. gRPC intake vs bare echo -----------------------------------------------------------------
def _echo_server() -> tuple[grpc.Server, int]:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def bench_intake(kafka: Kafka, workdir: Path, total: int, concurrency: int) -> dict[str, dict]:
    private_pem, public_pem = generate_signing_key()
    key_file = workdir / "jwt.pem"
    key_file.write_bytes(public_pem)
    token = mint_token(private_pem, "bench", ["service"])
    proc = ServiceProcess(
        "dossier",
        {
            "MOTCUA_DOSSIER_DATABASE_URL": f"sqlite:///{workdir}/dossier.db",
            "MOTCUA_DOSSIER_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MOTCUA_DOSSIER_JWT_PUBLIC_KEY_FILE": str(key_file),
            "MOTCUA_DOSSIER_LOG_LEVEL": "WARNING",
        },
        workdir,
    )
    proc.start()
    try:
        channel = grpc.insecure_channel(proc.target)
        stub = dossier_pb2_grpc.DossierServiceStub(channel)
        md = [("authorization", f"Bearer {token}")]
        payload_size = _request(0).ByteSize()
        for i in range(20):  # warm-up
            stub.SubmitDossier(_request(10_000_000 + i), metadata=md, timeout=30)
        intake = drive(
            lambda i: stub.SubmitDossier(_request(i), metadata=md, timeout=30),
            total,
            concurrency,
            "SubmitDossier",
        )
        server, port = _echo_server()
        echo_channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        echo = echo_channel.unary_unary("/bench.Echo/Echo")
        body = os.urandom(payload_size)
        for _ in range(20):
            echo(body, timeout=10)
        bare = drive(lambda i: echo(body, metadata=md, timeout=10), total, concurrency, "bare echo")
        server.stop(1)
        channel.close()
        echo_channel.close()
    finally:
        proc.terminate()
    return {"intake": intake, "bare": bare, "payload_bytes": {"size": payload_size}}


# -- 2. outbox relay vs raw produce ----------------------------------------------------------------
def bench_relay(kafka: Kafka, workdir: Path, total: int) -> dict[str, float]:
    from kafka import KafkaProducer

    from motcua_dossier.adapters.db import metadata, outbox
    from motcua_kit.db import make_engine, session_factory
    from motcua_kit.envelope import Event, encode
    from motcua_kit.kafka import make_producer
    from motcua_kit.outbox import Outbox, OutboxRelay
    from motcua_kit.settings import ServiceSettings

    topic = f"bench.relay.{uuid.uuid4().hex[:6]}"
    raw_topic = topic + ".raw"
    engine = make_engine(f"sqlite:///{workdir}/relay.db")
    metadata.create_all(engine)
    sessions = session_factory(engine)
    box = Outbox(outbox)
    msg = events_pb2.DossierSubmitted(
        dossier=dossier_pb2.Dossier(code="STP-261129-0001", applicant=_request(0).applicant)
    )
    events = [
        Event.new(
            source="/bench", type="vn.motcua.bench.v1", subject=f"STP-261129-{i:04d}", message=msg
        )
        for i in range(total)
    ]
    with sessions() as s, s.begin():
        for e in events:
            box.add(s, topic, e)
    settings = ServiceSettings(kafka_bootstrap=kafka.bootstrap, service_name="bench")
    relay = OutboxRelay("bench", sessions, outbox, lambda: make_producer(settings), batch_size=500)
    t0 = time.perf_counter()
    while relay.publish_batch():
        pass
    relay_rate = total / (time.perf_counter() - t0)
    relay.stop()

    records = [encode(e) for e in events]
    producer: KafkaProducer = make_producer(settings)
    t0 = time.perf_counter()
    for r in records:
        producer.send(raw_topic, key=r.key, value=r.value, headers=r.headers)
    producer.flush()
    raw_rate = total / (time.perf_counter() - t0)
    producer.close()
    engine.dispose()
    return {"relay": relay_rate, "raw": raw_rate, "topic": topic}  # type: ignore[dict-item]


# -- 3. consumer runner vs raw consume ------------------------------------------------------------
def bench_consumer(kafka: Kafka, workdir: Path, topic: str, total: int) -> dict[str, float]:
    from sqlalchemy import MetaData, func, select

    from motcua_kit.consumer import ConsumerRunner, Handler, inbox_table
    from motcua_kit.db import make_engine, session_factory
    from motcua_kit.kafka import make_consumer, make_producer
    from motcua_kit.settings import ServiceSettings

    settings = ServiceSettings(kafka_bootstrap=kafka.bootstrap, service_name="bench")
    md = MetaData()
    inbox = inbox_table(md)
    engine = make_engine(f"sqlite:///{workdir}/consumer.db")
    md.create_all(engine)
    sessions = session_factory(engine)
    handled = [0]

    def handle(event: object, message: object, session: object) -> None:
        handled[0] += 1

    runner = ConsumerRunner(
        "bench",
        f"bench-{uuid.uuid4().hex[:6]}",
        [Handler(topic, "*", handle, events_pb2.DossierSubmitted)],
        sessions,
        inbox,
        lambda g: make_consumer(settings, g),
        lambda: make_producer(settings),
    )
    t0 = time.perf_counter()
    runner.start()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("consumer runner", total=total)
        while True:
            with sessions() as s:
                done = s.scalar(select(func.count()).select_from(inbox)) or 0
            progress.update(task, completed=done)
            if done >= total:
                break
            time.sleep(0.05)
    runner_rate = total / (time.perf_counter() - t0)
    runner.stop()

    consumer = make_consumer(settings, f"bench-raw-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    seen = 0
    t0 = time.perf_counter()
    while seen < total:
        for batch in consumer.poll(timeout_ms=200).values():
            seen += len(batch)
    consumer.commit()
    raw_rate = total / (time.perf_counter() - t0)
    consumer.close()
    engine.dispose()
    return {"runner": runner_rate, "raw": raw_rate}


# -- report ---------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument("--skip-consumers", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="motcua-bench-"))
    kafka = Kafka(state_dir=workdir / "kafka")
    kafka.start()
    postgres = Postgres()
    extra: list[tuple[str, str, float]] = []
    try:
        intake = bench_intake(kafka, workdir, args.requests, args.concurrency)
        relay = bench_relay(kafka, workdir, args.events)
        consumer = bench_consumer(kafka, workdir, str(relay["topic"]), args.events)
        if not args.skip_pipeline:
            from bench import pipeline

            postgres.start()
            private_pem, public_pem = generate_signing_key()
            key_file = workdir / "jwt-pipeline.pem"
            key_file.write_bytes(public_pem)

            def token(*roles: str, citizen_id: str = "", agency: str = "") -> str:
                return mint_token(private_pem, "bench", roles, citizen_id=citizen_id, agency=agency)

            extra += pipeline.run(
                console, kafka, postgres, (private_pem, key_file), token, workdir / "suite"
            )
        if not args.skip_consumers:
            from bench import consumers

            postgres.start()
            _, public_pem = generate_signing_key()
            key_file = workdir / "jwt-consumers.pem"
            key_file.write_bytes(public_pem)
            extra += consumers.run(console, kafka, postgres, (b"", key_file), workdir / "cons")
        if not args.skip_audit:
            from bench import audit

            extra += audit.run(console)
    finally:
        kafka.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    i, b = intake["intake"], intake["bare"]
    rows = [
        (
            "SubmitDossier throughput vs bare grpcio echo",
            f"{i['rate']:.0f}/s vs {b['rate']:.0f}/s",
            i["rate"] / b["rate"],
        ),
        (
            "SubmitDossier p50 latency vs bare echo",
            f"{i['p50_ms']:.2f} ms vs {b['p50_ms']:.2f} ms",
            i["p50_ms"] / b["p50_ms"],
        ),
        (
            "SubmitDossier p99 latency vs bare echo",
            f"{i['p99_ms']:.2f} ms vs {b['p99_ms']:.2f} ms",
            i["p99_ms"] / b["p99_ms"],
        ),
        (
            "outbox relay publish rate vs raw kafka-python produce",
            f"{relay['relay']:.0f}/s vs {relay['raw']:.0f}/s",
            relay["relay"] / relay["raw"],
        ),
        (
            "consumer runner rate vs raw kafka-python consume",
            f"{consumer['runner']:.0f}/s vs {consumer['raw']:.0f}/s",
            consumer["runner"] / consumer["raw"],
        ),
    ]
    lines = ["| measure | motcua vs bare | ratio |", "|---|---|---|"]
    lines += [f"| {name} | {detail} | **{ratio:.3f}** |" for name, detail, ratio in rows]
    lines += [f"| {name} | {detail} | **{ratio:.3f}** |" for name, detail, ratio in extra]
    table = "\n".join(lines)
    console.print(table)
    if args.write:
        args.write.write_text(_report(args, intake, table))


def _report(args: argparse.Namespace, intake: dict[str, dict], table: str) -> str:
    from bench.consumers import N as consumer_events

    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    machine = (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, "
        f"{memory_gib:.0f} GiB, Python {platform.python_version()}"
    )
    command = (
        f"python -m bench.run --requests {args.requests} --concurrency {args.concurrency} "
        f"--events {args.events} --write docs/benchmarks.md"
    )
    size = intake["payload_bytes"]["size"]
    return f"""# Benchmarks

Each figure is measured in one run against the bare stack on the same machine, so the ratio
is what matters, not the absolute rate. Produced by:

```sh
make bench   # {command}
```

Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}; single-node Kafka (KRaft) on
loopback; dossier on SQLite; SubmitDossier payload {size} bytes, {args.concurrency} concurrent
clients; {args.events} events for the relay and consumer figures.

{table}

What the ratios include: SubmitDossier pays for JWT verification, validation, NFC
normalisation, one database transaction (dossier row, daily sequence, outbox row) and the
interceptors; the relay pays for reading and marking outbox rows in the database; the runner
pays for decoding the CloudEvent, parsing the protobuf payload and one inbox transaction per
event. On SQLite, concurrent writers queue on the database lock, which is what the intake p99
shows; production runs on PostgreSQL.

End to end: the four services run as processes on PostgreSQL with a real SMTP server and the
sandbox gateway, as in the end-to-end tests; dossiers are submitted at a fixed offered rate and
one counts as done when the citizen's receipt email has arrived and the audit log holds its
event. For these rows the last column is the p99 in seconds (under 1 holds the target); the
"highest rate" row gives the rate itself. All four services and the broker share the
machine's two cores with the load generator.

Consumers: each service runs as a process on PostgreSQL, as deployed, and handles {consumer_events}
events of a type it acts on — audit appends each to its Merkle log, notify plans the citizen's
messages (sending paused, so the figure is the consumer's), payment opens a payment request —
one inbox transaction per event; raw kafka-python only reads the same number of records. The
replicas join their group before the events are produced, and the rate runs from the first
inbox row to the last. Two replicas share the topic's three partitions; on this machine they
also share two cores with the broker and PostgreSQL, so the two-replica ratio shows that
contention rather than the scaling separate nodes would give. Audit appends to one Merkle log
under one lock (ADR 0041): a second replica overlaps only its decoding and inbox work with the
other's append, so expect little gain (0.9 to 1.2 across runs here) — it is there for
availability.

Audit: proof times are medians at each log size, as ratios to 1k entries (flat = near 1: a
proof reads O(log n) stored subtree hashes); appends are one transaction per entry as the
consumer does, against a bare insert of the same row timed alternately with it.
"""


if __name__ == "__main__":
    main()
