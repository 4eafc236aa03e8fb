"""SQLite writers queue on one in-process lock instead of SQLite's sleeping busy handler."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from motcua_kit import db


def _engine(tmp_path: Path, *, busy_timeout_ms: int | None = None) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path}/w.db")
    if busy_timeout_ms is not None:

        @event.listens_for(engine, "connect")
        def _no_waiting(dbapi_conn: Any, _record: Any) -> None:  # after the kit's pragmas
            dbapi_conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    return engine


def test_concurrent_writers_never_meet_sqlites_busy_handler(tmp_path: Path) -> None:
    """With SQLite's busy timeout at zero, any writer that reached BEGIN IMMEDIATE while
    another held the database would fail at once with 'database is locked'. Queued on the
    process's own lock, none does: 8 threads x 40 transactions, each one in, all committed."""
    engine = _engine(tmp_path, busy_timeout_ms=0)
    sessions = db.session_factory(engine)
    inside, most, count_lock = [0], [0], threading.Lock()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                with db.transaction(sessions) as session:
                    session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n * 100 + i})
                    with count_lock:  # counted once the transaction has really begun
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    session.execute(text("SELECT count(*) FROM t"))
                    with count_lock:
                        inside[0] -= 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [], errors[:1]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(DISTINCT n) FROM t")).scalar() == 320
    assert most[0] == 1


def test_without_the_lock_the_same_load_meets_the_busy_handler(tmp_path: Path) -> None:
    """The control for the test above: plain sqlite3 connections, the same zero busy timeout,
    the same load, and 'database is locked' does happen — so the test above can fail."""
    path = tmp_path / "plain.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.close()
    locked: list[sqlite3.OperationalError] = []
    start = threading.Barrier(8)

    def work() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
        start.wait()
        for _ in range(200):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                locked.append(exc)
                continue
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("SELECT count(*) FROM t")
            conn.execute("COMMIT")
        conn.close()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert locked and "locked" in str(locked[0])


def test_the_lock_is_given_back_however_a_transaction_ends(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    sessions = db.session_factory(engine)
    try:
        with db.transaction(sessions) as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    session = sessions()
    session.execute(text("SELECT count(*) FROM t"))  # autobegin, never committed
    session.close()  # the pool's reset ends it
    done = threading.Event()

    def other_thread() -> None:
        with db.transaction(sessions) as s:
            s.execute(text("INSERT INTO t VALUES (2)"))
        done.set()

    threading.Thread(target=other_thread).start()
    assert done.wait(5), "a transaction that ended kept the writer lock"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM t")).scalars().all() == [2]
