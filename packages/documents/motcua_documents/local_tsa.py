"""A local RFC 3161 timestamp authority over HTTP on loopback, for tests and ``make run``.

It answers real ``application/timestamp-query`` POSTs (RFC 3161 §3.4) with tokens signed by
its own certificate, through pyHanko's in-process timestamper. It is not a production TSA: no
clock discipline, no audit. Production points ``tsa_url`` at the province's or a CA's TSA.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from asn1crypto import keys, tsp, x509
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

MAX_QUERY = 16 * 1024


class LocalTsa:
    """``with LocalTsa(cert, key) as tsa: sign(..., tsa_url=tsa.url)``."""

    def __init__(
        self,
        tsa_cert: x509.Certificate,
        tsa_key: keys.PrivateKeyInfo,
        chain: tuple[x509.Certificate, ...] = (),
    ) -> None:
        store = SimpleCertificateStore.from_certs(chain)
        self.stamper = DummyTimeStamper(tsa_cert, tsa_key, certs_to_embed=store)
        self.requests = 0
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                kind = self.headers.get("Content-Type", "")
                if kind != "application/timestamp-query" or not 0 < length <= MAX_QUERY:
                    self.send_error(400, "expected an application/timestamp-query body")
                    return
                try:
                    query = tsp.TimeStampReq.load(self.rfile.read(length))
                    query.native  # noqa: B018 - parse it all now, not lazily while answering
                    answer = tsa.stamper.request_tsa_response(query).dump()
                except ValueError as exc:
                    self.send_error(400, f"malformed TimeStampReq: {exc}")
                    return
                tsa.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsa"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalTsa:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
