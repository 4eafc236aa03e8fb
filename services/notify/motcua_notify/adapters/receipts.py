"""Delivery receipts: the HTTP endpoint providers call back when a message is delivered or not.

    POST /receipts/{provider}            provider: sms-a, sms-b, zalo
    X-Signature: <hex HMAC-SHA256 of the body with the provider's API key / access token>
    {"client_ref": "<our reference>", "message_id": "<theirs>", "status": "DELIVRD", "detail": "…"}

``client_ref`` (``tracking_id`` for Zalo) is the reference motcua sent; ``message_id``
(``msg_id``) the provider's own id — either finds the notification. ``status`` takes the
provider's words (SMPP ``DELIVRD``/``UNDELIV``/``EXPIRED``…, or ours). Unsigned or wrongly
signed receipts are refused (401) and counted; a receipt for an unknown message gets 404 so
the provider's retry logic can tell. The endpoint runs on the kit's public HTTP server
(:mod:`motcua_kit.public_http`): its size limits, request timeout and per-source rate limit
on ``/receipts/...`` answer before this adapter does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from motcua_kit.public_http import ANY_METHOD, PublicHttpOptions, PublicHttpServer
from motcua_notify.domain.signing import verify
from motcua_notify.metrics import RECEIPTS

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
MAX_BODY = 64 * 1024  # the default; MOTCUA_NOTIFY_PUBLIC_HTTP_MAX_BODY_BYTES in a service


@dataclass(frozen=True)
class Receipt:
    provider: str
    reference: str
    provider_ref: str
    status: str
    detail: str


class ReceiptRefused(Exception):
    """The receipt cannot be applied; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


ReceiptHandler = Callable[[Receipt], str]  # returns "applied" or "ignored"; may raise Refused


def parse_receipt(provider: str, body: bytes) -> Receipt:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ReceiptRefused(400, "body must be JSON") from None
    if not isinstance(doc, dict):
        raise ReceiptRefused(400, "body must be a JSON object")
    reference = str(doc.get("client_ref") or doc.get("tracking_id") or "")
    provider_ref = str(doc.get("message_id") or doc.get("msg_id") or "")
    status = str(doc.get("status") or "").strip().lower()
    if not reference and not provider_ref:
        raise ReceiptRefused(400, "client_ref or message_id is required")
    if not status:
        raise ReceiptRefused(400, "status is required")
    return Receipt(provider, reference, provider_ref, status, str(doc.get("detail") or "")[:300])


def _json(status: int, doc: Mapping[str, object]) -> Response:
    return Response(json.dumps(doc).encode(), status, headers={"Content-Type": "application/json"})


def _refusal(status: int, message: str) -> tuple[str, bytes]:
    """The kit's own refusals (413, 429, 431...) in this endpoint's JSON."""
    return "application/json", json.dumps({"error": message}).encode()


def receipt_app(secrets: Mapping[str, str], handler: ReceiptHandler) -> Starlette:
    """The endpoint as an ASGI app; the kit's guard has read the body (within its limit)."""
    secrets = dict(secrets)

    def apply(provider: str, body: bytes, signature: str) -> Response:
        secret = secrets.get(provider)
        if secret is None:
            return _json(404, {"error": f"unknown provider {provider!r}"})
        if not signature or not verify(secret, body, signature):
            RECEIPTS.labels(provider, "refused").inc()
            return _json(401, {"error": "missing or invalid signature"})
        try:
            result = handler(parse_receipt(provider, body))
        except ReceiptRefused as exc:
            RECEIPTS.labels(provider, "unknown" if exc.status == 404 else "refused").inc()
            return _json(exc.status, {"error": str(exc)})
        except Exception:
            log.exception("applying a delivery receipt from %s failed", provider)
            return _json(500, {"error": "internal error"})
        RECEIPTS.labels(provider, result).inc()
        return _json(200, {"result": result})

    async def endpoint(request: Request) -> Response:
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        if request.method == "GET":
            if path == "/healthz":
                return _json(200, {"status": "ok"})
            return _json(404, {"error": "not found"})
        if request.method != "POST":
            return _json(501, {"error": "unsupported method"})
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "receipts":
            return _json(404, {"error": "not found"})
        body = await request.body()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        return await run_in_threadpool(apply, parts[1], body, signature)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=ANY_METHOD)])


def _rate_limited(path: str) -> bool:
    return path.startswith("/receipts/")


class ReceiptServer:
    """The receipts endpoint on its own port (``MOTCUA_NOTIFY_RECEIPTS_PORT``), on the kit's
    public HTTP server (uvicorn, its own thread; ADR 0082)."""

    def __init__(
        self,
        host: str,
        port: int,
        secrets: Mapping[str, str],
        handler: ReceiptHandler,
        options: PublicHttpOptions | None = None,
    ) -> None:
        self._server = PublicHttpServer(
            "notify-receipts",
            receipt_app(secrets, handler),
            host,
            port,
            options or PublicHttpOptions(max_body_bytes=MAX_BODY),
            rate_limited=_rate_limited,
            refusal=_refusal,
        )
        self.port = self._server.port

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
