"""Audit log benchmark: proof time stays flat as the log grows, and what an append costs.

Measured in one run on the service's real SQL node store (SQLite, the embedded default):

1. Inclusion and consistency proof time at 1k, 10k and 100k entries, as ratios to 1k: the
   log stores every perfect subtree, so a proof is one size query and one batched read of
   O(log n) rows, however large the log (flat means a ratio near 1).
2. Append rate (one entry per transaction, as the consumer does: lock, frontier read, node
   and entry inserts; 1 / median latency) at 100k vs 1k entries, and against a bare insert
   of the same row into an equally large plain table, timed alternately with it (on a
   shared disk the commit's fsync dominates both).
3. Offline verification of a 100k-entry export vs bare SHA-256 over the same entries.

``run(console)`` returns ``(measure, detail, ratio)`` rows for bench/run.py.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
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
from motcua_kit.db import make_engine, migrate, session_factory

SIZES = (1_000, 10_000, 100_000)
PROOFS = 300
APPENDS = 500
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


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run(console: Console) -> list[tuple[str, str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix="motcua-bench-audit-"))
    try:
        return _run(console, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(console: Console, workdir: Path) -> list[tuple[str, str, float]]:
    url = f"sqlite:///{workdir}/audit.db"
    migrate(url, "motcua_audit:migrations")
    engine = make_engine(url)
    sessions = session_factory(engine)
    repo = db.AuditLogRepository()
    rng = random.Random(6962)
    inclusion: dict[int, float] = {}
    consistency: dict[int, float] = {}
    append_rate: dict[int, float] = {}
    bare_rate: dict[int, float] = {}
    size = 0

    bare = _BareTable(workdir)

    def appends(count: int) -> float:
        """Seconds for ``count`` appends, one transaction each (as the consumer does)."""
        nonlocal size
        t0 = time.perf_counter()
        for _ in range(count):
            with sessions() as session, session.begin():
                repo.append(session, _entry(size))
            size += 1
        return time.perf_counter() - t0

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("audit: filling the log", total=SIZES[-1])
        for target in SIZES:
            # Fill in batches (one transaction per 1,000), then measure at exactly `target`.
            while size < target - APPENDS:
                batch = min(1_000, target - APPENDS - size)
                with sessions() as session, session.begin():
                    repo.append_many(
                        session, [(_entry(size + k), None, None) for k in range(batch)]
                    )
                size += batch
                progress.update(task, completed=size)
            # Interleaved with bare inserts into a table as large as the log, so both see the
            # same disk and the same table size (the commit's fsync dominates both).
            bare.grow_to(size)
            # One of each in turn, and the median of each: fsync stalls on a shared disk hit
            # both alike and do not decide the ratio.
            ours, theirs = [], []
            for _ in range(APPENDS):
                ours.append(appends(1))
                theirs.append(bare.insert(1))
            append_rate[target] = 1 / statistics.median(ours)
            bare_rate[target] = 1 / statistics.median(theirs)
            progress.update(task, completed=size)

            def one_inclusion(n: int = target) -> None:
                with sessions() as session:
                    repo.log(session).inclusion_proof(rng.randrange(n), n)

            def one_consistency(n: int = target) -> None:
                with sessions() as session:
                    repo.log(session).consistency_proof(rng.randrange(1, n), n)

            inclusion[target] = _timed(one_inclusion, PROOFS)
            consistency[target] = _timed(one_consistency, PROOFS)

    bare.close()
    verify_s, sha_s = _verification(sessions, repo)
    engine.dispose()

    small, big = SIZES[0], SIZES[-1]
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
    relative = {n: append_rate[n] / bare_rate[n] for n in (small, big)}
    rows.append(
        (
            f"audit append rate at {big // 1000}k vs {small // 1000}k entries "
            "(each relative to a bare insert timed with it)",
            f"{append_rate[big]:.0f}/s of {bare_rate[big]:.0f}/s vs "
            f"{append_rate[small]:.0f}/s of {bare_rate[small]:.0f}/s",
            relative[big] / relative[small],
        )
    )
    for n in (small, big):
        rows.append(
            (
                f"audit append rate vs bare insert of the entry row, at {n // 1000}k entries",
                f"{append_rate[n]:.0f}/s vs {bare_rate[n]:.0f}/s",
                append_rate[n] / bare_rate[n],
            )
        )
    rows.append(
        (
            f"offline verification of a {big // 1000}k-entry export vs bare SHA-256 of it",
            f"{verify_s * ms:.0f} ms vs {sha_s * ms:.0f} ms",
            verify_s / sha_s,
        )
    )
    return rows


class _BareTable:
    """The same entry row into a plain table (primary key only) of the same size, one
    transaction each: what any durable append pays before the log's own work."""

    def __init__(self, workdir: Path) -> None:
        self._engine = make_engine(f"sqlite:///{workdir}/bare.db")
        md = MetaData()
        self._table = Table(
            "rows",
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


if __name__ == "__main__":  # python -m bench.audit
    out = Console()
    for measure, detail, ratio in run(out):
        out.print(f"| {measure} | {detail} | **{ratio:.3f}** |")
