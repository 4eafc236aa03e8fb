"""Soak: the whole suite at a steady offered rate for minutes; memory, lag and errors over time.

A benchmark run of seconds cannot show a leak, a consumer that slowly falls behind or an error
that fires once a minute. This runs the suite as bench/pipeline.py does (four service
processes on PostgreSQL, a real SMTP server, the sandbox gateway) and submits dossiers at a
fixed rate for N minutes. Every few seconds it records the offered rate, the p99 end-to-end
latency over the last window (submit → receipt email arrived and audit holds the entry, as in
bench/pipeline.py), each consumer group's lag (committed offsets vs end offsets, summed over
the partitions of the topics it subscribes to) and each service process's RSS. At the end:
RSS after warm-up (the first 20% of the load) and its growth to the end of the run, the max
lag, how soon lag was back at 0 once the load ended, and the ERROR lines in each service's log.

    python -m bench.soak --minutes 10 --rate 10 --plot docs/soak.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests", ROOT / "tests" / "integration"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import psutil  # noqa: E402
from kafka import KafkaAdminClient, TopicPartition  # noqa: E402
from kafka.admin import OffsetSpec  # noqa: E402
from rich.console import Console  # noqa: E402
from sqlalchemy import bindparam, create_engine, text  # noqa: E402

from bench.consumers import _group_stable  # noqa: E402
from bench.pipeline import SUBMITTED, _MailClock  # noqa: E402
from dossier_client import CITIZEN_ID, submit_request  # noqa: E402
from harness import Kafka, Postgres, wait_for  # noqa: E402
from motcua_kit.auth import generate_signing_key, mint_token  # noqa: E402
from suite import Suite, running_suite  # noqa: E402

SERVICES = ("dossier", "payment", "notify", "audit")
WARM_UP = 0.2  # share of the load excluded before RSS is taken as the baseline
LAG_POLL_SECONDS = 0.5
DONE_POLL_SECONDS = 0.2
RECOVERY_DEADLINE = 120.0
RECOVERY_TARGET = 5.0
MIB = 2**20

Row = tuple[str, str, float]


@dataclass
class Sample:
    """One point of the time series; ``t`` is seconds since the load began."""

    t: float
    offered: float
    p99_ms: float
    completed: int
    outstanding: int
    lag: dict[str, int]
    rss: dict[str, int]


@dataclass
class _Tracker:
    """Submitted dossiers until each is done (receipt email arrived and audit holds it)."""

    started: dict[str, float] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    audited: dict[str, float] = field(default_factory=dict)
    outstanding: set[str] = field(default_factory=set)
    finished: list[tuple[str, float]] = field(default_factory=list)  # (code, latency) in order
    scheduled: list[float] = field(default_factory=list)  # monotonic time of each submission
    submit_errors: int = 0
    lag_errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


# -- the load ----------------------------------------------------------------------------------
def _generate(suite: Suite, tracker: _Tracker, rate: float, seconds: float) -> None:
    """Submit at ``rate`` per second for ``seconds``, as pipeline.py does, then wait for replies."""
    client = suite.dossiers("citizen", citizen_id=CITIZEN_ID)

    def submit() -> None:
        email = f"soak.{uuid.uuid4().hex[:10]}@example.vn"
        request = submit_request("HT-001", f"s-{uuid.uuid4()}", email=email)
        t0 = time.time()
        try:
            code = client.submit(request).dossier.code
        except Exception:  # counted and reported; a soak must keep its rate
            with tracker.lock:
                tracker.submit_errors += 1
            return
        with tracker.lock:
            tracker.started[code] = t0
            tracker.emails[code] = email
            tracker.outstanding.add(code)

    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=32) as pool:
        begin = time.monotonic()
        for n in range(total):
            if tracker.stop.is_set():
                break
            delay = begin + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with tracker.lock:
                tracker.scheduled.append(time.monotonic())
            pool.submit(submit)
    client.close()


def _poll_done(engine: Any, tracker: _Tracker, mail: _MailClock) -> None:
    """Move dossiers whose email arrived and whose audit entry exists to ``finished``."""
    with tracker.lock:
        waiting = [c for c in tracker.outstanding if c not in tracker.audited]
    query = text(
        "SELECT dossier_code, recorded_at FROM audit_entries "
        "WHERE event_type = :t AND dossier_code IN :codes"
    ).bindparams(bindparam("codes", expanding=True))
    found: dict[str, float] = {}
    with engine.connect() as conn:
        for i in range(0, len(waiting), 500):
            rows = conn.execute(query, {"t": SUBMITTED, "codes": waiting[i : i + 500]})
            for code, at in rows:
                found.setdefault(code, at.timestamp())
    with tracker.lock:
        tracker.audited.update(found)
        for code in list(tracker.outstanding):
            mailed = mail.arrived.get(tracker.emails[code])
            if mailed is not None and code in tracker.audited:
                done = max(mailed, tracker.audited[code])
                tracker.finished.append((code, done - tracker.started[code]))
                tracker.outstanding.discard(code)


# -- lag and memory ----------------------------------------------------------------------------
class _Lag:
    """Each consumer group's lag: end offsets minus committed offsets, over its topics."""

    def __init__(self, kafka: Kafka, groups: dict[str, str]) -> None:
        self.groups = groups  # service -> group id
        self.admin = KafkaAdminClient(bootstrap_servers=[kafka.bootstrap], api_version=(4, 0))
        self.topics = self._subscriptions()
        partitions = self._partitions()
        self.partitions = [
            TopicPartition(t, p)
            for t in sorted({t for ts in self.topics.values() for t in ts})
            for p in partitions.get(t, ())
        ]

    def _subscriptions(self) -> dict[str, set[str]]:
        described = self.admin.describe_groups(list(self.groups.values()))
        topics: dict[str, set[str]] = {}
        for service, group in self.groups.items():
            members = (described.get(group) or {}).get("members") or []
            subscribed: set[str] = set()
            for member in members:
                meta = member.get("member_metadata")
                subscribed.update((meta or {}).get("topics") or ())
            if not subscribed:
                raise AssertionError(f"{service}: group {group} has no subscription: {members}")
            topics[service] = subscribed
        return topics

    def _partitions(self) -> dict[str, list[int]]:
        wanted = sorted({t for ts in self.topics.values() for t in ts})
        return {
            t["name"]: sorted(p["partition_index"] for p in t["partitions"])
            for t in self.admin.describe_topics(wanted)
        }

    def now(self) -> dict[str, int]:
        """Lag per service's group; a partition with no commit yet counts from offset 0."""
        ends = self.admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in self.partitions})
        committed = self.admin.list_group_offsets({g: None for g in self.groups.values()})
        lag: dict[str, int] = {}
        for service, group in self.groups.items():
            offsets = committed.get(group) or {}
            total = 0
            for tp in self.partitions:
                if tp.topic not in self.topics[service]:
                    continue
                mark = offsets.get(tp)
                done = mark.offset if mark is not None and mark.offset >= 0 else 0
                total += max(ends[tp].offset - done, 0)
            lag[service] = total
        return lag

    def close(self) -> None:
        self.admin.close()


def _pid(suite: Suite, service: str) -> int:
    proc = suite.services[service].proc
    assert proc is not None, f"{service} is not running"
    return int(proc.pid)


def _rss(processes: dict[str, psutil.Process]) -> dict[str, int]:
    """Resident set size of each service process (with any children), in bytes."""
    out: dict[str, int] = {}
    for name, proc in processes.items():
        try:
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                total += child.memory_info().rss
        except psutil.Error:
            total = 0  # it exited; the error count and the plot will show it
        out[name] = total
    return out


_ERROR_WORD = re.compile(r"\b(ERROR|CRITICAL)\b")


def error_lines(log: Path) -> int:
    """Lines at level ERROR or CRITICAL (JSON logs); other lines that say so, or a traceback."""
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                level = json.loads(line).get("level")
            except ValueError:
                level = None
            if level is not None:
                count += level in ("ERROR", "CRITICAL")
                continue
        if _ERROR_WORD.search(line) or line.startswith("Traceback (most recent call last)"):
            count += 1
    return count


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * 0.99) - 1, 0)] if ordered else math.nan


# -- the run -----------------------------------------------------------------------------------
def _soak(
    console: Console, suite: Suite, rate: float, seconds: float, interval: float
) -> tuple[list[Sample], list[float], dict[str, int], float, int, int]:
    """(samples, latencies after warm-up, max lag per group, s to lag 0, not done, lag errors).

    Latencies after warm-up are of dossiers submitted after it; "not done" counts refused
    submissions and dossiers still unfinished when the run stopped; last, the lag reads that
    failed (their polls are missing from the max).
    """
    groups = {s: suite.services[s].env[f"MOTCUA_{s.upper()}_CONSUMER_GROUP"] for s in SERVICES}
    for service, group in groups.items():
        wait_for(lambda g=group: _group_stable(suite.kafka, g, 1), 120, 0.5, f"{service} joined")
    lag = _Lag(suite.kafka, groups)
    processes = {s: psutil.Process(_pid(suite, s)) for s in SERVICES}
    engine = create_engine(suite.urls["audit"])
    tracker = _Tracker()
    samples: list[Sample] = []
    lag_now = dict.fromkeys(SERVICES, 0)
    lag_max = dict.fromkeys(SERVICES, 0)  # over every poll, not only the samples
    recovered: float | None = None
    try:
        with _MailClock(suite) as mail:
            load = threading.Thread(
                target=_generate, args=(suite, tracker, rate, seconds), daemon=True
            )
            begin, wall_begin = time.monotonic(), time.time()
            load.start()
            load_end: float | None = None
            final = False  # the last sample, taken once lag is back at 0, is due
            next_sample, next_lag, last_sample = begin + interval, begin, begin
            seen_finished, seen_scheduled = 0, 0
            console.print(f"soak: {seconds / 60:g} min at {rate:g}/s offered")
            while True:
                now = time.monotonic()
                _poll_done(engine, tracker, mail)
                if now >= next_lag:
                    try:
                        lag_now = lag.now()
                    except Exception as exc:  # a slow broker answer must not end the soak
                        tracker.lag_errors += 1
                        console.print(f"soak: lag not read ({exc!r}); keeping the last value")
                    lag_max = {s: max(lag_max[s], lag_now[s]) for s in SERVICES}
                    # after the load, every pass: the recovery time is the figure
                    next_lag = now + (LAG_POLL_SECONDS if load_end is None else 0)
                    if load_end is not None and recovered is None:
                        with tracker.lock:
                            idle = not tracker.outstanding
                        if idle and not any(lag_now.values()):
                            recovered = time.monotonic() - load_end
                if now >= next_sample:
                    wall = time.time()
                    with tracker.lock:
                        finished = tracker.finished[seen_finished:]
                        seen_finished = len(tracker.finished)
                        offered = len(tracker.scheduled) - seen_scheduled
                        seen_scheduled = len(tracker.scheduled)
                        # a dossier waiting longer than a window counts with its age so far, so
                        # a stall shows as a rising p99 instead of an empty window
                        stuck = [
                            wall - tracker.started[c]
                            for c in tracker.outstanding
                            if wall - tracker.started[c] > interval
                        ]
                        outstanding = len(tracker.outstanding)
                    window = [latency for _, latency in finished] + stuck
                    sample = Sample(
                        t=now - begin,
                        offered=offered / max(now - last_sample, 1e-9),
                        p99_ms=_p99(window) * 1000,
                        completed=len(finished),
                        outstanding=outstanding,
                        lag=dict(lag_now),
                        rss=_rss(processes),
                    )
                    samples.append(sample)
                    console.print(
                        f"  t={sample.t:5.0f} s  offered {sample.offered:5.1f}/s  "
                        f"p99 {sample.p99_ms:7.0f} ms  outstanding {outstanding:4d}  lag "
                        + " ".join(f"{s} {n}" for s, n in sample.lag.items())
                        + "  RSS MiB "
                        + " ".join(f"{s} {b / MIB:.0f}" for s, b in sample.rss.items()),
                        soft_wrap=True,
                    )
                    next_sample += interval
                    last_sample = now
                    if final:
                        break  # the plot ends on the drained state
                if load_end is None and not load.is_alive():
                    load_end = next_lag = time.monotonic()
                if load_end is not None and not final:
                    after = time.monotonic() - load_end
                    if recovered is None and after > RECOVERY_DEADLINE:
                        recovered = after
                        console.print(f"soak: lag not back at 0 {RECOVERY_DEADLINE:g} s after")
                    if recovered is not None:
                        final, next_sample = True, time.monotonic()
                time.sleep(DONE_POLL_SECONDS)
            load.join()
    finally:
        tracker.stop.set()
        lag.close()
        engine.dispose()
    warm_until = wall_begin + seconds * WARM_UP
    with tracker.lock:
        latencies = [lat for code, lat in tracker.finished if tracker.started[code] >= warm_until]
        missing = len(tracker.outstanding) + tracker.submit_errors
    return samples, latencies, lag_max, float(recovered or 0.0), missing, tracker.lag_errors


def plot_samples(
    samples: list[Sample], rate: float, seconds: float, path: Path, title: str = ""
) -> None:
    """Four panels over time: offered rate, p99 latency, lag and RSS per service."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    axes[0].plot(t, [s.offered for s in samples], marker=".", label="offered")
    axes[0].axhline(rate, color="grey", linestyle=":", label=f"target {rate:g}/s")
    axes[0].set_ylabel("dossiers/s")
    axes[0].legend(loc="lower right")
    axes[1].plot(t, [s.p99_ms for s in samples], marker=".", color="tab:red")
    axes[1].set_ylabel("p99 end to end (ms)")
    axes[1].set_ylim(bottom=0)
    for service in SERVICES:
        axes[2].plot(t, [s.lag.get(service, 0) for s in samples], marker=".", label=service)
        axes[3].plot(t, [s.rss.get(service, 0) / MIB for s in samples], marker=".", label=service)
    axes[2].set_ylabel("consumer lag (records)")
    axes[2].set_ylim(bottom=0)
    axes[2].legend(loc="best", ncol=4)
    axes[3].set_ylabel("RSS (MiB)")  # not from 0: growth of a few % must be visible
    axes[3].legend(loc="best", ncol=4)
    axes[3].set_xlabel("seconds since the load began")
    for ax in axes:
        ax.axvline(seconds * WARM_UP, color="grey", linestyle="--", linewidth=0.8)
        ax.axvline(seconds, color="black", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
    heading = title or f"soak at {rate:g}/s"
    axes[0].set_title(f"{heading} (dashed: end of warm-up, end of load)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(
    console: Console,
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    folder: Path,
    *,
    rate: float = 10.0,
    minutes: float = 10.0,
    plot: Path = ROOT / "docs" / "soak.png",
    interval: float = 5.0,
) -> tuple[list[Row], dict[str, float]]:
    """Soak the suite; rows for the report and the figures for docs/benchmarks.json."""
    private_pem = signing_keys[0]

    def token(*roles: str, citizen_id: str = "", agency: str = "") -> str:
        return mint_token(private_pem, "bench", roles, citizen_id=citizen_id, agency=agency)

    seconds = minutes * 60
    folder.mkdir(parents=True, exist_ok=True)
    with running_suite(kafka, postgres, signing_keys, token, folder) as suite:
        samples, latencies, lag_max, recovered, missing, lag_errors = _soak(
            console, suite, rate, seconds, interval
        )
        logs = {s: suite.services[s].log_path for s in SERVICES}
    errors = {s: error_lines(path) for s, path in logs.items()}  # after the graceful stops

    plot_samples(samples, rate, seconds, plot, f"soak: {minutes:g} min at {rate:g}/s offered")
    after = [s for s in samples if s.t >= seconds * WARM_UP]
    base = after[0] if after else samples[-1]
    last = samples[-1]
    label = f"soak {minutes:g} min at {rate:g}/s"
    rows: list[Row] = []
    p50 = sorted(latencies)[len(latencies) // 2] if latencies else math.nan
    rows.append(
        (
            f"{label}: end-to-end p99 after warm-up (s)",
            f"p50 {p50 * 1000:.0f} ms, p99 {_p99(latencies) * 1000:.0f} ms over "
            f"{len(latencies)} dossiers; {missing} not done or refused",
            _p99(latencies),
        )
    )
    growth: dict[str, float] = {}
    for service in SERVICES:
        start, end = base.rss[service], last.rss[service]
        growth[service] = (end - start) / start if start else math.inf
        rows.append(
            (
                f"{label}: {service} RSS growth after warm-up",
                f"{start / MIB:.0f} MiB at {base.t:.0f} s → {end / MIB:.0f} MiB at {last.t:.0f} s",
                growth[service],
            )
        )
    rows.append(
        (
            f"{label}: max consumer lag of any group (records, sum over partitions)",
            ", ".join(f"{s} {n}" for s, n in lag_max.items())
            + (f"; {lag_errors} lag reads failed" if lag_errors else ""),
            float(max(lag_max.values())),
        )
    )
    back = recovered <= RECOVERY_TARGET
    rows.append(
        (
            f"{label}: lag back to 0 after the load ended (s)",
            f"{recovered:.1f} s" + ("" if back else f" (over {RECOVERY_TARGET:g} s)"),
            recovered,
        )
    )
    rows.append(
        (
            f"{label}: ERROR lines in the service logs",
            ", ".join(f"{s} {n}" for s, n in errors.items()),
            float(sum(errors.values())),
        )
    )
    figures = {
        "soak_rss_growth_max": max(growth.values()),
        "soak_lag_max": float(max(lag_max.values())),
        "soak_lag_recovered_seconds": recovered,
        "soak_error_lines": float(sum(errors.values())),
    }
    return rows, figures


def main() -> None:
    """Start a broker and PostgreSQL of its own, soak, print the rows and the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="offered dossiers per second")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args()

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="motcua-soak-"))
    kafka = Kafka(state_dir=workdir / "kafka")
    postgres = Postgres()
    try:
        kafka.start()
        postgres.start()
        private_pem, public_pem = generate_signing_key()
        key_file = workdir / "jwt-soak.pem"
        key_file.write_bytes(public_pem)
        rows, figures = run(
            console,
            kafka,
            postgres,
            (private_pem, key_file),
            workdir / "suite",
            rate=args.rate,
            minutes=args.minutes,
            plot=args.plot,
            interval=args.interval,
        )
    finally:
        kafka.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = ["| measure | detail | value |", "|---|---|---|"]
    lines += [f"| {name} | {detail} | **{value:.3f}** |" for name, detail, value in rows]
    print("\n".join(lines))
    print(json.dumps(figures, indent=2))
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
