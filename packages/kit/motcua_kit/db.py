"""Database plumbing: engines for PostgreSQL and the embedded SQLite default, and migrations.

Each service owns its database; the kit's own tables (outbox, inbox) are added to the service's
metadata so they live in the same database and commit in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction commits (metrics count only what held)."""
    event.listen(session, "after_commit", lambda _s: action(), once=True)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """A datetime read back from the database as an aware UTC value.

    SQLite hands back naive values (motcua stores UTC there); PostgreSQL aware ones.
    """
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def utc(value: datetime) -> datetime:
    """A datetime as it is written or compared in SQL: UTC.

    SQLite keeps an aware value's wall-clock digits and drops its zone, so a bound in local
    time (Asia/Ho_Chi_Minh) would be compared with stored UTC digits seven hours off.
    """
    return value.astimezone(UTC) if value.tzinfo else value


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the dialect: SQLite gets WAL, a busy timeout and real transactions."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

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
            # IMMEDIATE takes the write lock up front: no deadlock-prone lock upgrades.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


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
