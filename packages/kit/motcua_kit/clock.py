"""Time, the one way motcua reads and writes it: aware UTC instants.

No SQL, no I/O: a service's domain may import it. :mod:`motcua_kit.db` re-exports
:func:`utc` and :func:`aware` for the code that writes and reads rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, overload


class Clock(Protocol):
    """What a service reads the time from (``Service.clock``): tests pass a frozen one."""

    def __call__(self) -> datetime: ...


def utc_now() -> datetime:
    """The system clock: now, aware, in UTC (``Service.clock``'s default)."""
    return datetime.now(UTC)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """A datetime as it is written or compared in SQL: UTC (None stays None).

    SQLite keeps an aware value's wall-clock digits and drops its zone, so a bound in local
    time (Asia/Ho_Chi_Minh) would be compared with stored UTC digits seven hours off. A naive
    value is taken to be UTC already and returned as it is.
    """
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value


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
