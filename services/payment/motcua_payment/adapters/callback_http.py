"""The HTTP endpoint gateways call: ``GET /payment/<gateway>/ipn`` (server-to-server
notification) and ``GET /payment/<gateway>/return`` (the payer's browser coming back); and
``GET /p/<token>``, the short pay link an SMS carries (a redirect to the gateway's page).

Only translation happens here — routing, reading the query string, the pages and redirects
answered (on the kit's public HTTP server, :mod:`motcua_kit.public_http`: its limits come
first); what a callback means is the service's business
(:mod:`motcua_payment.usecases.callbacks`).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from motcua_kit.public_http import ANY_METHOD, PublicHttpOptions, PublicHttpServer
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


def callback_app(ipn: CallbackHandler, ret: CallbackHandler, paylink: PayLinkHandler) -> Starlette:
    """The endpoint as an ASGI app: one route, the paths read as they always were."""

    def route(method: str, path: str, query: str, client: str) -> HttpAnswer:
        if method != "GET":
            return HttpAnswer(501, "text/plain", b"unsupported method\n")
        segments = path.strip("/").split("/")
        if path == "/healthz":
            return HttpAnswer(200, "text/plain", b"ok\n")
        if len(segments) == 2 and segments[0] == "p" and not query:
            return _traced("GET /p/{token}", lambda: paylink(segments[1], client))
        if len(segments) != 3 or segments[0] != "payment" or segments[2] not in ("ipn", "return"):
            return HttpAnswer(404, "text/plain", b"not found\n")
        if len(query) > MAX_QUERY:
            return HttpAnswer(414, "text/plain", b"query too long\n")
        handler = ipn if segments[2] == "ipn" else ret
        # A span per callback: the events it causes carry its trace context.
        return _traced(
            f"GET /payment/{{gateway}}/{segments[2]}",
            lambda: handler(segments[1], query, client),
        )

    async def endpoint(request: Request) -> Response:
        scope = request.scope
        answer = await run_in_threadpool(
            route,
            request.method,
            scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
            scope["query_string"].decode("latin-1"),
            request.client.host if request.client else "",
        )
        headers = {
            "Content-Type": answer.content_type,
            "Cache-Control": "no-store",
            **dict(answer.headers),
        }
        return Response(answer.body, answer.status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=ANY_METHOD)])


def _traced(route: str, call: Callable[[], HttpAnswer]) -> HttpAnswer:
    with _tracer.start_as_current_span(
        route,
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": route},
    ) as span:
        try:
            answer = call()
        except Exception as exc:
            log.exception("callback handling failed")
            span.record_exception(exc)
            answer = HttpAnswer(500, "text/plain", b"internal error\n")
        span.set_attribute("http.response.status_code", answer.status)
    return answer


def _rate_limited(path: str) -> bool:
    """The callback paths (IPN, return, pay links) are limited per source; /healthz is not."""
    return path.startswith(("/payment/", "/p/"))


class CallbackServer:
    """The callback endpoint on the kit's public HTTP server (uvicorn, its own thread);
    ``stop`` lets the callbacks in hand finish (ADR 0082)."""

    def __init__(
        self,
        host: str,
        port: int,
        ipn: CallbackHandler,
        ret: CallbackHandler,
        paylink: PayLinkHandler,
        options: PublicHttpOptions | None = None,
    ) -> None:
        self._server = PublicHttpServer(
            "payment-callbacks",
            callback_app(ipn, ret, paylink),
            host,
            port,
            options,
            rate_limited=_rate_limited,
        )
        self.port = self._server.port

    def start(self) -> CallbackServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


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
