"""`make bench`: each figure measured in one run, as a ratio against the bare stack.

1. SubmitDossier vs a bare grpcio unary echo server: same payload size, same concurrency;
   throughput and p50/p99 latency.
2. Outbox relay publish rate vs raw kafka-python produce (idempotent, acks=all, same records).
3. Consumer runner rate (decode + inbox transaction + handler) vs raw kafka-python consume.

A real broker is started on free loopback ports for the run and stopped after it.
"""

from __future__ import annotations

import argparse
import json
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

from harness import Kafka, Postgres  # noqa: E402
from motcua.dossier.v1 import dossier_pb2, events_pb2  # noqa: E402
from motcua_kit.auth import generate_signing_key, mint_token  # noqa: E402

console = Console()
figures: dict[str, float] = {}  # machine-readable results of this run (docs/benchmarks.json)


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
    parser.add_argument("--json", type=Path, default=None, help="flat JSON of the figures")
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--soak-rate", type=float, default=0.0, help="0: half the best e2e rate")
    parser.add_argument("--soak-plot", type=Path, default=ROOT / "docs" / "soak.png")
    for part in ("pipeline", "audit", "consumers", "soak"):
        parser.add_argument(f"--skip-{part}", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="motcua-bench-"))
    kafka = Kafka(state_dir=workdir / "kafka")
    kafka.start()
    postgres = Postgres()
    rows: list[tuple[str, str, float]] = []
    try:
        from bench import intake

        intake_rows, intake_figures = intake.run(
            console,
            kafka,
            postgres,
            workdir / "intake",
            total=args.requests,
            concurrency=args.concurrency,
        )
        rows += intake_rows
        figures.update(intake_figures)
        relay = bench_relay(kafka, workdir, args.events)
        consumer = bench_consumer(kafka, workdir, str(relay["topic"]), args.events)
        rows += [
            (
                "outbox relay publish rate vs raw kafka-python produce",
                f"{relay['relay']:.0f}/s vs {relay['raw']:.0f}/s",
                relay["relay"] / relay["raw"],
            ),
            (
                "consumer runner rate vs raw kafka-python consume (SQLite, no-op handler)",
                f"{consumer['runner']:.0f}/s vs {consumer['raw']:.0f}/s",
                consumer["runner"] / consumer["raw"],
            ),
        ]
        private_pem, public_pem = generate_signing_key()
        key_file = workdir / "jwt-suite.pem"
        key_file.write_bytes(public_pem)

        def token(*roles: str, citizen_id: str = "", agency: str = "") -> str:
            return mint_token(private_pem, "bench", roles, citizen_id=citizen_id, agency=agency)

        if not args.skip_pipeline:
            from bench import pipeline

            pipeline_rows, pipeline_figures = pipeline.run(
                console, kafka, postgres, (private_pem, key_file), token, workdir / "suite"
            )
            rows += pipeline_rows
            figures.update(pipeline_figures)
        if not args.skip_consumers:
            from bench import consumers

            consumer_rows, consumer_figures = consumers.run(
                console, kafka, postgres, (b"", key_file), workdir / "cons"
            )
            rows += consumer_rows
            figures.update(consumer_figures)  # consumer_rate_*, _vs_faststream_*, efficiency
        if not args.skip_audit:
            from bench import audit

            rows += audit.run(console, postgres.create_database("bench_audit"))
            figures.update(audit.RESULTS)
        if not args.skip_soak:
            from bench import soak

            best = figures.get("pipeline_max_rate_p99_under_1s", 0.0)
            rate = args.soak_rate or max(best / 2, 5.0)
            soak_rows, soak_figures = soak.run(
                console,
                kafka,
                postgres,
                (private_pem, key_file),
                workdir / "soak",
                rate=rate,
                minutes=args.soak_minutes,
                plot=args.soak_plot,
            )
            rows += soak_rows
            figures.update(soak_figures)
            figures["soak_rate"] = rate
    finally:
        kafka.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = ["| measure | motcua vs bare | ratio |", "|---|---|---|"]
    lines += [f"| {name} | {detail} | **{ratio:.3f}** |" for name, detail, ratio in rows]
    table = "\n".join(lines)
    console.print(table)
    machine = _machine()
    run_at = datetime.now(UTC)
    if args.write:
        args.write.write_text(_report(args, table, machine, run_at))
    if args.json:
        flat = {k: round(v, 4) for k, v in sorted(figures.items())}
        args.json.write_text(
            json.dumps(
                {**flat, "run_at": run_at.isoformat(timespec="seconds"), "machine": machine},
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        )


def _machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, "
        f"{memory_gib:.0f} GiB, Python {platform.python_version()}"
    )


def _report(args: argparse.Namespace, table: str, machine: str, run_at: datetime) -> str:
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    return f"""# Benchmarks

Each figure is measured in one run against the bare stack (and, for consumers, the FastStream
peer) on the same machine, so the ratio is what matters, not the absolute rate. This file and
docs/benchmarks.json come from the same run, produced by:

```sh
make bench   # {command}
```

Run: {run_at:%Y-%m-%d %H:%M} UTC on {machine}; single-node Kafka (KRaft) on loopback;
PostgreSQL unless a row says SQLite; {args.concurrency} concurrent SubmitDossier clients;
{args.events} events for the relay and runner rows.

{table}

What the ratios include: SubmitDossier pays for JWT verification, validation, NFC
normalisation, one database transaction (dossier row, the agency's daily sequence, outbox
row) and the interceptors, measured on PostgreSQL and on SQLite against a bare grpcio echo of
the same payload size. The relay pays for reading and marking outbox rows; the runner row is
the kit's consumer with a no-op handler on SQLite against raw kafka-python.

End to end: the four services run as processes on PostgreSQL with a real SMTP server and the
sandbox gateway, as in the end-to-end tests; dossiers are submitted at a fixed offered rate and
one counts as done when the citizen's receipt email has arrived and the audit log holds its
event. For these rows the last column is the p99 in seconds (under 1 holds the target); every
rate is measured, and the "highest rate" row is the highest below which every rate held. All
four services and the broker share the machine's two cores with the load generator.

Consumers: see bench/consumers.py — each service as a process on PostgreSQL handling events of
a type it acts on, against the same work written with FastStream and against raw kafka-python;
replica efficiency is events per CPU-second (user + sys of the service processes) with two
replicas over one. Audit: proof times as ratios to 1k entries; append through the staging
table and the sequencer (ADR 0046). Soak: the suite at a fixed rate for the given minutes;
RSS growth after warm-up, consumer lag and ERROR lines per service, plotted in docs/soak.png.
"""


if __name__ == "__main__":
    main()
