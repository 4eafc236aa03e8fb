"""Signed webhooks to subscribing systems (HMAC-SHA256 of the body, as GOV.UK Pay signs).

Each POST carries the JSON body stored with the notification, byte for byte, and::

    Motcua-Signature: <hex HMAC-SHA256 of the body with the subscription's secret>
    Motcua-Notification-Id: <notification id>   (stable across retries: dedupe on it)
    Idempotency-Key: <notification id>

A 2xx answer is delivery. 410 Gone and other 4xx (but 408 and 429) mean the subscriber will
never take it: permanent. 5xx, 408, 429, timeouts and refused connections are retried.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from motcua_notify.adapters.channels.base import ProviderRouting, Timer, http_failure, short
from motcua_notify.domain.notification import Notification, SendResult, Verdict
from motcua_notify.domain.states import Channel
from motcua_notify.domain.subscriptions import SIGNATURE_HEADER, WebhookSubscription, sign


class SignedWebhooks:
    channel = Channel.WEBHOOK
    routing: ProviderRouting | None = None  # one provider: nothing to pick

    def __init__(self, subscriptions: Iterable[WebhookSubscription], timeout: float) -> None:
        self.subscriptions = {s.id: s for s in subscriptions}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)

    def send(self, notification: Notification, reference: str) -> SendResult:
        provider = "webhook"
        sub = self.subscriptions.get(notification.recipient)
        if sub is None:
            return SendResult(
                Verdict.TECHNICAL,
                provider,
                detail=f"webhook subscription {notification.recipient!r} is no longer configured",
            )
        body = notification.body.encode("utf-8")
        timer = Timer(self.channel, provider)
        try:
            response = self._client.post(
                sub.url,
                content=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    SIGNATURE_HEADER: sign(sub.secret, body),
                    "Motcua-Notification-Id": notification.id,
                    "Idempotency-Key": notification.id,
                    "User-Agent": "motcua-notify",
                },
            )
        except httpx.HTTPError as exc:
            failure = http_failure(exc)
            return timer.done(SendResult(failure.verdict, provider, detail=failure.detail))
        status = response.status_code
        detail = f"subscriber answered {status}"
        if 200 <= status < 300:
            return timer.done(SendResult(Verdict.DELIVERED, provider, detail=detail))
        detail += f": {short(response.text, 200)}"
        if status >= 500 or status in (408, 429):
            return timer.done(SendResult(Verdict.TEMPORARY, provider, detail=detail))
        return timer.done(SendResult(Verdict.PERMANENT, provider, detail=detail))

    def close(self) -> None:
        self._client.close()
