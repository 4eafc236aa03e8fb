"""A sandbox gateway that behaves like the Vietnamese gateways (VNPay), over real HTTP.

What a merchant sees:

* ``GET /paymentv2/vpcpay.html?<signed query>`` — the redirect URL the payer opens; the
  signature is checked, the transaction recorded, and a page with "pay" / "cancel" buttons
  shown. Paying sends the server-to-server notification (IPN, a signed ``GET`` to the
  merchant's IPN URL) and then redirects the browser to the merchant's return URL with the
  same signed parameters.
* ``POST /merchant_webapi/api/transaction`` — signed JSON commands: ``querydr`` (what became of
  a payment; reconciliation), ``refund`` (full or partial, idempotent on ``vnp_RequestId``),
  and ``cancel`` (a sandbox extension: take no money for this order any more).

What tests (and the demo) use instead of a browser — the ``/sandbox/api`` endpoints:

* ``POST /sandbox/api/pay`` ``{"payment_url": ..., "outcome": "success" | "fail" | "cancel",
  "deliver_ipn": true}`` → opens the URL as the browser would, settles the transaction, sends
  the IPN (unless ``deliver_ipn`` is false: a lost notification) and answers with the
  transaction number, the IPN query and the merchant's answer, and the signed return URL;
* ``POST /sandbox/api/notify`` ``{"merchant": ..., "txn_ref": ...}`` → send the IPN again;
* ``PUT /sandbox/api/merchants/<code>`` ``{"secret": ..., "ipn_url": ...}`` → register a merchant;
* ``PUT /sandbox/api/faults`` ``{"refund": "" | "decline" | "error", "query": "" | "error"}``;
* ``GET /sandbox/api/transactions/<merchant>/<txn_ref>`` → the transaction as JSON.

State is in memory: a sandbox forgets everything when it stops. Its transaction numbers
(``vnp_TransactionNo``, the merchant's replay nonce) still never repeat across restarts: they
count up from the wall clock in microseconds, as a real gateway's never restart at 1.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from motcua_payment.adapters.gateways import signing
from motcua_payment.adapters.gateways import vnpay_protocol as vp

log = logging.getLogger(__name__)
_DIGITS = re.compile(r"[0-9]{1,18}")

OUTCOMES = {
    "success": (vp.STATUS_PAID, vp.RESPONSE_OK),
    "fail": (vp.STATUS_FAILED, vp.RESPONSE_INSUFFICIENT_FUNDS),
    "cancel": (vp.STATUS_FAILED, vp.RESPONSE_CUSTOMER_CANCELLED),
}
_PAY_FIELDS = (
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_Amount",
    "vnp_CurrCode",
    "vnp_TxnRef",
    "vnp_OrderInfo",
    "vnp_ReturnUrl",
    "vnp_CreateDate",
    "vnp_ExpireDate",
)


class SandboxError(Exception):
    """A request the sandbox refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Merchant:
    """A merchant account: terminal code (vnp_TmnCode), hash secret, IPN URL."""

    code: str
    secret: bytes
    ipn_url: str


@dataclass
class SandboxTransaction:
    """One order at the gateway. Amounts are on the wire's scale (đồng × 100)."""

    merchant: str
    txn_ref: str
    amount: int
    currency: str
    order_info: str
    return_url: str
    create_date: str
    expire_at: datetime | None
    status: str = vp.STATUS_PENDING
    response_code: str = ""
    transaction_no: str = ""
    pay_date: datetime | None = None
    bank_code: str = "NCB"
    refunded: int = 0
    ipn_deliveries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Faults:
    """Failures to inject: ``refund`` "decline" / "error", ``query`` "error"."""

    refund: str = ""
    query: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def _first_number() -> int:
    """Where this run's transaction numbers start: microseconds since the epoch.

    The payment service remembers every transaction number it applied, for good, and refuses a
    repeat as a replay. A counter restarting at a constant made the second ``make run`` fail;
    one started from the clock stays above every number an earlier run issued unless that run
    issued more than a million a second (the wall clock, not the injectable ``clock``, because
    a test's frozen clock must not make two runs collide).
    """
    return time.time_ns() // 1000


class SandboxGateway:
    """The gateway's behaviour, and the HTTP server in front of it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        merchants: Iterable[Merchant] = (),
        *,
        clock: Callable[[], datetime] = _now,
        ipn_timeout: float = 10.0,
        first_number: int | None = None,
    ) -> None:
        self.merchants: dict[str, Merchant] = {m.code: m for m in merchants}
        self.transactions: dict[tuple[str, str], SandboxTransaction] = {}
        self.faults = Faults()
        self._refunds: dict[tuple[str, str], dict[str, str]] = {}
        self._numbers = itertools.count(_first_number() if first_number is None else first_number)
        self._clock = clock
        self._lock = threading.RLock()
        self._http = httpx.Client(timeout=ipn_timeout)
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def start(self) -> SandboxGateway:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-gateway",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._http.close()

    def __enter__(self) -> SandboxGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- merchants ---------------------------------------------------------------------------
    def add_merchant(self, merchant: Merchant) -> None:
        with self._lock:
            self.merchants[merchant.code] = merchant

    def _merchant(self, code: str) -> Merchant:
        merchant = self.merchants.get(code)
        if merchant is None:
            raise SandboxError(400, f"unknown merchant {code!r}")
        return merchant

    # -- the payer's side --------------------------------------------------------------------
    def open(self, params: Mapping[str, str]) -> SandboxTransaction:
        """The payer opened a payment URL: check it and record the order (once)."""
        merchant = self._merchant(params.get("vnp_TmnCode", ""))
        if not signing.verify(params, merchant.secret):
            raise SandboxError(400, "invalid checksum (vnp_SecureHash)")
        missing = [f for f in _PAY_FIELDS if not params.get(f)]
        if missing:
            raise SandboxError(400, f"missing {', '.join(missing)}")
        if params["vnp_Command"] != vp.PAY or not _DIGITS.fullmatch(params["vnp_Amount"]):
            raise SandboxError(400, "not a payment request")
        expire = params.get("vnp_ExpireDate", "")
        try:
            expire_at = vp.parse_time(expire) if expire else None
        except ValueError:
            raise SandboxError(400, "vnp_ExpireDate is not yyyyMMddHHmmss") from None
        key = (merchant.code, params["vnp_TxnRef"])
        with self._lock:
            txn = self.transactions.get(key)
            if txn is None:
                txn = SandboxTransaction(
                    merchant=merchant.code,
                    txn_ref=params["vnp_TxnRef"],
                    amount=int(params["vnp_Amount"]),
                    currency=params["vnp_CurrCode"],
                    order_info=params["vnp_OrderInfo"],
                    return_url=params["vnp_ReturnUrl"],
                    create_date=params["vnp_CreateDate"],
                    expire_at=expire_at,
                )
                self.transactions[key] = txn
            elif txn.amount != int(params["vnp_Amount"]) and txn.status != vp.STATUS_CANCELLED:
                raise SandboxError(409, "this order was opened with another amount")
            if txn.status == vp.STATUS_CANCELLED:
                raise SandboxError(409, "this order was cancelled by the merchant")
            return txn

    def pay(
        self,
        merchant_code: str,
        txn_ref: str,
        outcome: str = "success",
        *,
        deliver_ipn: bool = True,
        response_code: str = "",
    ) -> dict[str, Any]:
        """The payer finished at the gateway: settle, notify the merchant, build the return."""
        if outcome not in OUTCOMES:
            raise SandboxError(400, f"outcome must be one of {', '.join(OUTCOMES)}")
        merchant = self._merchant(merchant_code)
        with self._lock:
            txn = self.transactions.get((merchant.code, txn_ref))
            if txn is None:
                raise SandboxError(404, "no such order; open the payment URL first")
            self._expire_if_due(txn)
            if txn.status != vp.STATUS_PENDING:
                raise SandboxError(409, f"this order can no longer be paid (status {txn.status})")
            status, code = OUTCOMES[outcome]
            txn.status = status
            txn.response_code = response_code or code
            txn.transaction_no = str(next(self._numbers))
            txn.pay_date = self._clock()
            params = self.notification(txn)
        ipn = self.deliver_ipn(merchant.code, txn_ref) if deliver_ipn else None
        query = signing.signed_query(params, merchant.secret)
        separator = "&" if "?" in txn.return_url else "?"
        return {
            "transaction_no": txn.transaction_no,
            "status": txn.status,
            "response_code": txn.response_code,
            "ipn_query": query,
            "ipn_url": merchant.ipn_url,
            "ipn": ipn,
            "return_url": f"{txn.return_url}{separator}{query}",
        }

    def notification(self, txn: SandboxTransaction) -> dict[str, str]:
        """The IPN / return parameters of a settled transaction, signed."""
        merchant = self._merchant(txn.merchant)
        assert txn.pay_date is not None
        params = {
            "vnp_TmnCode": txn.merchant,
            "vnp_Amount": str(txn.amount),
            "vnp_CurrCode": txn.currency,
            "vnp_BankCode": txn.bank_code,
            "vnp_BankTranNo": f"VNP{txn.transaction_no}",
            "vnp_CardType": "ATM",
            "vnp_PayDate": vp.format_time(txn.pay_date),
            "vnp_OrderInfo": txn.order_info,
            "vnp_TransactionNo": txn.transaction_no,
            "vnp_ResponseCode": txn.response_code,
            "vnp_TransactionStatus": txn.status,
            "vnp_TxnRef": txn.txn_ref,
        }
        return signing.signed(params, merchant.secret)

    def deliver_ipn(self, merchant_code: str, txn_ref: str) -> dict[str, Any]:
        """Send the transaction's IPN to the merchant; returns what the merchant answered."""
        merchant = self._merchant(merchant_code)
        with self._lock:
            txn = self.transactions.get((merchant.code, txn_ref))
            if txn is None or txn.pay_date is None:
                raise SandboxError(404, "no settled order to notify about")
            query = signing.signed_query(self.notification(txn), merchant.secret)
        url = f"{merchant.ipn_url}{'&' if '?' in merchant.ipn_url else '?'}{query}"
        result: dict[str, Any]
        try:
            response = self._http.get(url)
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text[:500]
            result = {"status_code": response.status_code, "body": body}
        except httpx.HTTPError as exc:
            result = {"status_code": 0, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            txn.ipn_deliveries.append(result)
        return result

    def _expire_if_due(self, txn: SandboxTransaction) -> None:
        if (
            txn.status == vp.STATUS_PENDING
            and txn.expire_at is not None
            and self._clock() > txn.expire_at
        ):
            txn.status = vp.STATUS_CANCELLED
            txn.response_code = "11"  # VNPay: the payment window has passed

    # -- the merchant API --------------------------------------------------------------------
    def api(self, body: Mapping[str, Any]) -> dict[str, str]:
        """One signed API command (querydr, refund, cancel); the answer is signed too."""
        if not all(isinstance(v, str) for v in body.values()):
            raise SandboxError(400, "every field must be a string")
        request: dict[str, str] = dict(body)
        merchant = self.merchants.get(request.get("vnp_TmnCode", ""))
        if merchant is None:
            return {"vnp_ResponseCode": vp.API_MERCHANT_INVALID, "vnp_Message": "Merchant invalid"}
        command = request.get("vnp_Command", "")
        base = {
            "vnp_ResponseId": str(next(self._numbers)),
            "vnp_Command": command,
            "vnp_TmnCode": merchant.code,
            "vnp_TxnRef": request.get("vnp_TxnRef", ""),
        }
        if not signing.verify(request, merchant.secret):
            answer = {**base, "vnp_ResponseCode": vp.API_BAD_SIGNATURE, "vnp_Message": "Checksum"}
        elif command == vp.QUERY:
            answer = self._query(merchant, request, base)
        elif command == vp.CANCEL:
            answer = self._cancel(merchant, request, base)
        elif command == vp.REFUND:
            answer = self._refund(merchant, request, base)
        else:
            answer = {**base, "vnp_ResponseCode": vp.API_ERROR, "vnp_Message": "Unknown command"}
        return signing.signed(answer, merchant.secret)

    def _describe(self, txn: SandboxTransaction, base: dict[str, str]) -> dict[str, str]:
        self._expire_if_due(txn)
        out = {
            **base,
            "vnp_ResponseCode": vp.API_OK,
            "vnp_Message": "QueryDR Success",
            "vnp_Amount": str(txn.amount),
            "vnp_CurrCode": txn.currency,
            "vnp_OrderInfo": txn.order_info,
            "vnp_BankCode": txn.bank_code,
            "vnp_TransactionType": "01",
            "vnp_TransactionStatus": txn.status,
            "vnp_TransactionNo": txn.transaction_no,
        }
        if txn.pay_date is not None:
            out["vnp_PayDate"] = vp.format_time(txn.pay_date)
        if txn.response_code:
            out["vnp_TransactionResponseCode"] = txn.response_code
        return out

    def _query(
        self, merchant: Merchant, request: Mapping[str, str], base: dict[str, str]
    ) -> dict[str, str]:
        if self.faults.query == "error":
            raise SandboxError(503, "query unavailable (injected fault)")
        with self._lock:
            txn = self.transactions.get((merchant.code, request.get("vnp_TxnRef", "")))
            if txn is None:
                return {**base, "vnp_ResponseCode": vp.API_NOT_FOUND, "vnp_Message": "Not found"}
            return self._describe(txn, base)

    def _cancel(
        self, merchant: Merchant, request: Mapping[str, str], base: dict[str, str]
    ) -> dict[str, str]:
        ref = request.get("vnp_TxnRef", "")
        if not ref:
            return {**base, "vnp_ResponseCode": vp.API_INVALID_AMOUNT, "vnp_Message": "TxnRef"}
        with self._lock:
            txn = self.transactions.get((merchant.code, ref))
            if txn is None:
                # Never opened: remember the cancel, so the link cannot be paid later.
                txn = SandboxTransaction(merchant.code, ref, 0, "VND", "", "", "", None)
                txn.status = vp.STATUS_CANCELLED
                self.transactions[(merchant.code, ref)] = txn
            elif txn.status == vp.STATUS_PENDING:
                txn.status = vp.STATUS_CANCELLED
                txn.response_code = vp.RESPONSE_CUSTOMER_CANCELLED
            answer = self._describe(txn, base)
            if txn.amount == 0:
                del answer["vnp_Amount"]
            return answer

    def _refund(
        self, merchant: Merchant, request: Mapping[str, str], base: dict[str, str]
    ) -> dict[str, str]:
        request_id = request.get("vnp_RequestId", "")
        with self._lock:
            earlier = self._refunds.get((merchant.code, request_id))
            if earlier is not None:
                return earlier  # a retried refund gets the first answer, not a second refund
            if self.faults.refund == "error":
                raise SandboxError(500, "refund unavailable (injected fault)")
            answer = self._refund_once(merchant, request, base)
            if answer["vnp_ResponseCode"] != vp.API_ERROR:
                self._refunds[(merchant.code, request_id)] = answer
            return answer

    def _refund_once(
        self, merchant: Merchant, request: Mapping[str, str], base: dict[str, str]
    ) -> dict[str, str]:
        def refused(code: str, message: str) -> dict[str, str]:
            return {**base, "vnp_ResponseCode": code, "vnp_Message": message}

        txn = self.transactions.get((merchant.code, request.get("vnp_TxnRef", "")))
        if txn is None:
            return refused(vp.API_NOT_FOUND, "Transaction not found")
        if txn.status != vp.STATUS_PAID or request.get("vnp_TransactionNo") != txn.transaction_no:
            return refused(vp.API_NOT_REFUNDABLE, "Transaction is not a succeeded payment")
        raw = request.get("vnp_Amount", "")
        amount = int(raw) if _DIGITS.fullmatch(raw) else 0
        remaining = txn.amount - txn.refunded
        full = request.get("vnp_TransactionType") == "02"
        if amount <= 0 or amount > remaining or (full and amount != txn.amount):
            return refused(vp.API_INVALID_AMOUNT, f"Invalid amount: {remaining} refundable")
        if self.faults.refund == "decline":
            return refused(vp.API_REFUND_DECLINED, "Refund declined by the bank")
        txn.refunded += amount
        return {
            **base,
            "vnp_ResponseCode": vp.API_OK,
            "vnp_Message": "Refund success",
            "vnp_Amount": str(amount),
            "vnp_TransactionNo": str(next(self._numbers)),
            "vnp_TransactionType": request.get("vnp_TransactionType", ""),
            "vnp_TransactionStatus": "05",  # refund being processed by the bank
        }

    def transaction_json(self, merchant_code: str, txn_ref: str) -> dict[str, Any]:
        with self._lock:
            txn = self.transactions.get((merchant_code, txn_ref))
            if txn is None:
                raise SandboxError(404, "no such order")
            self._expire_if_due(txn)
            out = asdict(txn)
        for key in ("expire_at", "pay_date"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], gateway: SandboxGateway) -> None:
        super().__init__(addr, _Handler)
        self.gateway = gateway


_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>Cổng thanh toán thử nghiệm</title></head>
<body>
<h1>Cổng thanh toán thử nghiệm (sandbox)</h1>
<p>Đơn hàng: <b>{order}</b></p>
<p>Số tiền: <b>{amount}</b></p>
<form method="post" action="/sandbox/checkout">
<input type="hidden" name="merchant" value="{merchant}">
<input type="hidden" name="txn_ref" value="{txn_ref}">
<button name="outcome" value="success">Thanh toán</button>
<button name="outcome" value="cancel">Hủy giao dịch</button>
</form>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30

    # -- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False).encode(), "application/json")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 64 * 1024:
            raise SandboxError(413, "body too large")
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict[str, Any]:
        try:
            doc = json.loads(self._body() or b"{}")
        except ValueError:
            raise SandboxError(400, "body is not JSON") from None
        if not isinstance(doc, dict):
            raise SandboxError(400, "body must be a JSON object")
        return doc

    def _dispatch(self, handler: Callable[[], None]) -> None:
        try:
            handler()
        except SandboxError as exc:
            self._json(exc.status, {"error": exc.message})
        except Exception:
            log.exception("sandbox gateway error")
            self._json(500, {"error": "internal error"})

    def log_message(self, format: str, *args: object) -> None:
        log.debug("sandbox: " + format, *args)

    # -- routes ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def do_PUT(self) -> None:
        self._dispatch(self._put)

    def _get(self) -> None:
        gw = self.server.gateway
        parts = urlsplit(self.path)
        if parts.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif parts.path == vp.PAY_PATH:
            txn = gw.open(dict(parse_qsl(parts.query, keep_blank_values=True)))
            page = _PAGE.format(
                order=html.escape(txn.order_info),
                amount=f"{txn.amount // vp.AMOUNT_FACTOR:,} VND".replace(",", "."),
                merchant=html.escape(txn.merchant),
                txn_ref=html.escape(txn.txn_ref),
            )
            self._send(200, page.encode(), "text/html; charset=utf-8")
        elif parts.path.startswith("/sandbox/api/transactions/"):
            segments = parts.path.split("/")[4:]
            if len(segments) != 2:
                raise SandboxError(404, "use /sandbox/api/transactions/<merchant>/<txn_ref>")
            self._json(200, gw.transaction_json(*segments))
        else:
            raise SandboxError(404, "not found")

    def _post(self) -> None:
        gw = self.server.gateway
        path = urlsplit(self.path).path
        if path == vp.API_PATH:
            self._json(200, gw.api(self._json_body()))
        elif path == "/sandbox/checkout":
            form = dict(parse_qsl(self._body().decode("utf-8", "replace")))
            result = gw.pay(
                form.get("merchant", ""), form.get("txn_ref", ""), form.get("outcome", "")
            )
            self._send(303, b"", "text/plain", Location=result["return_url"])
        elif path == "/sandbox/api/pay":
            doc = self._json_body()
            if doc.get("payment_url"):
                parts = urlsplit(str(doc["payment_url"]))
                txn = gw.open(dict(parse_qsl(parts.query, keep_blank_values=True)))
                merchant, ref = txn.merchant, txn.txn_ref
            else:
                merchant, ref = str(doc.get("merchant", "")), str(doc.get("txn_ref", ""))
            result = gw.pay(
                merchant,
                ref,
                str(doc.get("outcome", "success")),
                deliver_ipn=bool(doc.get("deliver_ipn", True)),
                response_code=str(doc.get("response_code", "")),
            )
            self._json(200, result)
        elif path == "/sandbox/api/notify":
            doc = self._json_body()
            merchant, ref = str(doc.get("merchant", "")), str(doc.get("txn_ref", ""))
            self._json(200, gw.deliver_ipn(merchant, ref))
        else:
            raise SandboxError(404, "not found")

    def _put(self) -> None:
        gw = self.server.gateway
        path = urlsplit(self.path).path
        if path.startswith("/sandbox/api/merchants/"):
            code = path.rsplit("/", 1)[-1]
            doc = self._json_body()
            secret, ipn_url = str(doc.get("secret", "")), str(doc.get("ipn_url", ""))
            if not code or len(secret) < 16 or not ipn_url.startswith(("http://", "https://")):
                raise SandboxError(400, "need a code, a secret of 16+ characters and an ipn_url")
            gw.add_merchant(Merchant(code, secret.encode(), ipn_url))
            self._json(200, {"merchant": code, "ipn_url": ipn_url})
        elif path == "/sandbox/api/faults":
            doc = self._json_body()
            gw.faults = Faults(refund=str(doc.get("refund", "")), query=str(doc.get("query", "")))
            self._json(200, asdict(gw.faults))
        else:
            raise SandboxError(404, "not found")
