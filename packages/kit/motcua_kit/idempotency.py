"""Create once per key: the one idempotency protocol of motcua's create calls.

A caller names its request with a key (a *scope*: who asked, and the key they sent) and the
service remembers, with what it created, a *fingerprint* of the request's body. Asked again:

* the same body under the same key replays what was created the first time;
* another body under the same key is refused (a key names one request);
* two calls racing with one key: both look, find nothing, both create; the database's unique
  index on the scope lets one commit and the other fail with ``IntegrityError``. The loser
  tries once more, and now finds the winner's result: a replay, or a refusal.

Where the scope is stored, what is created and what the refusal says are the service's;
the order of the steps and the one retry are this module's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from motcua_kit.db import transaction

K = TypeVar("K")
R = TypeVar("R")

#: What a scope already holds: the first result, and the fingerprint of the request that made
#: it (None where none was kept: never equal to a request's).
Earlier = tuple[R, str | None]


def idempotent(
    sessions: sessionmaker[Session],
    scope: K,
    fingerprint: str,
    *,
    find: Callable[[Session, K], Earlier[R] | None],
    create: Callable[[Session, K], R],
    refuse: Callable[[R], Exception],
) -> tuple[R, bool]:
    """``create`` once per ``scope``; returns (result, replayed).

    Each attempt is one transaction: ``find`` looks the scope up (after whatever locks it
    takes first); a result made with ``fingerprint`` is replayed, one made with another is
    refused with ``refuse(result)``; nothing found, ``create`` makes and stores it, with the
    scope. An ``IntegrityError`` (a concurrent call with the same scope committed first) runs
    the attempt once more; a second one is raised.
    """
    for attempt in (1, 2):
        try:
            with transaction(sessions) as session:
                earlier = find(session, scope)
                if earlier is not None:
                    result, earlier_fingerprint = earlier
                    if earlier_fingerprint != fingerprint:
                        raise refuse(result)
                    return result, True
                return create(session, scope), False
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
