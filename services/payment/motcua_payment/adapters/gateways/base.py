"""The one interface every payment gateway adapter implements.

The service speaks only this interface: it asks a gateway for the URL the payer is sent to,
to read a callback (checking its signature), to report on a payment (reconciliation), to
cancel one and to refund. Everything protocol-specific — parameter names, signing, result
codes, the answer a gateway expects to an IPN — stays inside the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from motcua_payment.domain.callbacks import Notice, RejectionReason
from motcua_payment.domain.payment import Payment, Refund


class GatewayUnavailable(Exception):
    """The gateway could not be asked, or its answer could not be trusted; try again later."""


@dataclass(frozen=True)
class RefundOutcome:
    """The gateway's answer to a refund."""

    succeeded: bool
    transaction_id: str = ""
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class HttpAnswer:
    """What the callback endpoint answers a gateway (each gateway expects its own form)."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class Gateway(Protocol):
    """A payment gateway, as the payment service needs it."""

    @property
    def name(self) -> str:
        """The adapter's name, stored on each payment (e.g. ``sandbox``)."""
        ...

    def redirect_url(self, payment: Payment, return_url: str) -> str:
        """Where the payer pays; the gateway sends them back to ``return_url`` afterwards."""
        ...

    def parse_notification(self, params: Sequence[tuple[str, str]]) -> Notice:
        """Read a callback (IPN or return). Raises ``CallbackRejected`` (bad signature,
        malformed) — the generic checks (time, replay, amount) are the service's."""
        ...

    def acknowledge(self, rejection: RejectionReason | None) -> HttpAnswer:
        """The answer to an IPN: accepted (``None``) or refused for ``rejection``."""
        ...

    def query(self, payment: Payment) -> Notice:
        """Ask the gateway what became of a payment. Raises :class:`GatewayUnavailable`."""
        ...

    def cancel(self, payment: Payment) -> Notice:
        """Tell the gateway to take no money for the payment; returns its state afterwards
        (PAID if the payer was faster). Raises :class:`GatewayUnavailable`."""
        ...

    def refund(self, payment: Payment, refund: Refund) -> RefundOutcome:
        """Give back ``refund.amount_vnd``; idempotent on ``refund.id``. Raises
        :class:`GatewayUnavailable` when the outcome is unknown."""
        ...
