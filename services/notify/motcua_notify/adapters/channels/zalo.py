"""A Zalo-style messaging API: template messages to the account behind a phone number.

Shaped like Zalo's notification service (ZNS)::

    POST {api_url}/message/template
    access_token: {token}
    {"phone": "84905123456", "template_id": "...", "template_data": {...},
     "tracking_id": "{reference}"}
    → 200 {"error": 0, "message": "Success", "data": {"msg_id": "...", "sent_time": "..."}}

``error`` ≠ 0 is a refusal: codes meaning the phone has no account (or cannot receive) are
permanent, the rest (quota, throttling, the provider's own trouble) temporary.
"""

from __future__ import annotations

from collections.abc import Iterable

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

# Phone invalid, no account for the phone, account cannot receive, template not allowed for
# this user: retrying cannot change these.
PERMANENT_ERRORS = frozenset({-108, -118, -119, -139})


class ZaloApi:
    channel = Channel.ZALO
    routing: ProviderRouting | None = None  # one provider: nothing to pick
    provider = "zalo"

    def __init__(
        self,
        api_url: str,
        access_token: str,
        timeout: float,
        permanent_errors: Iterable[int] = PERMANENT_ERRORS,
    ) -> None:
        self.permanent_errors = frozenset(permanent_errors)
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            headers={"access_token": access_token},
        )

    def send(self, notification: Notification, reference: str) -> SendResult:
        timer = Timer(self.channel, self.provider)
        body = {
            "phone": international_phone(notification.recipient),
            "template_id": notification.payload.get("template_id", ""),
            "template_data": notification.payload.get("params", {}),
            "tracking_id": reference,
        }
        try:
            response = self._client.post("/message/template", json=body)
        except httpx.HTTPError as exc:
            failure = http_failure(exc)
            return timer.done(SendResult(failure.verdict, self.provider, detail=failure.detail))
        if response.status_code >= 500 or response.status_code in (408, 429):
            return timer.done(
                SendResult(
                    Verdict.TEMPORARY,
                    self.provider,
                    detail=f"zalo {response.status_code}: {short(response.text, 200)}",
                )
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "error" not in answer:
            return timer.done(
                SendResult(
                    Verdict.TEMPORARY,
                    self.provider,
                    detail=f"zalo {response.status_code}: unexpected answer "
                    f"{short(response.text, 120)}",
                )
            )
        code = answer.get("error")
        if code == 0:
            data = answer.get("data")
            if not isinstance(data, dict):
                data = {}
            return timer.done(
                SendResult(
                    Verdict.ACCEPTED,
                    self.provider,
                    str(data.get("msg_id") or ""),
                    "zalo: accepted",
                )
            )
        verdict = Verdict.PERMANENT if code in self.permanent_errors else Verdict.TEMPORARY
        return timer.done(
            SendResult(
                verdict,
                self.provider,
                detail=f"zalo error {code}: {short(str(answer.get('message', '')), 200)}",
            )
        )

    def close(self) -> None:
        self._client.close()
