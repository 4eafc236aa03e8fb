"""Delivery receipts: the HTTP endpoint providers call back when a message is delivered or not.

    POST /receipts/{provider}            provider: sms-a, sms-b, zalo
    X-Signature: <hex HMAC-SHA256 of the body with the provider's API key / access token>
    {"client_ref": "<our reference>", "message_id": "<theirs>", "status": "DELIVRD", "detail": "…"}

``client_ref`` (``tracking_id`` for Zalo) is the reference motcua sent; ``message_id``
(``msg_id``) the provider's own id — either finds the notification. ``status`` takes the
provider's words (SMPP ``DELIVRD``/``UNDELIV``/``EXPIRED``…, or ours). Unsigned or wrongly
signed receipts are refused (401) and counted; a receipt for an unknown message gets 404 so
the provider's retry logic can tell.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from motcua_notify.domain.signing import verify
from motcua_notify.metrics import RECEIPTS

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
MAX_BODY = 64 * 1024


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


class _Handler(BaseHTTPRequestHandler):
    server: _ReceiptHttpServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("receipts: " + format, *args)

    def _answer(self, status: int, doc: Mapping[str, object]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "receipts":
            self._answer(404, {"error": "not found"})
            return
        provider = parts[1]
        secret = self.server.secrets.get(provider)
        if secret is None:
            self._answer(404, {"error": f"unknown provider {provider!r}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"error": "receipt too large"})
            return
        body = self.rfile.read(length)
        signature = self.headers.get(SIGNATURE_HEADER, "")
        if not signature or not verify(secret, body, signature):
            RECEIPTS.labels(provider, "refused").inc()
            self._answer(401, {"error": "missing or invalid signature"})
            return
        try:
            result = self.server.handler(parse_receipt(provider, body))
        except ReceiptRefused as exc:
            RECEIPTS.labels(provider, "unknown" if exc.status == 404 else "refused").inc()
            self._answer(exc.status, {"error": str(exc)})
            return
        except Exception:
            log.exception("applying a delivery receipt from %s failed", provider)
            self._answer(500, {"error": "internal error"})
            return
        RECEIPTS.labels(provider, result).inc()
        self._answer(200, {"result": result})


class _ReceiptHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], secrets: Mapping[str, str], handler: ReceiptHandler
    ) -> None:
        super().__init__(address, _Handler)
        self.secrets = dict(secrets)
        self.handler = handler


class ReceiptServer:
    """The receipts endpoint on its own port (``MOTCUA_NOTIFY_RECEIPTS_PORT``)."""

    def __init__(
        self, host: str, port: int, secrets: Mapping[str, str], handler: ReceiptHandler
    ) -> None:
        self._server = _ReceiptHttpServer((host, port), secrets, handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="notify-receipts",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
