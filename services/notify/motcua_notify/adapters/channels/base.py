"""The one interface every channel implements, and the HTTP helpers providers share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import httpx

from motcua_notify.domain.notification import Notification, SendResult, Verdict
from motcua_notify.domain.states import Channel
from motcua_notify.metrics import PROVIDER_LATENCY


class ProviderRouting(Protocol):
    """How a channel with several providers picks one per attempt (SMS failover).

    An idempotency reference means something only to the provider that saw it, so the claim
    writes down where an attempt goes first (``provider_for``) and the channel reports each
    switch before it makes it (``on_failover(notification, reference, next provider)``).
    """

    on_failover: Callable[[Notification, str, str], None] | None

    def provider_for(self, interrupted: str = "") -> str: ...


class ChannelAdapter(Protocol):
    """Sends one notification on one channel.

    ``reference`` is the attempt's idempotency reference: the same after a crash mid-send,
    new after a known failure. Adapters pass it to providers that support one, so a resend
    of the same attempt is not delivered twice. ``routing`` is declared by a channel that
    picks among several providers per attempt, None by one with a single provider.
    """

    channel: Channel
    routing: ProviderRouting | None

    def send(self, notification: Notification, reference: str) -> SendResult: ...

    def close(self) -> None: ...


def international_phone(national: str) -> str:
    """``0905123456`` → ``84905123456`` (what Vietnamese SMS and Zalo APIs take)."""
    return "84" + national[1:] if national.startswith("0") else national


class Timer:
    """Measures one provider call into the latency histogram."""

    def __init__(self, channel: Channel, provider: str) -> None:
        self.channel = channel
        self.provider = provider
        self.started = time.perf_counter()

    def done(self, result: SendResult) -> SendResult:
        PROVIDER_LATENCY.labels(self.channel.value, self.provider, result.verdict.value).observe(
            time.perf_counter() - self.started
        )
        return result


def http_failure(exc: httpx.HTTPError) -> SendResult:
    """A transport failure: the provider may be down or slow; try again (or elsewhere)."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return SendResult(Verdict.TEMPORARY, detail=f"provider {kind}: {type(exc).__name__}")


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
