"""Audit log benchmark: proof time stays flat as the log grows, and what an append costs.

Measured in one run on the service's real SQL node store (SQLite, the embedded default):

1. Inclusion and consistency proof time at 1k, 10k and 100k entries, as ratios to 1k: the
   log stores every perfect subtree, so a proof is one size query and one batched read of
   O(log n) rows, however large the log (flat means a ratio near 1). Each size is a log of
   its own (its own SQLite file or PostgreSQL database), and the proofs are timed in turn,
   one of each size per round, so that load drifting on a shared machine is not read as
   growth.
2. Append rate through the batched path (ADR 0046) at 1k and 100k entries: entries staged
   ``STAGE_PER_TRANSACTION`` per transaction with one statement (``stage_many``: what a batch
   handler of the batched consumer does per poll), then
   sequenced by the service's ``Sequencer`` in batches of ``SEQUENCER_BATCH`` (one lock, one
   transaction, hashes in memory, bulk writes); entries/s = entries / (staging + sequencing
   seconds), one thread, so it is the work per entry. The sequencer's own rate is reported
   too, against the 5,000/s target.
3. Staging alone, one entry per transaction (today's per-record consumer), against a bare
   insert of the same row into an equally large plain table, timed alternately with it (on a
   shared disk the commit's fsync dominates both): what the log adds to a writer's commit.
4. Offline verification of a 100k-entry export vs bare SHA-256 over the same entries.

SQLite (the embedded default) unless ``run(console, database_url=...)`` or ``--database-url``
names a PostgreSQL database; with PostgreSQL, ``--replicas`` also measures two sequencing
processes against one (entries per CPU-second of the processes).

``run(console)`` returns ``(measure, detail, ratio)`` rows for bench/run.py; the headline
numbers are also left in :data:`RESULTS` (``audit_append_rate_100k``, ...) for a JSON report.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, insert
from sqlalchemy.orm import Session, sessionmaker

from motcua_audit.adapters import db
from motcua_audit.domain.entry import Actor, Entry, EntryKind, Role
from motcua_audit.domain.tree_head import TreeHeadSigner, keyring
from motcua_audit.domain.verifier import LogExport, verify_export
from motcua_audit.sequencer import Sequencer
from motcua_kit.db import make_engine, migrate, session_factory

SIZES = (1_000, 10_000, 100_000)
PROOFS = 300
APPENDS = 500  # single-entry staging transactions timed per size (against the bare insert)
BATCHED = 5_000  # entries staged and sequenced through the batched path per size
STAGE_PER_TRANSACTION = 100
SEQUENCER_BATCH = 1_000
TARGET_APPEND_RATE = 5_000.0  # issue 13: audit append at 100k entries >= 5,000 entries/s

RESULTS: dict[str, float] = {}
"""Headline numbers of the last run (entries/s, ratios), for a machine-readable report."""
_T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def _entry(i: int) -> Entry:
    code = f"STP-2611{i % 28 + 1:02d}-{i % 9973:04d}"
    return Entry(
        kind=EntryKind.EVENT,
        event_id=f"{i:012d}-4c36-9d1f-6a1d0c5e7f10",
        event_source="/motcua/dossier",
        event_type="vn.motcua.dossier.received.v1",
        event_subject=code,
        event_time=_T0 + timedelta(milliseconds=i),
        topic="motcua.dossier.v1",
        actor=Actor("officer-3", Role.OFFICER, "STP"),
        dossier_code=code,
        payload_sha256=hashlib.sha256(i.to_bytes(8, "big")).digest(),
        recorded_at=_T0 + timedelta(milliseconds=i, microseconds=300),
    )


def run(console: Console, database_url: str | None = None) -> list[tuple[str, str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix="motcua-bench-audit-"))
    try:
        return _run(console, workdir, database_url or f"sqlite:///{workdir}/audit.db")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _Log:
    """One audit log (its own database) filled to one of :data:`SIZES`."""

    def __init__(self, url: str) -> None:
        migrate(url, "motcua_audit:migrations")
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self.sequencer = Sequencer(
            self.sessions, db.AuditLogRepository(), batch_size=SEQUENCER_BATCH
        )
        self.size = 0


def _databases(url: str, workdir: Path) -> tuple[dict[int, str], Callable[[], None]]:
    """A database per size (the largest is ``url``), and how to drop the others.

    Each size is its own log so that the proof times of all sizes can be taken alternately
    at the end: on a shared machine, load that drifts between the first and the last size
    would otherwise show up as growth (PostgreSQL's ratio swung from 0.4 to 2.4).
    """
    if not url.startswith("postgresql"):
        urls = {n: f"sqlite:///{workdir}/audit-{n}.db" for n in SIZES[:-1]}
        return {**urls, SIZES[-1]: url}, lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    names = {n: f"{base.database}_{n // 1000}k" for n in SIZES[:-1]}
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    urls = {
        n: base.set(database=name).render_as_string(hide_password=False)
        for n, name in names.items()
    }
    return {**urls, SIZES[-1]: url}, drop


def _run(console: Console, workdir: Path, url: str) -> list[tuple[str, str, float]]:
    urls, drop_databases = _databases(url, workdir)
    try:
        return _measure(console, workdir, url, urls)
    finally:
        drop_databases()


def _measure(
    console: Console, workdir: Path, url: str, urls: dict[int, str]
) -> list[tuple[str, str, float]]:
    repo = db.AuditLogRepository()
    rng = random.Random(6962)
    inclusion: dict[int, float] = {}
    consistency: dict[int, float] = {}
    batched_rate: dict[int, float] = {}
    sequencer_rate: dict[int, float] = {}
    stage_rate: dict[int, float] = {}
    bare_rate: dict[int, float] = {}
    logs = {n: _Log(u) for n, u in urls.items()}

    bare = _BareTable(url if url.startswith("postgresql") else f"sqlite:///{workdir}/bare.db")

    def stage_one(log: _Log) -> float:
        """Seconds to stage one entry in its own transaction (as a per-record consumer)."""
        t0 = time.perf_counter()
        with log.sessions() as session, session.begin():
            repo.stage(session, _entry(log.size))
        log.size += 1
        return time.perf_counter() - t0

    def batched(log: _Log, count: int) -> tuple[float, float]:
        """(staging seconds, sequencing seconds) for ``count`` entries on the batched path."""
        t0 = time.perf_counter()
        for start in range(0, count, STAGE_PER_TRANSACTION):
            with log.sessions() as session, session.begin():
                stop = min(start + STAGE_PER_TRANSACTION, count)
                repo.stage_many(
                    session, [(_entry(log.size + k), None, None) for k in range(start, stop)]
                )
        t1 = time.perf_counter()
        taken = log.sequencer.drain()
        t2 = time.perf_counter()
        assert taken == count, (taken, count)
        log.size += count
        return t1 - t0, t2 - t1

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("audit: filling the logs", total=sum(SIZES))
        done = 0
        for target in SIZES:
            log = logs[target]
            # Fill in batches (one transaction per 1,000), then measure at about `target`.
            before = BATCHED + APPENDS
            while log.size < target - before:
                batch = min(1_000, target - before - log.size)
                with log.sessions() as session, session.begin():
                    repo.append_many(
                        session, [(_entry(log.size + k), None, None) for k in range(batch)]
                    )
                log.size += batch
                progress.update(task, completed=done + log.size)
            staging_s, sequencing_s = batched(log, BATCHED)
            batched_rate[target] = BATCHED / (staging_s + sequencing_s)
            sequencer_rate[target] = BATCHED / sequencing_s
            # Interleaved with bare inserts into a table as large as the log, so both see the
            # same disk and the same table size (the commit's fsync dominates both).
            bare.grow_to(log.size)
            ours, theirs = [], []
            for _ in range(APPENDS):
                ours.append(stage_one(log))
                theirs.append(bare.insert(1))
            log.sequencer.drain()
            stage_rate[target] = 1 / statistics.median(ours)
            bare_rate[target] = 1 / statistics.median(theirs)
            done += log.size
            progress.update(task, completed=done)

    # Proof times: one proof of each size in turn, so all sizes see the same load.
    samples: dict[tuple[str, int], list[float]] = {
        (kind, n): [] for kind in ("inclusion", "consistency") for n in SIZES
    }
    for _ in range(PROOFS):
        for n, log in logs.items():
            t0 = time.perf_counter()
            with log.sessions() as session:
                repo.log(session).inclusion_proof(rng.randrange(n), n)
            t1 = time.perf_counter()
            with log.sessions() as session:
                repo.log(session).consistency_proof(rng.randrange(1, n), n)
            t2 = time.perf_counter()
            samples["inclusion", n].append(t1 - t0)
            samples["consistency", n].append(t2 - t1)
    for n in SIZES:
        inclusion[n] = statistics.median(samples["inclusion", n])
        consistency[n] = statistics.median(samples["consistency", n])

    big_log = logs[SIZES[-1]]
    sessions = big_log.sessions
    bare.close()
    verify_s, sha_s = _verification(sessions, repo)
    for log in logs.values():
        log.engine.dispose()

    small, big = SIZES[0], SIZES[-1]
    dialect = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    ms = 1000.0
    rows: list[tuple[str, str, float]] = []
    for n in SIZES[1:]:
        rows.append(
            (
                f"audit inclusion proof time, {n // 1000}k vs {small // 1000}k entries",
                f"{inclusion[n] * ms:.3f} ms vs {inclusion[small] * ms:.3f} ms",
                inclusion[n] / inclusion[small],
            )
        )
    for n in SIZES[1:]:
        rows.append(
            (
                f"audit consistency proof time, {n // 1000}k vs {small // 1000}k entries",
                f"{consistency[n] * ms:.3f} ms vs {consistency[small] * ms:.3f} ms",
                consistency[n] / consistency[small],
            )
        )
    for n in (small, big):
        rows.append(
            (
                f"audit append rate at {n // 1000}k entries ({dialect}; staged "
                f"{STAGE_PER_TRANSACTION} per transaction, sequenced {SEQUENCER_BATCH} per "
                "batch) vs the 5,000/s target",
                f"{batched_rate[n]:.0f}/s (sequencer alone {sequencer_rate[n]:.0f}/s)",
                batched_rate[n] / TARGET_APPEND_RATE,
            )
        )
    rows.append(
        (
            f"audit append rate at {big // 1000}k vs {small // 1000}k entries (batched path)",
            f"{batched_rate[big]:.0f}/s vs {batched_rate[small]:.0f}/s",
            batched_rate[big] / batched_rate[small],
        )
    )
    for n in (small, big):
        rows.append(
            (
                f"audit staging, one entry per transaction, vs bare insert of the entry row, "
                f"at {n // 1000}k entries",
                f"{stage_rate[n]:.0f}/s vs {bare_rate[n]:.0f}/s",
                stage_rate[n] / bare_rate[n],
            )
        )
    rows.append(
        (
            f"offline verification of a {big // 1000}k-entry export vs bare SHA-256 of it",
            f"{verify_s * ms:.0f} ms vs {sha_s * ms:.0f} ms",
            verify_s / sha_s,
        )
    )
    RESULTS.update(
        audit_append_rate_100k=batched_rate[big],
        audit_append_rate_1k=batched_rate[small],
        audit_sequencer_rate_100k=sequencer_rate[big],
        audit_inclusion_proof_ratio_100k_1k=inclusion[big] / inclusion[small],
        audit_consistency_proof_ratio_100k_1k=consistency[big] / consistency[small],
    )
    return rows


class _BareTable:
    """The same entry row into a plain table (primary key only) of the same size, one
    transaction each: what any durable append pays before the log's own work."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url)
        md = MetaData()
        self._table = Table(
            "bench_bare_rows",
            md,
            Column("idx", Integer, primary_key=True),
            Column("event_id", String(64)),
            Column("entry", LargeBinary),
        )
        md.create_all(self._engine)
        self._sessions = session_factory(self._engine)
        self._next = 0

    def grow_to(self, rows: int) -> None:
        """Bulk-fill (untimed) to ``rows`` rows."""
        while self._next < rows:
            batch = range(self._next, min(self._next + 1_000, rows))
            with self._sessions() as session, session.begin():
                session.execute(
                    insert(self._table),
                    [{"idx": i, "event_id": str(i), "entry": _entry(i).encode()} for i in batch],
                )
            self._next = batch.stop

    def insert(self, count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            i = self._next
            self._next += 1
            data = _entry(i).encode()
            with self._sessions() as session, session.begin():
                session.execute(insert(self._table).values(idx=i, event_id=str(i), entry=data))
        return time.perf_counter() - t0

    def close(self) -> None:
        self._engine.dispose()


def _verification(
    sessions: sessionmaker[Session], repo: db.AuditLogRepository
) -> tuple[float, float]:
    """Seconds to verify the whole log as an export, and to merely SHA-256 its entries."""
    with sessions() as session:
        size = repo.size(session)
        entries = [s.canonical for s in repo.range(session, 0, size)]
        recorded = repo.recorded_leaf_hashes(session, 0, size)
        root = repo.log(session).root(size)
    signer = TreeHeadSigner.generate()
    export = LogExport(entries, signer.sign(size, root), recorded)
    keys = keyring([signer.public_key])
    t0 = time.perf_counter()
    report = verify_export(export, keys)
    verify_s = time.perf_counter() - t0
    assert report.ok, report.problems[:3]
    t0 = time.perf_counter()
    for e in entries:
        hashlib.sha256(e).digest()
    sha_s = time.perf_counter() - t0
    return verify_s, sha_s


REPLICA_ENTRIES = 20_000
REPLICA_ROUNDS = 3  # one process, then two, this many times: medians of each


def replicas(url: str, entries: int = REPLICA_ENTRIES) -> list[tuple[str, str, float]]:
    """One vs two processes staging and sequencing into one PostgreSQL log (as replicas do).

    Each process stages its share ``STAGE_PER_TRANSACTION`` per transaction and runs the
    service's sequencer loop, woken by its own commits; all of them take turns at the log's
    lock. One process and two take turns, ``REPLICA_ROUNDS`` times, and their medians are
    compared (the machine is shared). The processes start, import and connect first, then
    all begin on one signal: the wall time runs from it to the last one done, and the work
    per CPU-second counts each process's user+sys time over its own work only (not the
    database's). Counting start-up too (some 4 CPU-s per process here, against about 1 for
    10,000 entries) made a second process look 40% less efficient than it is.
    """
    import subprocess
    import sys

    measured: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for count in (1, 2) * REPLICA_ROUNDS:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.audit",
                    "--database-url",
                    url,
                    "--worker",
                    f"r{count}-{w}",
                    "--count",
                    str(entries // count),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for w in range(count)
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        cpu = 0.0
        for proc in procs:
            assert proc.stdout is not None
            word, seconds = proc.stdout.readline().split()
            assert word == "done", word
            cpu += float(seconds)
        wall = time.perf_counter() - t0
        for proc in procs:
            assert proc.wait(600) == 0
        measured[count].append((entries / wall, entries / cpu))
    engine = make_engine(url)
    with session_factory(engine)() as session:
        assert db.AuditLogRepository.staged_count(session) == 0
    engine.dispose()
    one_rate, one_eff, two_rate, two_eff = (
        statistics.median(m[k] for m in measured[count]) for count in (1, 2) for k in (0, 1)
    )
    RESULTS.update(replica_efficiency_audit_sequencer=two_eff / one_eff)
    return [
        (
            "audit staging + sequencing, two processes vs one (PostgreSQL), per CPU-second",
            f"{two_eff:.0f} vs {one_eff:.0f} entries/CPU-s ({two_rate:.0f}/s vs {one_rate:.0f}/s)",
            two_eff / one_eff,
        )
    ]


def _worker(url: str, tag: str, count: int) -> None:
    """One replica's share: stage ``count`` entries in batches; the sequencer loop appends.

    Prints ``ready`` once connected, waits for a line on stdin, then prints ``done`` and the
    CPU seconds (all threads) its work took."""
    import sys

    engine = make_engine(url)
    sessions = session_factory(engine)
    repo = db.AuditLogRepository()
    with sessions() as session:
        repo.size(session)  # connected: the pool holds a connection
    sequencer = Sequencer(sessions, repo, batch_size=SEQUENCER_BATCH, interval=0.05)
    sequencer.start()
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0 = time.process_time()
    for start in range(0, count, STAGE_PER_TRANSACTION):
        with sessions() as session, session.begin():
            stop = min(start + STAGE_PER_TRANSACTION, count)
            items = [
                (
                    replace(_entry(k), event_id=f"{tag}-{k}", event_source=f"/bench/{tag}"),
                    None,
                    None,
                )
                for k in range(start, stop)
            ]
            repo.stage_many(session, items)
        sequencer.wake()
    sequencer.stop(30)
    sequencer.drain()  # whatever of ours the loop had not taken yet
    print("done", time.process_time() - cpu0, flush=True)
    engine.dispose()


if __name__ == "__main__":  # python -m bench.audit [--database-url URL] [--replicas]
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--replicas", action="store_true", help="PostgreSQL: 1 vs 2 processes")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.database_url, args.worker, args.count)
        raise SystemExit(0)
    out = Console(width=200)
    rows = run(out, args.database_url)
    if args.replicas and args.database_url:
        rows += replicas(args.database_url)
    for measure, detail, ratio in rows:
        out.print(f"| {measure} | {detail} | **{ratio:.3f}** |")
