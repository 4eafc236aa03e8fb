"""The HTTP server for endpoints that face the outside: gateways' and providers' callbacks.

An ASGI app (Starlette, built by a service's adapter) on uvicorn, in a background thread of the
service: the kit's host owns the signals, ``stop`` ends it within a bounded wait. Every request
passes a guard first (docs/adr/0082-public-http-server.md):

* a request head (request line and headers) over ``max_header_bytes``: 400 from the parser
  when it arrives incomplete, 431 when it arrives whole;
* a request whose head and body have not arrived within ``request_timeout_seconds`` of its
  first byte (a slowloris client, a stalled upload): 408 and the connection closed — uvicorn
  itself only times out idle keep-alive connections;
* a malformed request (bad request line, bad header, bad ``Content-Length``): 400;
* a body over ``max_body_bytes``: 413, announced or streamed, before the app sees any of it;
* more than ``rate_burst`` requests at once, or ``rate_per_second`` sustained, from one source
  on the paths the service names (its callback paths): 429 with ``Retry-After``;
* more than ``max_connections`` connections at once: 503 (uvicorn's concurrency limit).

The kit knows no payment or notify policy: the app, which paths are rate limited and how a
refusal's body looks are the service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import uvicorn
from pydantic import Field
from pydantic_settings import BaseSettings
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
#: (status, message) -> (content type, body) of a refusal the guard answers itself
Refusal = Callable[[int, str], tuple[str, bytes]]
#: For a Starlette route that takes every method (the adapter answers the ones it does not serve)
ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def plain_refusal(status: int, message: str) -> tuple[str, bytes]:
    return "text/plain; charset=utf-8", f"{message}\n".encode()


# -- settings ----------------------------------------------------------------------------------
class PublicHttpSettings(BaseSettings):
    """The public endpoint's limits; a service's settings inherit them under its own prefix
    (``MOTCUA_<SERVICE>_PUBLIC_HTTP_...``)."""

    public_http_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="Largest request body accepted; a larger one is answered 413.",
    )
    public_http_max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line plus headers; a larger head is answered 431 or 400.",
    )
    public_http_request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A request's head and body must arrive within this long of its first "
        "byte, else 408 and the connection is closed (slowloris defence).",
    )
    public_http_keep_alive_seconds: int = Field(
        default=5, ge=1, description="An idle keep-alive connection is closed after this long."
    )
    public_http_max_connections: int = Field(
        default=256,
        ge=1,
        description="Connections (or requests in flight) at once; beyond, requests get 503.",
    )
    public_http_rate_per_second: float = Field(
        default=20.0,
        ge=0,
        description="Requests per second one source may sustain on the callback paths "
        "(a token bucket per client address); 0 turns the limit off.",
    )
    public_http_rate_burst: int = Field(
        default=50,
        ge=1,
        description="Requests one source may send at once on the callback paths; beyond the "
        "bucket, 429 with Retry-After.",
    )
    public_http_rate_sources: int = Field(
        default=10_000,
        ge=1,
        description="Sources whose buckets are remembered (least recently seen forgotten).",
    )
    public_http_forwarded_allow_ips: str = Field(
        default="",
        description="Comma-separated addresses or CIDRs of the proxies (the ingress "
        "controller) whose X-Forwarded-For names the client; empty: the peer address is the "
        "source. Behind an ingress, set it, or every caller shares one rate-limit bucket.",
    )
    public_http_tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) to serve HTTPS with; unset: plain HTTP (TLS at "
        "the ingress).",
    )
    public_http_tls_key_file: Path | None = Field(
        default=None, description="PEM private key of public_http_tls_cert_file."
    )
    public_http_shutdown_seconds: float = Field(
        default=5.0,
        gt=0,
        description="On stop, requests in hand get this long to finish, then are cancelled.",
    )

    def public_http_options(self) -> PublicHttpOptions:
        return PublicHttpOptions(
            max_body_bytes=self.public_http_max_body_bytes,
            max_header_bytes=self.public_http_max_header_bytes,
            request_timeout_seconds=self.public_http_request_timeout_seconds,
            keep_alive_seconds=self.public_http_keep_alive_seconds,
            max_connections=self.public_http_max_connections,
            rate_per_second=self.public_http_rate_per_second,
            rate_burst=self.public_http_rate_burst,
            rate_sources=self.public_http_rate_sources,
            forwarded_allow_ips=self.public_http_forwarded_allow_ips,
            tls_cert_file=self.public_http_tls_cert_file,
            tls_key_file=self.public_http_tls_key_file,
            shutdown_seconds=self.public_http_shutdown_seconds,
        )


@dataclass(frozen=True)
class PublicHttpOptions:
    """The server's limits (defaults as :class:`PublicHttpSettings`)."""

    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 16 * 1024
    request_timeout_seconds: float = 10.0
    keep_alive_seconds: int = 5
    max_connections: int = 256
    rate_per_second: float = 20.0
    rate_burst: int = 50
    rate_sources: int = 10_000
    forwarded_allow_ips: str = ""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    shutdown_seconds: float = 5.0


# -- per-source rate limit ---------------------------------------------------------------------
class RateLimiter:
    """A token bucket per source: ``burst`` requests at once, refilled at ``per_second``.

    At most ``max_sources`` buckets are kept; the least recently seen source is forgotten (it
    starts again with a full bucket). Thread-safe.
    """

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("per_second must be > 0, burst and max_sources >= 1")
        self.per_second = per_second
        self.burst = burst
        self.max_sources = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def acquire(self, source: str) -> float:
        """Take one token for ``source``: 0.0 when allowed, else the seconds until a token."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(source, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.per_second
            self._buckets[source] = (tokens, now)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


# -- the guard ---------------------------------------------------------------------------------
class _Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Guard:
    """ASGI middleware in front of the service's app: head size, rate limit, body size.

    The body (at most ``max_body_bytes``) is read before the app is called and handed to it
    whole, so the app never waits on a slow client and never sees an oversized body.
    """

    def __init__(
        self,
        app: App,
        options: PublicHttpOptions,
        *,
        rate_limited: Callable[[str], bool] = lambda path: False,
        refusal: Refusal = plain_refusal,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self.options = options
        self.rate_limited = rate_limited
        self.refusal = refusal
        if limiter is None and options.rate_per_second > 0:
            limiter = RateLimiter(
                options.rate_per_second, options.rate_burst, max_sources=options.rate_sources
            )
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and websockets are not served
        try:
            self._check_head(scope)
            body = await self._read_body(scope, receive)
        except _Refused as exc:
            await self._refuse(send, exc)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when the client goes

        await self.app(scope, replay, send)

    def _check_head(self, scope: Scope) -> None:
        head = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + 16
        head += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if head > self.options.max_header_bytes:
            raise _Refused(431, "request headers too large")
        if self.limiter is not None and self.rate_limited(scope["path"]):
            client = scope.get("client")
            wait = self.limiter.acquire(client[0] if client else "")
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                raise _Refused(429, f"too many requests; retry after {seconds} s", seconds)
        for name, value in scope["headers"]:
            # h11 has checked that a Content-Length is a number
            if name == b"content-length" and int(value) > self.options.max_body_bytes:
                raise _Refused(413, "request body too large")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "client went away")  # not answered: nobody listens
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.options.max_body_bytes:
                raise _Refused(413, "request body too large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send, refused: _Refused) -> None:
        content_type, body = self.refusal(refused.status, str(refused))
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if refused.retry_after:
            headers.append((b"retry-after", str(refused.retry_after).encode()))
        else:
            headers.append((b"connection", b"close"))  # an unread body stays unread
        start = {"type": "http.response.start", "status": refused.status, "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": body})


# -- the protocol: uvicorn's h11 one with a deadline per request --------------------------------
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\n"
    b"connection: close\r\n\r\n"
    b"request timeout\n"
)


class _Config(uvicorn.Config):
    request_timeout_seconds: float = 10.0


class _TimedH11Protocol(H11Protocol):
    """uvicorn arms a timer only on idle keep-alive connections: a client that trickles its
    headers a byte at a time keeps a connection forever. Here a request's head and body must
    arrive within ``request_timeout_seconds`` of its first byte (or of the connection)."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY) or self.transport.is_closing():
            self._disarm()  # the request is in (or refused): the app's time is the app's

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        timeout = getattr(self.config, "request_timeout_seconds", 10.0)
        self._deadline = self.loop.call_later(timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the kit's host owns SIGTERM and SIGINT


# -- the server --------------------------------------------------------------------------------
def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host or "0.0.0.0").version == 6:
            family = socket.AF_INET6
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class PublicHttpServer:
    """``app`` behind the guard on uvicorn, in a thread named ``name``.

    The socket is bound in the constructor (``port`` 0: a free one, read back from ``port``);
    ``start`` returns once the server accepts; ``stop`` lets the requests in hand finish for
    ``shutdown_seconds`` and returns within that and a second more.
    """

    def __init__(
        self,
        name: str,
        app: App,
        host: str,
        port: int,
        options: PublicHttpOptions | None = None,
        *,
        rate_limited: Callable[[str], bool] = lambda path: False,
        refusal: Refusal = plain_refusal,
    ) -> None:
        self.name = name
        self.options = options = options or PublicHttpOptions()
        if (options.tls_cert_file is None) != (options.tls_key_file is None):
            raise ValueError(f"{name}: TLS needs both a certificate and a key file, or neither")
        self.guard = Guard(app, options, rate_limited=rate_limited, refusal=refusal)
        config = _Config(
            self.guard,
            http=_TimedH11Protocol,
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,  # query strings carry signatures: never in an access log
            server_header=False,
            proxy_headers=bool(options.forwarded_allow_ips),
            forwarded_allow_ips=options.forwarded_allow_ips or None,
            limit_concurrency=options.max_connections,
            timeout_keep_alive=options.keep_alive_seconds,
            timeout_graceful_shutdown=max(1, math.ceil(options.shutdown_seconds)),
            h11_max_incomplete_event_size=options.max_header_bytes,
            ssl_certfile=options.tls_cert_file,
            ssl_keyfile=options.tls_key_file,
        )
        config.request_timeout_seconds = options.request_timeout_seconds
        config.load()  # a bad certificate or key fails here, in the caller's thread
        self._sock = _bind(host, port)
        self.port = int(self._sock.getsockname()[1])
        self.scheme = "https" if config.is_ssl else "http"
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # SystemExit from uvicorn's startup too
            self._failure = exc
            log.exception("%s: the HTTP server stopped", self.name)

    def start(self, timeout: float = 10.0) -> PublicHttpServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                raise RuntimeError(f"{self.name}: the HTTP server did not start") from (
                    self._failure
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop accepting, let the requests in hand finish, close: a bounded wait."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(self.options.shutdown_seconds + 1.0)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(1.0)
        self._sock.close()
