"""Issued documents in the log: the ``resource`` of a document_issued entry names the paper.

The agency's signed PDF never reaches the audit log; its SHA-256 does, inside the canonical
entry's existing ``resource`` field as ``document:<id>:sha256:<hex>`` (ADR 0087). So the
entry format stays version 1, the leaves of every other entry are unchanged, and whoever
holds the paper can hash it, find the entry that recorded it and check the entry's inclusion
under a signed tree head: the log vouches that this exact file was issued, and when.
"""

from __future__ import annotations

import re
from typing import Final

PREFIX: Final = "document:"
HASH_TAG: Final = ":sha256:"
MAX_ID_LENGTH: Final = 200
_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(value: str) -> bool:
    """64 lower-case hex digits: the one spelling of a document hash (no upper case, no
    prefix), so a hash has one resource and one index key."""
    return _HEX64.fullmatch(value) is not None


def document_resource(document_id: str, sha256: str) -> str | None:
    """``document:<id>:sha256:<hex>``, or None when the id or hash cannot be recorded.

    The id must be non-empty, printable, without surrounding spaces and at most 200
    characters; the hash 64 lower-case hex digits (which hold no ``:``, so the resource splits
    one way at its last ``:sha256:``). A payload failing this is still recorded (the log keeps
    every event), only without a resource.
    """
    if not document_id or len(document_id) > MAX_ID_LENGTH:
        return None
    if not document_id.isprintable() or document_id.strip() != document_id:
        return None
    if not is_sha256_hex(sha256):
        return None
    return f"{PREFIX}{document_id}{HASH_TAG}{sha256}"


def parse_document_resource(resource: str) -> tuple[str, str] | None:
    """(document id, SHA-256 hex) of a document resource; None for any other resource."""
    if not resource.startswith(PREFIX):
        return None
    document_id, tag, sha256 = resource[len(PREFIX) :].rpartition(HASH_TAG)
    if not tag or document_resource(document_id, sha256) != resource:
        return None
    return document_id, sha256
