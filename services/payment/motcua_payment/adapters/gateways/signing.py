"""HMAC-SHA512 over the sorted query string, as the Vietnamese gateways (VNPay) sign.

The canonical string is every parameter except the signature fields, sorted by name, each
value form-encoded (``quote_plus``), joined with ``&``. The signature is the lower-case hex
HMAC-SHA512 of that string with the merchant's hash secret. Both sides — the sandbox gateway
and the adapter — use these functions, so they cannot disagree.

Unlike VNPay's sample code, *every* parameter is signed (not only ``vnp_*`` ones): a parameter
added on the way makes the signature fail instead of being silently ignored. Names are
form-encoded too (a no-op for gateway field names), so no choice of names can make two
different parameter sets share one canonical string.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote_plus

HASH_FIELD = "vnp_SecureHash"
HASH_TYPE_FIELD = "vnp_SecureHashType"
_UNSIGNED = frozenset({HASH_FIELD, HASH_TYPE_FIELD})


def canonical(params: Mapping[str, str]) -> str:
    """The string that is signed: sorted ``name=quote_plus(value)`` pairs joined by ``&``."""
    return "&".join(
        f"{quote_plus(name)}={quote_plus(str(value))}"
        for name, value in sorted(params.items())
        if name not in _UNSIGNED
    )


def sign(params: Mapping[str, str], secret: bytes) -> str:
    """Lower-case hex HMAC-SHA512 of :func:`canonical` ``(params)``."""
    return hmac.new(secret, canonical(params).encode("utf-8"), hashlib.sha512).hexdigest()


def signed(params: Mapping[str, str], secret: bytes) -> dict[str, str]:
    """``params`` plus their signature in ``vnp_SecureHash``."""
    out = {k: str(v) for k, v in params.items() if k not in _UNSIGNED}
    out[HASH_FIELD] = sign(out, secret)
    return out


def signed_query(params: Mapping[str, str], secret: bytes) -> str:
    """A query string: the canonical string followed by the signature (VNPay's URL form)."""
    return f"{canonical(params)}&{HASH_FIELD}={sign(params, secret)}"


def verify(params: Mapping[str, str], secret: bytes) -> bool:
    """True when ``vnp_SecureHash`` is the signature of the other parameters (constant time)."""
    given = params.get(HASH_FIELD, "")
    if not isinstance(given, str) or not given:
        return False
    expected = sign(params, secret)
    return hmac.compare_digest(given.lower().encode("utf-8", "replace"), expected.encode())
