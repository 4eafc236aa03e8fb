"""A small client of the sandbox's ``/sandbox/api`` — what tests and the demo use to "pay".

client = SandboxClient("http://127.0.0.1:8090")
result = client.pay(payment.redirect_url)            # the payer pays; the IPN is sent
result = client.pay(url, deliver_ipn=False)           # ... but the IPN is lost
client.notify("MOTCUA01", payment.id)                 # the gateway sends the IPN again
"""

from __future__ import annotations

from typing import Any

import httpx


class SandboxClient:
    """Drives a running sandbox gateway over HTTP."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        response.raise_for_status()
        doc = response.json()
        assert isinstance(doc, dict)
        return doc

    def pay(
        self,
        payment_url: str,
        outcome: str = "success",
        *,
        deliver_ipn: bool = True,
        response_code: str = "",
    ) -> dict[str, Any]:
        """Open ``payment_url`` as the payer's browser would and finish with ``outcome``
        (success, fail, cancel). Returns the transaction number, the IPN query and the
        merchant's answer to it (``ipn``), and the signed return URL."""
        return self._json(
            self._http.post(
                "/sandbox/api/pay",
                json={
                    "payment_url": payment_url,
                    "outcome": outcome,
                    "deliver_ipn": deliver_ipn,
                    "response_code": response_code,
                },
            )
        )

    def try_pay(self, payment_url: str, outcome: str = "success") -> httpx.Response:
        """Like :meth:`pay`, but returns the raw response (e.g. 409 for a cancelled order)."""
        return self._http.post(
            "/sandbox/api/pay", json={"payment_url": payment_url, "outcome": outcome}
        )

    def notify(self, merchant: str, txn_ref: str) -> dict[str, Any]:
        """Send the IPN of a settled order again; returns the merchant's answer."""
        return self._json(
            self._http.post("/sandbox/api/notify", json={"merchant": merchant, "txn_ref": txn_ref})
        )

    def register_merchant(self, code: str, secret: str, ipn_url: str) -> None:
        self._json(
            self._http.put(
                f"/sandbox/api/merchants/{code}", json={"secret": secret, "ipn_url": ipn_url}
            )
        )

    def set_faults(self, *, refund: str = "", query: str = "") -> None:
        """Inject failures: refund "decline" or "error"; query "error"."""
        self._json(self._http.put("/sandbox/api/faults", json={"refund": refund, "query": query}))

    def transaction(self, merchant: str, txn_ref: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/sandbox/api/transactions/{merchant}/{txn_ref}"))
