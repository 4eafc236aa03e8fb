"""Each service's consumer against a FastStream peer and raw kafka-python; 1 replica vs 2.

For audit, notify, payment and dossier: the service runs as a process on PostgreSQL, as
deployed, with a consumer group positioned at the end of the topics it consumes. Once its
replicas have joined, N events of types it acts on are produced, and

* the **rate** is N over the time from the start of their production (the producer outruns
  every consumer measured here) to when the last one is in the inbox (for audit: in the
  Merkle log, since the sequencer appends after the consumer), polled every 20 ms — the
  bench's own clock, so the implementations' inbox timestamps do not matter;
* the **work per CPU-second** is N over the user+sys CPU seconds of all replica processes
  (children included, read with psutil) from just before the events are produced to when the
  last one is done. On a machine shared with the broker and PostgreSQL, time a replica spends
  waiting for a core is not in it (unlike the rate), though contention still inflates it
  somewhat. Replica efficiency = events per CPU-second with 2 replicas / with 1: near 1 means
  a second replica adds no lock or coordination work, so on separate nodes (a core each)
  throughput would grow with replicas up to the partition count or the database.

The same service also runs with its consumer written in FastStream (``bench/peer_faststream``:
same settings, same tables, the service's own handlers, one transaction per FastStream batch,
offsets committed after it), measured the same way in the same run. Raw kafka-python reads N
records of the same kind from their offsets, with no group and no work: the ceiling. After
each run the group's committed offsets must reach the topic's end (both implementations
commit only after their transactions).

Dossier's consumer takes payment events for dossiers it has: N/2 dossiers are seeded in
"payment required", and each gets the payment service's ``requested`` then ``succeeded``
(the second moves the dossier on and publishes through the outbox).

``python -m bench.consumers --events 2000 [--only audit,notify] [--repeats 3] [--profile DIR]``
runs it alone (``--repeats``: medians of runs in alternating order; ``--profile``: py-spy
collapsed stacks of every process of the first runs, whose figures it skews).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests", ROOT / "tests" / "integration"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import psutil  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from sqlalchemy import Engine, create_engine, text  # noqa: E402

from harness import Kafka, Postgres, ServiceProcess, free_port, wait_for  # noqa: E402
from motcua.dossier.v1 import events_pb2  # noqa: E402
from motcua.payment.v1 import events_pb2 as payment_events_pb2  # noqa: E402
from motcua.payment.v1 import payment_pb2  # noqa: E402
from motcua_kit.envelope import Event, encode  # noqa: E402
from motcua_payment.sandbox import Merchant, SandboxGateway  # noqa: E402
from motcua_payment.testing import payment_requested_event  # noqa: E402
from notify_providers import dossier, fresh_group, notify_env, providers  # noqa: E402

N = 2000
"""Events per measurement (``run(events=...)`` and ``--events`` override it)."""

SERVICES = ("audit", "notify", "payment", "dossier")
DOSSIER_TOPIC = "motcua.dossier.v1"
PAYMENT_TOPIC = "motcua.payment.v1"
NOTIFY_TOPIC = "motcua.notify.v1"
TIMEOUT = 600.0

Row = tuple[str, str, float]


# -- processes and their CPU --------------------------------------------------------------------
class PeerProcess(ServiceProcess):
    """The service with its consumer in FastStream (``python -m bench.peer_faststream``)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.peer_faststream", self.name]


def cpu_seconds(procs: Sequence[ServiceProcess]) -> float:
    """User+sys CPU seconds of the processes so far, their children (live or reaped) included."""
    total = 0.0
    for p in procs:
        assert p.proc is not None
        try:
            proc = psutil.Process(p.proc.pid)
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with_child = child.cpu_times()
                total += with_child.user + with_child.system
        except psutil.NoSuchProcess as exc:
            raise AssertionError(
                f"{p.name} exited during the measurement:\n{p.log_tail()}"
            ) from exc
    return total


def _settle(procs: Sequence[ServiceProcess], limit: float = 15.0) -> None:
    """Wait (bounded) until the started processes are idle, so start-up work is not counted."""
    deadline = time.monotonic() + limit
    before = cpu_seconds(procs)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(procs)
        if now - before < 0.02 * len(procs):
            return
        before = now


def _report_logs(console: Console, label: str, procs: Sequence[ServiceProcess]) -> None:
    """Say what the processes logged (at LOG_LEVEL=WARNING, every line is worth a look)."""
    lines: list[str] = []
    for p in procs:
        try:
            lines += [ln for ln in p.log_path.read_text(errors="replace").splitlines() if ln]
        except FileNotFoundError:
            continue
    if lines:
        console.print(f"[yellow]{label}: {len(lines)} log lines, e.g.[/yellow]")
        for line in lines[:3]:
            console.print(f"  {line[:300]}", markup=False, highlight=False)


def _py_spy(p: ServiceProcess, folder: Path, label: str, i: int) -> subprocess.Popen[bytes]:
    """py-spy recording one process until SIGINT (``uv tool run py-spy``, fetched on first use)."""
    assert p.proc is not None
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "-" for c in label) + f"-{i}.txt"
    # --gil: only the thread holding the GIL is sampled, so the profile shows CPU, not waits.
    command = ["uv", "tool", "run", "py-spy", "record", "--pid", str(p.proc.pid), "--gil"]
    command += ["--threads", "--format", "raw", "--rate", "250", "--output", str(folder / name)]
    spy = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.0)  # py-spy attaches before the events come
    return spy


@contextmanager
def _running(procs: Sequence[ServiceProcess]) -> Iterator[None]:
    try:
        # The first one migrates the database; replicas migrating at once would race.
        procs[0].start(wait=False)
        procs[0].wait_serving(120)
        for p in procs[1:]:
            p.start(wait=False)
        for p in procs[1:]:
            p.wait_serving(120)
        yield
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.terminate()


# -- Kafka ---------------------------------------------------------------------------------------
def _produce(kafka: Kafka, topic: str, events: Sequence[Event]) -> None:
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0), linger_ms=5)
    for event in events:
        record = encode(event)
        producer.send(topic, key=record.key, value=record.value, headers=record.headers)
    producer.flush()
    producer.close()


def _raw_rate(kafka: Kafka, topic: str, events: Sequence[Event]) -> float:
    """Records per second a bare kafka-python consumer reads (no group, no work): the ceiling.

    The events are produced first; the clock runs from the first poll, from their offsets,
    to the last record, so neither a group join nor the producer is in the figure.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=[kafka.bootstrap], api_version=(4, 0), enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        starts = consumer.end_offsets(partitions)
        _produce(kafka, topic, events)
        consumer.assign(partitions)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        seen = 0
        t0 = time.perf_counter()
        while seen < len(events):
            seen += sum(len(b) for b in consumer.poll(timeout_ms=200).values())
        return seen / max(time.perf_counter() - t0, 1e-9)
    finally:
        consumer.close(autocommit=False)


def _lag(kafka: Kafka, group: str, topic: str) -> int:
    """Records of ``topic`` past the group's committed offsets (read without joining it)."""
    consumer = KafkaConsumer(
        bootstrap_servers=[kafka.bootstrap],
        api_version=(4, 0),
        group_id=group,
        enable_auto_commit=False,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        return sum(end - (consumer.committed(tp) or 0) for tp, end in ends.items())
    finally:
        consumer.close(autocommit=False)


def _group_stable(kafka: Kafka, group: str, members: int) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
    try:
        described = admin.describe_groups([group]).get(group) or {}
    finally:
        admin.close()
    return bool(
        described.get("group_state") == "Stable" and len(described.get("members", [])) == members
    )


# -- one measurement -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """One run of one consumer implementation with some replicas."""

    events: int
    rate: float  # events per second
    cpu_seconds: float  # user+sys of all replica processes over the window

    @property
    def per_cpu(self) -> float:
        """Events per CPU-second of the service processes."""
        return self.events / max(self.cpu_seconds, 1e-9)


@dataclass
class Case:
    """What one service consumes in the benchmark, and how to tell it is done."""

    name: str
    topic: str  # where the events go
    group_topics: tuple[str, ...]  # every topic the service consumes (the group starts at ends)
    events: Callable[[str], list[Event]]  # a run id → the events
    env: dict[str, str] = field(default_factory=dict)
    seed: Callable[[str, str], None] | None = None  # (database URL, run id)
    effect_count: str | None = None  # SQL counting the effects that lag the inbox (audit)


def _median(runs: Sequence[Measured]) -> Measured:
    """The median rate and the median events per CPU-second of repeated runs."""
    events = runs[0].events
    per_cpu = statistics.median(m.per_cpu for m in runs)
    return Measured(events, statistics.median(m.rate for m in runs), events / per_cpu)


def _count(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def measure(
    console: Console,
    kafka: Kafka,
    postgres: Postgres,
    case: Case,
    make: Callable[[str, str], ServiceProcess],
    replicas: int,
    label: str,
    profile: Path | None = None,
) -> Measured:
    """Start ``replicas`` processes from ``make(group, url)``, feed them, time and meter them.

    ``profile``: a folder for a py-spy profile of each replica over the window (collapsed
    stacks); the figures of a profiled run are not comparable.
    """
    url = postgres.create_database(f"bench_{case.name}")
    run = uuid.uuid4().hex[:5].upper()
    events = case.events(run)
    total = len(events)
    if case.seed is not None:
        case.seed(url, run)
    group = fresh_group(kafka.bootstrap, case.group_topics)
    procs = [make(group, url) for _ in range(replicas)]
    engine = create_engine(url)
    try:
        with _running(procs):
            wait_for(lambda: _group_stable(kafka, group, replicas), 120, 0.5, f"{label} joined")
            _settle(procs)
            spies = [_py_spy(p, profile, label, i) for i, p in enumerate(procs)] if profile else []
            cpu_before = cpu_seconds(procs)
            started = time.perf_counter()
            _produce(kafka, case.topic, events)
            deadline = time.monotonic() + TIMEOUT
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(label, total=total)
                done = 0
                while True:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"{label}: {done} of {total} events handled in {TIMEOUT:.0f} s"
                            " (a dead-lettered event never lands in the inbox)\n"
                            + "\n".join(p.log_tail(20) for p in procs)
                        )
                    done = _count(
                        engine,
                        "SELECT count(*) FROM inbox WHERE consumer_group = :g",
                        g=group,
                    )
                    progress.update(task, completed=done)
                    if done >= total:
                        if case.effect_count is None:
                            break
                        if _count(engine, case.effect_count) >= total:
                            break
                    time.sleep(0.02)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(procs) - cpu_before
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            # Both implementations must commit the offsets after their transactions.
            wait_for(lambda: _lag(kafka, group, case.topic) == 0, 60, 0.2, f"{label} committed")
        rate = total / max(elapsed, 1e-9)
        _report_logs(console, label, procs)
        measured = Measured(total, rate, cpu)
        console.print(
            f"{label}: {measured.rate:.0f} events/s, {measured.per_cpu:.0f} events/CPU-s"
            f" ({cpu:.1f} CPU-s)"
        )
        return measured
    finally:
        engine.dispose()


# -- the cases -----------------------------------------------------------------------------------
def _seed_dossiers(count: int) -> Callable[[str, str], None]:
    """Dossiers in "payment required" (HT-004, 8,000 VND), added with the service's repository."""

    def seed(url: str, run: str) -> None:
        from motcua_dossier.adapters.db import DossierRepository
        from motcua_dossier.domain.dossier import Actor, Applicant, Channel, Dossier, Status
        from motcua_kit.db import make_engine, migrate, session_factory, transaction

        migrate(url, "motcua_dossier:migrations")
        engine = make_engine(url)
        repo = DossierRepository()
        now = datetime.now(UTC)
        applicant = Applicant(
            full_name="Nguyễn Thị Thu Hà",
            citizen_id="079203004567",
            phone="0905123456",
            email="thuha@example.vn",
            address="12 Trần Phú, phường Hội An, thành phố Đà Nẵng",
        )
        try:
            with transaction(session_factory(engine)) as session:
                for i in range(count):
                    code = _dossier_code(run, i)
                    repo.add(
                        session,
                        Dossier(
                            code=code,
                            procedure_code="HT-004",
                            agency_code="STP",
                            applicant=applicant,
                            documents=(),
                            channel=Channel.ONLINE,
                            status=Status.PAYMENT_REQUIRED,
                            version=3,
                            submitted_at=now,
                            appointment_date=date.today() + timedelta(days=7),
                            fee_vnd=8000,
                            submitted_by=Actor("079203004567", "citizen"),
                            received_at=now,
                            paused_since=now,
                        ),
                        f"bench:{code}",
                    )
        finally:
            engine.dispose()

    return seed


def _dossier_code(run: str, i: int) -> str:
    return f"STP-{run}-{i:05d}"


def _payment_event(event_type: str, code: str, payment_id: str) -> Event:
    """A payment event as the payment service publishes it (key = the dossier code)."""
    return Event.new(
        source="/motcua/payment",
        type=event_type,
        subject=code,
        message=payment_events_pb2.PaymentEvent(
            payment=payment_pb2.Payment(
                id=payment_id, dossier_code=code, agency_code="STP", amount_vnd=8000
            )
        ),
    )


def _cases(events: int, extra: dict[str, dict[str, str]]) -> dict[str, Case]:
    def audit_events(run: str) -> list[Event]:
        return [
            Event.new(
                source="/bench",
                type="vn.motcua.dossier.submitted.v1",
                subject=f"STP-{run}-{i:05d}",
                message=events_pb2.DossierSubmitted(dossier=dossier(f"STP-{run}-{i:05d}")),
            )
            for i in range(events)
        ]

    def notify_events(run: str) -> list[Event]:
        return [
            Event.new(
                source="/bench",
                type="vn.motcua.dossier.submitted.v1",
                subject=f"PHOIAN-{run}-{i:05d}",
                message=events_pb2.DossierSubmitted(
                    dossier=dossier(f"PHOIAN-{run}-{i:05d}", email_address=f"b{i}@x.vn")
                ),
            )
            for i in range(events)
        ]

    def payment_events(run: str) -> list[Event]:
        return [payment_requested_event(f"STP-{run}-{i:05d}", "STP", 8000) for i in range(events)]

    def dossier_events(run: str) -> list[Event]:
        out: list[Event] = []
        for i in range(events // 2):
            code, payment_id = _dossier_code(run, i), uuid.uuid4().hex
            out.append(_payment_event("vn.motcua.payment.requested.v1", code, payment_id))
            out.append(_payment_event("vn.motcua.payment.succeeded.v1", code, payment_id))
        return out

    every = (DOSSIER_TOPIC, PAYMENT_TOPIC, NOTIFY_TOPIC)
    return {
        "audit": Case(
            "audit",
            DOSSIER_TOPIC,
            every,
            audit_events,
            extra.get("audit", {}),
            effect_count="SELECT count(*) FROM audit_entries",
        ),
        "notify": Case(
            "notify", DOSSIER_TOPIC, (DOSSIER_TOPIC, PAYMENT_TOPIC), notify_events, extra["notify"]
        ),
        "payment": Case(
            "payment", DOSSIER_TOPIC, (DOSSIER_TOPIC,), payment_events, extra["payment"]
        ),
        "dossier": Case(
            "dossier",
            PAYMENT_TOPIC,
            (PAYMENT_TOPIC,),
            dossier_events,
            extra.get("dossier", {}),
            seed=_seed_dossiers(events // 2),
        ),
    }


# -- the benchmark -------------------------------------------------------------------------------
def run(
    console: Console,
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    folder: Path,
    events: int = N,
    services: Sequence[str] = SERVICES,
    *,
    repeats: int = 1,
    profile: Path | None = None,
) -> tuple[list[Row], dict[str, float]]:
    """Report rows and the machine-readable figures (``consumer_rate_*``,
    ``consumer_vs_faststream_*``, ``replica_efficiency_*``) for ``services``.

    ``repeats`` > 1 measures each configuration that many times, in alternating order, and
    keeps the medians (the machine is shared: one run can be unlucky).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    figures: dict[str, float] = {}
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
        extra = {
            # Sending is paused (hourly tick): the figure is the consumer's, not the SMTP's.
            "notify": {**notify_env(smtp, sms_a, sms_b), "DISPATCH_INTERVAL_SECONDS": "3600"},
            "payment": {
                "GATEWAY_BASE_URL": sandbox.url,
                "GATEWAY_HASH_SECRET_FILE": str(secret),
                "CALLBACK_PORT": str(callback),
            },
        }
        cases = _cases(events, extra)
        for name in services:
            case = cases[name]

            def make(group: str, url: str, case: Case = case, peer: bool = False) -> ServiceProcess:
                prefix = f"MOTCUA_{case.name.upper()}_"
                env = {**base, **case.env, "DATABASE_URL": url, "CONSUMER_GROUP": group}
                for port in ("RECEIPTS_PORT", "CALLBACK_PORT"):  # one per replica
                    if port in env:
                        env[port] = str(free_port())
                kind = PeerProcess if peer else ServiceProcess
                return kind(case.name, {prefix + k: v for k, v in env.items()}, folder)

            def peer_make(
                group: str, url: str, make: Callable[..., ServiceProcess] = make
            ) -> ServiceProcess:
                return make(group, url, peer=True)

            plan: list[tuple[str, Callable[[str, str], ServiceProcess], int, str]] = [
                ("one", make, 1, f"{name} consumer, 1 replica"),
                ("peer", peer_make, 1, f"{name}, FastStream peer"),
                ("two", make, 2, f"{name} consumer, 2 replicas"),
            ]
            got: dict[str, list[Measured]] = {key: [] for key, *_ in plan}
            for r in range(repeats):
                # Alternate the order, so a drift in the machine's load favours no one.
                for key, maker, replicas, label in plan if r % 2 == 0 else plan[::-1]:
                    spy = profile if r == 0 else None
                    got[key].append(
                        measure(console, kafka, postgres, case, maker, replicas, label, spy)
                    )
            one, peer, two = (_median(got[key]) for key in ("one", "peer", "two"))
            raw = _raw_rate(kafka, case.topic, case.events(f"R{uuid.uuid4().hex[:4]}".upper()))

            efficiency = two.per_cpu / one.per_cpu
            figures[f"consumer_rate_{name}"] = round(one.rate, 1)
            figures[f"consumer_vs_faststream_{name}"] = round(one.rate / peer.rate, 3)
            figures[f"replica_efficiency_{name}"] = round(efficiency, 3)
            rows += [
                (
                    f"{name} consumer rate vs raw kafka-python consume",
                    f"{one.rate:.0f}/s vs {raw:.0f}/s",
                    one.rate / raw,
                ),
                (
                    f"{name} consumer rate vs FastStream peer (same work, same run)",
                    f"{one.rate:.0f}/s vs {peer.rate:.0f}/s",
                    one.rate / peer.rate,
                ),
                (
                    f"{name} consumer events per CPU-second vs FastStream peer",
                    f"{one.per_cpu:.0f} vs {peer.per_cpu:.0f}",
                    one.per_cpu / peer.per_cpu,
                ),
                (
                    f"{name} consumer, two replicas vs one: throughput",
                    f"{two.rate:.0f}/s vs {one.rate:.0f}/s",
                    two.rate / one.rate,
                ),
                (
                    f"{name} consumer, two replicas vs one: events per CPU-second (efficiency)",
                    f"{two.per_cpu:.0f} vs {one.per_cpu:.0f}",
                    efficiency,
                ),
            ]
    return rows, figures


def main() -> None:
    """``python -m bench.consumers``: this benchmark alone, on its own broker and PostgreSQL."""
    from motcua_kit.auth import generate_signing_key

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=N, help="events per measurement")
    parser.add_argument(
        "--only", default=",".join(SERVICES), help=f"comma-separated subset of {SERVICES}"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per configuration (medians are kept)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="folder for py-spy profiles of the first runs (skews their figures)",
    )
    args = parser.parse_args()
    services = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services: {', '.join(sorted(unknown))}")

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="motcua-bench-consumers-"))
    kafka = Kafka(state_dir=workdir / "kafka")
    postgres = Postgres()
    try:
        kafka.start()
        postgres.start()
        _, public_pem = generate_signing_key()
        key_file = workdir / "jwt.pem"
        key_file.write_bytes(public_pem)
        rows, figures = run(
            console,
            kafka,
            postgres,
            (b"", key_file),
            workdir / "cons",
            args.events,
            services,
            repeats=max(args.repeats, 1),
            profile=args.profile,
        )
    finally:
        kafka.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = ["| measure | motcua vs other | ratio |", "|---|---|---|"]
    lines += [f"| {name} | {detail} | **{ratio:.3f}** |" for name, detail, ratio in rows]
    console.print("\n".join(lines))
    console.print(figures)


if __name__ == "__main__":
    main()
