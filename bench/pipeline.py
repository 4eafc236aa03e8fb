"""Whole-pipeline benchmark: submit → "notified and audited", at fixed offered rates.

The suite runs as in the end-to-end tests (four services as processes on PostgreSQL, a real
SMTP server, the sandbox gateway). Dossiers are submitted at a fixed offered rate; a dossier
is done when the citizen's receipt email has arrived and the audit log holds its submitted
event. Reported: p50/p99 latency at each rate, and the highest rate whose p99 stays under 1 s.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import create_engine, text

from dossier_client import CITIZEN_ID, submit_request
from harness import Kafka, Postgres
from suite import Suite, running_suite

RATES = (10, 20, 50, 100, 150, 200)  # issue 13 asks for the rows at 100, 150 and 200/s
SECONDS_PER_RATE = 12
SUBMITTED = "vn.motcua.dossier.submitted.v1"


class _MailClock:
    """Notes when each recipient's first email arrives, polling the SMTP sink as it fills."""

    def __init__(self, suite: Suite) -> None:
        self._sink = suite.smtp
        self.arrived: dict[str, float] = {}
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            with self._sink.lock:
                new = self._sink.messages[self._seen :]
                self._seen += len(new)
            now = time.time()
            for recipients, _ in new:
                for r in recipients:
                    self.arrived.setdefault(r, now)

    def __enter__(self) -> _MailClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _measure(suite: Suite, rate: int, console: Console) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, dossiers) at one offered rate."""
    client = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    started: dict[str, float] = {}
    emails: dict[str, str] = {}
    lock = threading.Lock()
    total = rate * SECONDS_PER_RATE

    def submit(n: int) -> None:
        email = f"bench.{uuid.uuid4().hex[:10]}@example.vn"
        request = submit_request("HT-001", f"b-{uuid.uuid4()}", email=email)
        t0 = time.time()
        code = client.submit(request).dossier.code
        with lock:
            started[code] = t0
            emails[code] = email

    engine = create_engine(suite.urls["audit"])
    audited: dict[str, float] = {}
    with _MailClock(suite) as mail:
        with ThreadPoolExecutor(max_workers=32) as pool:
            begin = time.monotonic()
            for n in range(total):
                delay = begin + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(submit, n)
        deadline = time.monotonic() + 120
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{rate}/s: waiting for notified + audited", total=total)
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    for code, at in conn.execute(
                        text(
                            "SELECT dossier_code, recorded_at FROM audit_entries "
                            "WHERE event_type = :t"
                        ),
                        {"t": SUBMITTED},
                    ):
                        if code in started:
                            audited.setdefault(code, at.timestamp())
                done = [c for c in started if emails[c] in mail.arrived and c in audited]
                progress.update(task, completed=len(done))
                if len(done) == total:
                    break
                time.sleep(0.1)
        mailed = {c: mail.arrived[e] for c, e in emails.items() if e in mail.arrived}
    engine.dispose()
    latencies = sorted(
        max(mailed[c], audited[c]) - started[c] for c in started if c in mailed and c in audited
    )
    if len(latencies) < total:
        return float("inf"), float("inf"), len(latencies)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000
    return p50, p99, total


def run(
    console: Console,
    kafka: Kafka,
    postgres: Postgres,
    signing_keys: tuple[bytes, Path],
    token: Callable[..., str],
    folder: Path,
) -> tuple[list[tuple[str, str, float]], dict[str, float]]:
    """Rows for every rate (each measured, also after one failed: its row is asked for), and
    ``pipeline_max_rate_p99_under_1s``: the highest rate below which every rate held."""
    rows: list[tuple[str, str, float]] = []
    best, held = 0, True
    folder.mkdir(parents=True, exist_ok=True)
    with running_suite(kafka, postgres, signing_keys, token, folder) as suite:
        _measure(suite, 2, console)  # warm-up
        for rate in RATES:
            p50, p99, n = _measure(suite, rate, console)
            rows.append(
                (
                    f"end-to-end submit → notified and audited at {rate}/s offered",
                    f"p50 {p50:.0f} ms, p99 {p99:.0f} ms over {n} dossiers",
                    p99 / 1000,
                )
            )
            held = held and p99 < 1000
            if held:
                best = rate
    rows.append(
        (
            "highest offered rate (of " + ", ".join(map(str, RATES)) + "/s) with p99 < 1 s",
            f"{best}/s",
            float(best),
        )
    )
    return rows, {"pipeline_max_rate_p99_under_1s": float(best)}
