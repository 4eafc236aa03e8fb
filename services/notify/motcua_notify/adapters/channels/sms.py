"""SMS over HTTP provider APIs, with failover from one provider to the next.

The provider API (the shape most Vietnamese brand-name SMS gateways offer)::

    POST {base_url}/messages
    Authorization: Bearer {api_key}
    Idempotency-Key: {reference}
    {"to": "84905123456", "from": "MOTCUA", "text": "...", "encoding": "gsm7",
     "client_ref": "{reference}"}
    → 2xx {"message_id": "...", "status": "accepted" | "delivered"}

A provider that fails (5xx, 401/403/429, unreachable) or answers slower than the timeout is
skipped for this message — the next one is tried at once — and put at the back of the line
for a cool-down, so a provider outage does not cost every message a timeout. A 4xx about the
message itself (an invalid number) is the recipient's problem: no other provider would do
better, so it is a permanent failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from motcua_notify.adapters.channels.base import (
    ProviderRouting,
    Timer,
    http_failure,
    international_phone,
    short,
)
from motcua_notify.domain.notification import Notification, SendResult, Verdict
from motcua_notify.domain.states import Channel
from motcua_notify.metrics import PROVIDER_FAILOVERS

_FAIL_OVER = {401, 403, 408, 429}


@dataclass(frozen=True)
class SmsProvider:
    name: str  # e.g. "sms-a"; stored with the notification and matched by receipts
    base_url: str
    api_key: str


class HttpSmsProvider:
    """One provider's API."""

    def __init__(self, provider: SmsProvider, sender_id: str, timeout: float) -> None:
        self.provider = provider
        self.sender_id = sender_id
        self._client = httpx.Client(
            base_url=provider.base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            headers={"Authorization": f"Bearer {provider.api_key}"},
        )

    @property
    def name(self) -> str:
        return self.provider.name

    def send(self, notification: Notification, reference: str) -> tuple[SendResult, bool]:
        """(result, whether the next provider should be tried instead)."""
        timer = Timer(Channel.SMS, self.name)
        body = {
            "to": international_phone(notification.recipient),
            "from": self.sender_id,
            "text": notification.body,
            "encoding": str(notification.payload.get("encoding", "gsm7")),
            "client_ref": reference,
        }
        try:
            response = self._client.post(
                "/messages", json=body, headers={"Idempotency-Key": reference}
            )
        except httpx.HTTPError as exc:
            failure = http_failure(exc)
            return timer.done(SendResult(failure.verdict, self.name, detail=failure.detail)), True
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            message_id = str(answer.get("message_id") or "") if isinstance(answer, dict) else ""
            delivered = isinstance(answer, dict) and answer.get("status") == "delivered"
            result = SendResult(
                Verdict.DELIVERED if delivered else Verdict.ACCEPTED,
                self.name,
                message_id,
                f"{self.name} {status}: {'delivered' if delivered else 'accepted'}",
            )
            return timer.done(result), False
        detail = f"{self.name} {status}: {short(response.text, 200)}"
        if status >= 500 or status in _FAIL_OVER:
            return timer.done(SendResult(Verdict.TEMPORARY, self.name, detail=detail)), True
        return timer.done(SendResult(Verdict.PERMANENT, self.name, detail=detail)), False

    def close(self) -> None:
        self._client.close()


class FailoverSms:
    """The SMS channel: providers in order of preference, failing over within one attempt.

    An idempotency key only means something to the provider that saw it. So the provider an
    attempt goes to is written down before the message is handed over (``provider_for`` at the
    claim, ``on_failover`` before each switch), and a resend of that attempt after a crash goes
    to that provider first: it answers with the message it already took instead of a second
    SMS from another provider. It is its own ``routing`` (``ProviderRouting``).
    """

    channel = Channel.SMS

    def __init__(
        self,
        providers: Sequence[HttpSmsProvider],
        cooldown_seconds: float = 30.0,
        on_failover: Callable[[Notification, str, str], None] | None = None,
    ) -> None:
        if not providers:
            raise ValueError("the SMS channel needs at least one provider")
        self.providers = list(providers)
        self.cooldown = cooldown_seconds
        # (notification, reference, next provider): called before the message goes elsewhere
        self.on_failover = on_failover
        self.routing: ProviderRouting | None = self  # it picks the provider of each attempt
        self._benched_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def _order(self, first: str = "") -> list[HttpSmsProvider]:
        now = time.monotonic()
        with self._lock:
            ready = [p for p in self.providers if self._benched_until.get(p.name, 0) <= now]
            benched = [p for p in self.providers if p not in ready]
        order = ready + benched
        return sorted(order, key=lambda p: p.name != first)  # stable: the rest keep their order

    def provider_for(self, interrupted: str = "") -> str:
        """Where an attempt will go first: the provider of the attempt it resends, if any."""
        return self._order(interrupted)[0].name

    def _bench(self, provider: HttpSmsProvider) -> None:
        with self._lock:
            self._benched_until[provider.name] = time.monotonic() + self.cooldown

    def send(self, notification: Notification, reference: str) -> SendResult:
        failures: list[str] = []
        order = self._order(notification.provider)
        for i, provider in enumerate(order):
            if i and self.on_failover is not None:
                self.on_failover(notification, reference, provider.name)
            result, fail_over = provider.send(notification, reference)
            if not fail_over:
                if failures:
                    detail = f"{result.detail} (after: {'; '.join(failures)})"
                    return SendResult(result.verdict, result.provider, result.provider_ref, detail)
                return result
            failures.append(result.detail)
            self._bench(provider)
            if i + 1 < len(order):
                PROVIDER_FAILOVERS.labels(Channel.SMS.value, provider.name).inc()
        detail = "all SMS providers failed: " + "; ".join(failures)
        return SendResult(Verdict.TEMPORARY, order[-1].name, detail=detail)

    def close(self) -> None:
        for provider in self.providers:
            provider.close()
