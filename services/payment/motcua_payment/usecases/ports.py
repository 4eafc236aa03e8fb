"""What every use case works with: the service's dependencies, behind one protocol.

The service object satisfies :class:`Ports`; the use cases read its dependencies on each call
(the host builds them after the service object, and tests replace them by name).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session

from motcua_kit.clock import Clock
from motcua_kit.envelope import Event
from motcua_kit.errors import FailedPrecondition
from motcua_kit.service import ServiceContext
from motcua_payment.adapters import db
from motcua_payment.adapters.gateways.base import Gateway
from motcua_payment.settings import PaymentSettings

#: The service's log, whichever use case writes to it (one logger name for operators).
log = logging.getLogger("motcua_payment.service")


class Ports(Protocol):
    """The service's dependencies, as the use cases need them."""

    @property
    def clock(self) -> Clock: ...
    @property
    def repository(self) -> db.PaymentRepository: ...
    @property
    def gateways(self) -> Mapping[str, Gateway]: ...
    @property
    def context(self) -> ServiceContext[Any]: ...
    @property
    def settings(self) -> PaymentSettings: ...

    def publish_events(self, session: Session, events: Sequence[Event]) -> None:
        """Built events into the outbox, in the caller's transaction, each on its topic."""


def gateway(ports: Ports, name: str) -> Gateway:
    """The configured gateway adapter a payment goes through."""
    try:
        return ports.gateways[name]
    except KeyError:
        raise FailedPrecondition(f"payment gateway {name!r} is not configured") from None
