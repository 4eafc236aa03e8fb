"""HMAC-SHA256 body signatures: on webhooks motcua sends, on receipts providers send it."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the exact body bytes (as GOV.UK Pay signs webhooks).

    The receiver recomputes it with the shared secret over the raw body it received and
    compares in constant time (:func:`verify`); any change to the body breaks it.
    """
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature.strip().lower())
