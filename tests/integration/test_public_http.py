"""The public HTTP endpoints on uvicorn (docs/adr/0082-public-http-server.md): payment's
callbacks and notify's delivery receipts, each served by its real adapter (stub handlers
behind it) on 127.0.0.1 with the kit's limits set low.

Oversized, slow (slowloris, bounded) and malformed requests each get a clear 4xx or are cut
off, and a good request still succeeds afterwards; a burst from one source is refused (429)
while another source gets through; the endpoint also serves HTTPS with a certificate made
here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from motcua_kit.public_http import PublicHttpOptions
from motcua_notify.adapters.receipts import Receipt, ReceiptServer
from motcua_notify.domain.signing import sign
from motcua_notify.settings import NotifySettings
from motcua_payment.adapters.callback_http import CallbackServer
from motcua_payment.adapters.gateways.base import HttpAnswer
from motcua_payment.settings import PaymentSettings

TIMEOUT = 1.5  # the request timeout the servers here are given
SECRET = "receipt-key-0123456789"
OPTIONS = PublicHttpOptions(
    max_body_bytes=8 * 1024,
    max_header_bytes=8 * 1024,
    request_timeout_seconds=TIMEOUT,
    rate_per_second=1.0,
    rate_burst=20,
    shutdown_seconds=2.0,
)


@dataclass
class Endpoint:
    """One public endpoint under test, and what a good request to it is."""

    name: str
    base: str
    port: int
    good: Callable[[httpx.Client], httpx.Response]
    path: str  # a rate-limited path, for raw requests
    method: str


def _payment(options: PublicHttpOptions) -> tuple[CallbackServer, Callable[[str], Endpoint]]:
    def ipn(gateway: str, query: str, client: str) -> HttpAnswer:
        return HttpAnswer(200, "application/json", json.dumps({"RspCode": "00"}).encode())

    def pay_link(token: str, client: str) -> HttpAnswer:
        return HttpAnswer(303, "text/plain", b"", headers=(("Location", "http://gw/pay"),))

    server = CallbackServer("127.0.0.1", 0, ipn, ipn, pay_link, options)

    def endpoint(base: str) -> Endpoint:
        def good(client: httpx.Client) -> httpx.Response:
            answer = client.get(f"{base}/payment/sandbox/ipn?vnp_TxnRef=1")
            assert answer.json() == {"RspCode": "00"}
            return answer

        return Endpoint("payment", base, server.port, good, "/payment/sandbox/ipn", "GET")

    return server, endpoint


def _notify(options: PublicHttpOptions) -> tuple[ReceiptServer, Callable[[str], Endpoint]]:
    def apply(receipt: Receipt) -> str:
        return "applied"

    server = ReceiptServer("127.0.0.1", 0, {"sms-a": SECRET}, apply, options)

    def endpoint(base: str) -> Endpoint:
        def good(client: httpx.Client) -> httpx.Response:
            body = json.dumps({"client_ref": "n-1", "status": "DELIVRD"}).encode()
            headers = {"X-Signature": sign(SECRET, body), "Content-Type": "application/json"}
            answer = client.post(f"{base}/receipts/sms-a", content=body, headers=headers)
            assert answer.json() == {"result": "applied"}
            return answer

        return Endpoint("notify", base, server.port, good, "/receipts/sms-a", "POST")

    return server, endpoint


MAKERS = {"payment": _payment, "notify": _notify}


@pytest.fixture(params=sorted(MAKERS))
def endpoint(request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    server, describe = MAKERS[request.param](OPTIONS)
    server.start()
    try:
        yield describe(f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()


def _still_up(endpoint: Endpoint) -> None:
    with httpx.Client(timeout=5) as client:
        assert endpoint.good(client).status_code == 200


def _raw(port: int, data: bytes, *, deadline: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.sendall(data)
        return _read_to_close(sock, time.monotonic() + deadline)


def _read_to_close(sock: socket.socket, deadline: float) -> bytes:
    out = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"the server kept the connection open; read {out[:200]!r}")


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# -- the good request -----------------------------------------------------------------------------
def test_a_good_request_is_answered(endpoint: Endpoint) -> None:
    _still_up(endpoint)
    assert httpx.get(f"{endpoint.base}/healthz", timeout=5).status_code == 200


# -- oversized ------------------------------------------------------------------------------------
def test_an_oversized_body_is_413(endpoint: Endpoint) -> None:
    big = b"x" * (OPTIONS.max_body_bytes + 1)
    answer = httpx.request(endpoint.method, f"{endpoint.base}{endpoint.path}", content=big)
    assert answer.status_code == 413
    _still_up(endpoint)


def test_an_oversized_streamed_body_is_413(endpoint: Endpoint) -> None:
    """Chunked, no Content-Length: counted as it arrives."""

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"y" * 1024

    answer = httpx.request(endpoint.method, f"{endpoint.base}{endpoint.path}", content=chunks())
    assert answer.status_code == 413
    _still_up(endpoint)


def test_oversized_headers_are_refused(endpoint: Endpoint) -> None:
    headers = {f"x-pad-{i}": "h" * 1000 for i in range(10)}
    answer = httpx.request(endpoint.method, f"{endpoint.base}{endpoint.path}", headers=headers)
    assert answer.status_code == 431
    # A head that never ends, past the limit: the parser refuses it before it is whole.
    head = f"{endpoint.method} {endpoint.path} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode()
    answer_bytes = _raw(endpoint.port, head + b"h" * (2 * OPTIONS.max_header_bytes))
    assert _status(answer_bytes) == 400
    _still_up(endpoint)


# -- malformed ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)) + b"\r\n\r\n",
        b"NOT AN HTTP REQUEST\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"POST /receipts/sms-a HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
    ids=["tls-hello", "request-line", "header-line", "content-length", "two-lengths"],
)
def test_a_malformed_request_is_400(endpoint: Endpoint, garbage: bytes) -> None:
    assert _status(_raw(endpoint.port, garbage)) == 400
    _still_up(endpoint)


# -- slow -----------------------------------------------------------------------------------------
def _trickle(port: int, data: bytes, every: float) -> tuple[float, bytes]:
    """Send ``data`` a byte every ``every`` seconds until the server cuts the connection
    (bounded: three request timeouts at most); (seconds it took, what the server said)."""
    started = time.monotonic()
    deadline = started + 3 * TIMEOUT
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for byte in data:
            if time.monotonic() > deadline:
                raise AssertionError("the server let a slow client go on past its timeout")
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(every)
            try:
                said = sock.recv(65536)
            except TimeoutError:
                continue
            if said:  # it answered: read to the close
                said += _read_to_close(sock, time.monotonic() + 2)
            return time.monotonic() - started, said
        return time.monotonic() - started, _read_to_close(sock, time.monotonic() + 2)


def test_a_slowloris_client_is_cut_off_and_others_are_served(endpoint: Endpoint) -> None:
    head = f"{endpoint.method} {endpoint.path} HTTP/1.1\r\nHost: x\r\n".encode()
    slow = head + b"".join(f"X-Slow-{i}: a\r\n".encode() for i in range(200))
    served: list[int] = []

    def meanwhile() -> None:  # a good client while the slow one holds its connection
        time.sleep(TIMEOUT / 3)
        with httpx.Client(timeout=5) as client:
            served.append(endpoint.good(client).status_code)

    other = threading.Thread(target=meanwhile)
    other.start()
    took, said = _trickle(endpoint.port, slow, 0.05)
    other.join(10)
    assert TIMEOUT * 0.8 <= took <= TIMEOUT + 1.5, took
    assert said == b"" or _status(said) == 408
    assert served == [200]
    _still_up(endpoint)


def test_a_stalled_body_is_cut_off(endpoint: Endpoint) -> None:
    head = (
        f"{endpoint.method} {endpoint.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
        sock.sendall(head + b"{")
        said = _read_to_close(sock, started + TIMEOUT + 2)
    assert TIMEOUT * 0.8 <= time.monotonic() - started <= TIMEOUT + 2
    assert _status(said) == 408
    _still_up(endpoint)


def test_a_silent_connection_is_closed(endpoint: Endpoint) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
        _read_to_close(sock, started + TIMEOUT + 2)
    assert time.monotonic() - started <= TIMEOUT + 2
    _still_up(endpoint)


def test_stop_is_bounded_with_a_slow_client_connected() -> None:
    options = PublicHttpOptions(request_timeout_seconds=30, shutdown_seconds=1.0)
    for make in MAKERS.values():
        server, _ = make(options)
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < options.shutdown_seconds + 2.5


# -- rate limit -----------------------------------------------------------------------------------
def _client_from(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=5)


def test_a_burst_from_one_source_is_429_and_another_source_gets_through(
    endpoint: Endpoint,
) -> None:
    url = f"{endpoint.base}{endpoint.path}"
    with _client_from("127.0.0.1") as one, _client_from("127.0.0.2") as other:
        answers = [one.request(endpoint.method, url) for _ in range(OPTIONS.rate_burst + 5)]
        codes = [answer.status_code for answer in answers]
        assert 429 not in codes[: OPTIONS.rate_burst - 2], codes  # the burst is let in
        assert codes[-1] == 429, codes  # then refused (the bucket refills at 1/s only)
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert endpoint.good(other).status_code == 200  # another source has its own bucket
        # health checks are not callbacks: never limited
        assert one.get(f"{endpoint.base}/healthz").status_code == 200


def test_the_rate_limit_answers_in_the_endpoints_own_form() -> None:
    server, _ = _notify(PublicHttpOptions(rate_per_second=0.1, rate_burst=1))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/receipts/sms-a"
        assert httpx.post(url, content=b"{}").status_code == 401  # unsigned, but let in
        refused = httpx.post(url, content=b"{}")
        assert refused.status_code == 429
        assert refused.json()["error"].startswith("too many requests")
    finally:
        server.stop()


# -- TLS ------------------------------------------------------------------------------------------
def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_https_with_a_certificate_of_our_own(tmp_path: Path, name: str) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    options = PublicHttpOptions(tls_cert_file=cert_file, tls_key_file=key_file)
    server, describe = MAKERS[name](options)
    server.start()
    try:
        endpoint = describe(f"https://127.0.0.1:{server.port}")
        trust = ssl.create_default_context(cafile=str(cert_file))
        with httpx.Client(verify=trust, timeout=5) as client:
            assert endpoint.good(client).status_code == 200
        # plain HTTP on the TLS port is not served
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=3)
    finally:
        server.stop()


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert_file, _ = _self_signed(tmp_path)
    with pytest.raises(ValueError, match="both"):
        _payment(PublicHttpOptions(tls_cert_file=cert_file))


# -- settings -------------------------------------------------------------------------------------
def test_the_services_expose_the_limits_under_their_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOTCUA_PAYMENT_PUBLIC_HTTP_RATE_BURST", "7")
    monkeypatch.setenv("MOTCUA_NOTIFY_PUBLIC_HTTP_REQUEST_TIMEOUT_SECONDS", "2.5")
    payment = PaymentSettings().public_http_options()
    notify = NotifySettings().public_http_options()
    assert payment.rate_burst == 7 and notify.rate_burst == 50
    assert notify.request_timeout_seconds == 2.5 and payment.request_timeout_seconds == 10.0
    assert payment.max_body_bytes == 8 * 1024  # callbacks are GETs
    assert notify.max_body_bytes == 64 * 1024  # a receipt
