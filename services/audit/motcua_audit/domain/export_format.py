"""Files an auditor handles: the log export, a signed tree head, a consistency proof.

All three are UTF-8 JSON so they survive e-mail, diff and a text editor; hashes and
signatures are lowercase hex, entry bytes are standard base64. Pure functions over strings:
the CLI opens the files.

Export (JSON Lines)::

    line 1:    {"format": "motcua-audit-export", "version": 1, "entries": N,
                "tree_head": {<tree head>}, "checkpoints": [{<tree head>}, ...],
                "exported_at_ms": ...}
    N lines:   {"index": i, "entry": "<base64 canonical entry>"}
    then:      {"recorded_from": s, "leaf_hashes": "<base64 of k concatenated 32-byte hashes>"}
               (one line per 1024 positions, s = 0, 1024, 2048, ...)

An entry's position is the order of its line among the entry lines; ``index`` is for people
reading the file and is not trusted. The leaf hashes the log recorded for every position come
after the entries, apart from them, so deleting, inserting or moving entry lines leaves them
intact: they are only used, after they are authenticated against the signed root, to name
the damaged position. A line that does not parse is kept as an entry made of the line's own
bytes, so it is reported as altered, not skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from motcua_audit.domain.merkle import HASH_SIZE
from motcua_audit.domain.tree_head import SignedTreeHead

__all__ = [
    "EXPORT_FORMAT",
    "FORMAT_VERSION",
    "HASHES_PER_LINE",
    "HEAD_FORMAT",
    "PROOF_FORMAT",
    "ConsistencyProof",
    "ExportFormatError",
    "ExportHeader",
    "RecordedHashes",
    "assemble_recorded",
    "entry_line",
    "export_header_line",
    "head_from_json",
    "head_to_json",
    "leaf_hashes_line",
    "parse_export_header",
    "parse_line",
    "proof_from_json",
    "proof_to_json",
]

EXPORT_FORMAT = "motcua-audit-export"
HEAD_FORMAT = "motcua-audit-tree-head"
PROOF_FORMAT = "motcua-audit-consistency-proof"
FORMAT_VERSION = 1


class ExportFormatError(ValueError):
    """A file is not the motcua audit file it claims to be (unusable, not "tampered")."""


def _head_dict(signed: SignedTreeHead) -> dict[str, Any]:
    return {"format": HEAD_FORMAT, "version": FORMAT_VERSION, **signed.to_dict()}


def _head_from(data: object, what: str) -> SignedTreeHead:
    if not isinstance(data, Mapping):
        raise ExportFormatError(f"{what} is not a JSON object")
    if data.get("format", HEAD_FORMAT) != HEAD_FORMAT:
        raise ExportFormatError(f"{what} is not a {HEAD_FORMAT} (format {data.get('format')!r})")
    try:
        signed = SignedTreeHead.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportFormatError(f"{what} is malformed: {exc!r}") from None
    return signed


def head_to_json(signed: SignedTreeHead) -> str:
    """A signed tree head as the JSON an auditor keeps (one object, newline-terminated)."""
    return json.dumps(_head_dict(signed), indent=2) + "\n"


def head_from_json(text: str) -> SignedTreeHead:
    """Parse a tree-head file; the signature is *not* checked here (``verify_tree_head``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"the tree head is not JSON: {exc}") from None
    return _head_from(data, "the tree head")


@dataclass(frozen=True, slots=True)
class ExportHeader:
    """The first line of an export."""

    head: SignedTreeHead
    checkpoints: tuple[SignedTreeHead, ...]
    entries: int
    exported_at_ms: int


def export_header_line(
    head: SignedTreeHead, checkpoints: Sequence[SignedTreeHead], exported_at_ms: int
) -> str:
    return (
        json.dumps(
            {
                "format": EXPORT_FORMAT,
                "version": FORMAT_VERSION,
                "entries": head.head.size,
                "tree_head": _head_dict(head),
                "checkpoints": [_head_dict(c) for c in checkpoints],
                "exported_at_ms": exported_at_ms,
            },
            separators=(",", ":"),
        )
        + "\n"
    )


def parse_export_header(line: str) -> ExportHeader:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"the export's first line is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(f"not a {EXPORT_FORMAT} file")
    if data.get("version") != FORMAT_VERSION:
        raise ExportFormatError(f"unsupported export version {data.get('version')!r}")
    checkpoints = data.get("checkpoints", [])
    entries = data.get("entries")
    exported_at = data.get("exported_at_ms", 0)
    if not isinstance(checkpoints, list):
        raise ExportFormatError("checkpoints must be a list")
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        raise ExportFormatError("entries must be a non-negative integer")
    if not isinstance(exported_at, int):
        raise ExportFormatError("exported_at_ms must be an integer")
    return ExportHeader(
        head=_head_from(data.get("tree_head"), "the export's tree_head"),
        checkpoints=tuple(_head_from(c, "a checkpoint") for c in checkpoints),
        entries=entries,
        exported_at_ms=exported_at,
    )


HASHES_PER_LINE = 1024


def entry_line(index: int, entry: bytes) -> str:
    return (
        json.dumps(
            {"index": index, "entry": base64.b64encode(entry).decode("ascii")},
            separators=(",", ":"),
        )
        + "\n"
    )


def leaf_hashes_line(start: int, hashes: Sequence[bytes]) -> str:
    """One line of recorded leaf hashes for positions ``start, start + 1, ...``."""
    return (
        json.dumps(
            {
                "recorded_from": start,
                "leaf_hashes": base64.b64encode(b"".join(hashes)).decode("ascii"),
            },
            separators=(",", ":"),
        )
        + "\n"
    )


@dataclass(frozen=True, slots=True)
class RecordedHashes:
    """A line of recorded leaf hashes (positions ``start`` onwards)."""

    start: int
    hashes: tuple[bytes, ...]


def parse_line(line: str | bytes) -> bytes | RecordedHashes:
    """An entry line's entry bytes, or a line of recorded hashes; never raises.

    A line that does not parse as either yields its own bytes as an entry: the damage is then
    located like any other alteration, instead of aborting the check.
    """
    raw = line.encode("utf-8") if isinstance(line, str) else bytes(line)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw
    if not isinstance(data, dict):
        return raw
    if "leaf_hashes" in data:
        start, packed = data.get("recorded_from"), data.get("leaf_hashes")
        if isinstance(start, int) and not isinstance(start, bool) and isinstance(packed, str):
            try:
                blob = base64.b64decode(packed, validate=True)
            except (binascii.Error, ValueError):
                blob = b""
            if blob and len(blob) % HASH_SIZE == 0:
                return RecordedHashes(
                    start,
                    tuple(blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)),
                )
        return raw
    entry = data.get("entry")
    if not isinstance(entry, str):
        return raw
    try:
        return base64.b64decode(entry, validate=True)
    except (binascii.Error, ValueError):
        return raw


def assemble_recorded(chunks: Sequence[RecordedHashes]) -> list[bytes] | None:
    """The recorded hashes in position order, or None if the lines do not tile [0, n)."""
    ordered = sorted(chunks, key=lambda c: c.start)
    out: list[bytes] = []
    for chunk in ordered:
        if chunk.start != len(out):
            return None
        out.extend(chunk.hashes)
    return out


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """An RFC 9162 consistency proof between two tree sizes, as a file carries it."""

    first_size: int
    second_size: int
    proof: tuple[bytes, ...]


def proof_to_json(proof: ConsistencyProof) -> str:
    return (
        json.dumps(
            {
                "format": PROOF_FORMAT,
                "version": FORMAT_VERSION,
                "first_size": proof.first_size,
                "second_size": proof.second_size,
                "proof": [p.hex() for p in proof.proof],
            },
            indent=2,
        )
        + "\n"
    )


def proof_from_json(text: str) -> ConsistencyProof:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"the consistency proof is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != PROOF_FORMAT:
        raise ExportFormatError(f"not a {PROOF_FORMAT} file")
    sizes = (data.get("first_size"), data.get("second_size"))
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes):
        raise ExportFormatError("first_size and second_size must be non-negative integers")
    path = data.get("proof")
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise ExportFormatError("proof must be a list of hex strings")
    try:
        hashes = tuple(bytes.fromhex(p) for p in path)
    except ValueError as exc:
        raise ExportFormatError(f"proof holds a non-hex element: {exc}") from None
    return ConsistencyProof(int(sizes[0]), int(sizes[1]), hashes)  # type: ignore[arg-type]
