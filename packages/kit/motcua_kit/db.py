"""Database plumbing: engines for PostgreSQL and the embedded SQLite default, and migrations.

Each service owns its database; the kit's own tables (outbox, inbox) are added to the service's
metadata so they live in the same database and commit in the same transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Re-exported: the code that writes and reads rows has long imported them from here.
from motcua_kit.clock import aware as aware
from motcua_kit.clock import utc as utc


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction commits (metrics count only what held)."""
    event.listen(session, "after_commit", lambda _s: action(), once=True)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the dialect: SQLite gets WAL, a busy timeout and real transactions."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writers = _queued_writer_connection(threading.Lock())
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False, "factory": writers}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy issue BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # In-process queue first, then IMMEDIATE takes SQLite's write lock up front: no
            # deadlock-prone lock upgrades, and no busy-handler sleeps (ADR 0013).
            conn.connection.dbapi_connection.take_writer_lock()
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


#: Beyond this a waiter stops queueing in-process and falls back on SQLite's busy timeout,
#: so a transaction that never ends cannot wedge the process (it was an error before too).
WRITER_WAIT_SECONDS = 30.0


def _queued_writer_connection(lock: threading.Lock) -> type[sqlite3.Connection]:
    """A sqlite3 connection class whose transactions queue on ``lock`` (ADR 0013).

    SQLite lets one writer in; the others poll with sleeps that grow to 100 ms, which is
    where the p99 tail of concurrent submits came from. A Python lock hands the database
    over the moment the holder's COMMIT or ROLLBACK has returned: the lock is taken just
    before BEGIN IMMEDIATE and given back by the DBAPI call that really ends the transaction
    (SQLAlchemy's own commit event comes before it, which would let the next BEGIN race it).
    """

    class QueuedWriter(sqlite3.Connection):
        holds_writer_lock = False

        def take_writer_lock(self) -> None:
            if not self.holds_writer_lock:
                self.holds_writer_lock = lock.acquire(timeout=WRITER_WAIT_SECONDS)

        def _give(self) -> None:
            if self.holds_writer_lock:
                self.holds_writer_lock = False
                lock.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._give()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._give()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._give()

    return QueuedWriter


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: everything inside commits together or not at all."""
    with sessions() as session, session.begin():
        yield session


def migrate(url: str, script_location: str, revision: str = "head") -> None:
    """Run the service's Alembic migrations (``python -m motcua_<svc> migrate`` and tests)."""
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)
