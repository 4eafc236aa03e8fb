"""The HTTP endpoint gateways call: ``GET /payment/<gateway>/ipn`` (server-to-server
notification) and ``GET /payment/<gateway>/return`` (the payer's browser coming back); and
``GET /p/<token>``, the short pay link an SMS carries (a redirect to the gateway's page).

Only translation happens here — routing, reading the query string, the pages and redirects
answered; what a callback means is the service's business
(:mod:`motcua_payment.usecases.callbacks`).
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

from opentelemetry import trace

from motcua_payment.adapters.gateways.base import HttpAnswer
from motcua_payment.domain.callbacks import CallbackRejected, RejectionReason
from motcua_payment.domain.payment import Payment, format_vnd

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("motcua.payment.callbacks")

#: (gateway name, raw query string, client address) → answer
CallbackHandler = Callable[[str, str, str], HttpAnswer]
#: (pay link token, client address) → answer
PayLinkHandler = Callable[[str, str], HttpAnswer]
MAX_QUERY = 8 * 1024
_MAX_QUERY_FIELDS = 64


def query_pairs(query: str) -> list[tuple[str, str]]:
    """A callback's query string as ordered pairs (repeats kept, for the gateway to refuse);
    an unreadable one, or one with too many fields, is a MALFORMED callback."""
    try:
        return parse_qsl(
            query,
            keep_blank_values=True,
            strict_parsing=bool(query),
            max_num_fields=_MAX_QUERY_FIELDS,
        )
    except ValueError as exc:
        raise CallbackRejected(RejectionReason.MALFORMED, f"unreadable query: {exc}") from None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # seconds a slow client may hold a thread

    def _answer(self, answer: HttpAnswer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")
        if parts.path == "/healthz":
            self._answer(HttpAnswer(200, "text/plain", b"ok\n"))
            return
        if len(segments) == 2 and segments[0] == "p" and not parts.query:
            self._pay_link(segments[1])
            return
        if len(segments) != 3 or segments[0] != "payment" or segments[2] not in ("ipn", "return"):
            self._answer(HttpAnswer(404, "text/plain", b"not found\n"))
            return
        if len(parts.query) > MAX_QUERY:
            self._answer(HttpAnswer(414, "text/plain", b"query too long\n"))
            return
        handler = self.server.ipn if segments[2] == "ipn" else self.server.ret
        route = f"/payment/{{gateway}}/{segments[2]}"
        # A span per callback: the events it causes carry its trace context.
        with _tracer.start_as_current_span(
            f"GET {route}",
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": "GET", "http.route": route},
        ) as span:
            try:
                answer = handler(segments[1], parts.query, self.client_address[0])
            except Exception as exc:
                log.exception("callback handling failed")
                span.record_exception(exc)
                answer = HttpAnswer(500, "text/plain", b"internal error\n")
            span.set_attribute("http.response.status_code", answer.status)
        self._answer(answer)

    def _pay_link(self, token: str) -> None:
        with _tracer.start_as_current_span(
            "GET /p/{token}",
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": "GET", "http.route": "/p/{token}"},
        ) as span:
            try:
                answer = self.server.paylink(token, self.client_address[0])
            except Exception as exc:
                log.exception("pay link handling failed")
                span.record_exception(exc)
                answer = HttpAnswer(500, "text/plain", b"internal error\n")
            span.set_attribute("http.response.status_code", answer.status)
        self._answer(answer)

    def log_message(self, format: str, *args: object) -> None:
        return  # the query string holds the signature: never write it to the access log


class _Server(ThreadingHTTPServer):
    # HTTP/1.0 (one request per connection) and joined threads: stopping waits for the
    # callbacks in hand, never for an idle keep-alive connection.
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        addr: tuple[str, int],
        ipn: CallbackHandler,
        ret: CallbackHandler,
        paylink: PayLinkHandler,
    ) -> None:
        super().__init__(addr, _Handler)
        self.ipn = ipn
        self.ret = ret
        self.paylink = paylink


class CallbackServer:
    """The callback endpoint in a daemon thread; ``stop`` finishes the request in hand."""

    def __init__(
        self,
        host: str,
        port: int,
        ipn: CallbackHandler,
        ret: CallbackHandler,
        paylink: PayLinkHandler,
    ) -> None:
        self._server = _Server((host, port), ipn, ret, paylink)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="payment-callbacks", daemon=True
        )

    def start(self) -> CallbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _html(status: int, title: str, body: str) -> HttpAnswer:
    page = _PAGE.format(title=html.escape(title), body=body)
    return HttpAnswer(status, "text/html; charset=utf-8", page.encode())


def result_page(payment: Payment) -> HttpAnswer:
    """What the payer sees on return: the state we know, never what the browser claimed."""
    lines = [
        f"<p>Hồ sơ: <b>{html.escape(payment.dossier_code)}</b></p>",
        f"<p>Số tiền: <b>{html.escape(format_vnd(payment.amount_vnd))}</b></p>",
    ]
    if payment.receipt is not None:
        lines.append(f"<p>Số biên lai: <b>{html.escape(payment.receipt.number)}</b></p>")
    return _html(200, payment.state.page_text, "\n".join(lines))


def unknown_link_page() -> HttpAnswer:
    return _html(404, "Đường dẫn không tồn tại", "<p>Đường dẫn thanh toán này không đúng.</p>")


def expired_link_page(payment: Payment) -> HttpAnswer:
    state = html.escape(payment.state.page_text)
    body = (
        f"<p>Hồ sơ {html.escape(payment.dossier_code)}: {state}.</p>"
        "<p>Đường dẫn thanh toán này không còn dùng được; "
        "vui lòng tra cứu hồ sơ trên Cổng dịch vụ công để thanh toán lại.</p>"
    )
    return _html(410, "Đường dẫn thanh toán đã hết hạn", body)


def refused_page() -> HttpAnswer:
    return _html(
        400,
        "Không xác thực được kết quả thanh toán",
        "<p>Kết quả thanh toán không hợp lệ. Vui lòng kiểm tra lại trên cổng dịch vụ công.</p>",
    )


def redirect(url: str) -> HttpAnswer:
    return HttpAnswer(303, "text/plain", b"", headers=(("Location", url),))


def portal_redirect(portal: str, payment: Payment) -> HttpAnswer:
    """On to the portal's result page, told which payment and the state the service knows."""
    query_string = urlencode({"payment_id": payment.id, "state": payment.state.value})
    return redirect(f"{portal}{'&' if '?' in portal else '?'}{query_string}")


def unknown_gateway() -> HttpAnswer:
    return HttpAnswer(404, "text/plain", b"unknown gateway\n")
