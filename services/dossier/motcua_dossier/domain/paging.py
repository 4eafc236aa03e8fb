"""Page tokens for ListDossiers: opaque to clients, bound to the query's filters.

A token carries the last row's (submitted at, code) keyset position and a fingerprint of the
filters, so a token cannot be replayed against other filters (which would skip or repeat rows).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime

from motcua_kit.errors import InvalidArgument


def fingerprint(query: object) -> str:
    """A short digest of a query's filters (its repr, without the page position)."""
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def encode_token(last: tuple[datetime, str], fingerprint: str) -> str:
    at, code = last
    raw = json.dumps({"at": at.isoformat(), "code": code, "q": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, fingerprint: str) -> tuple[datetime, str]:
    """The position a token of ours holds; refused when foreign or of other filters."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
        at, code, q = datetime.fromisoformat(doc["at"]), str(doc["code"]), doc["q"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None
    if q != fingerprint:
        raise InvalidArgument("page_token", "belongs to a query with other filters")
    return at, code
