"""Signed tree heads: the log's Ed25519-signed commitment to its size and root.

A signed head is what an auditor keeps: any later export or consistency proof is checked
against it. Each head names the key that signed it (``key_id``), so keys can be rotated
while old heads stay verifiable: a verifier holds a keyring ``{key_id: public_key}``.

Canonical signing encoding, version 1 (67 bytes, all integers unsigned big-endian)::

    offset  size  field
    0       10    magic   b"MOTCUA-STH"  (domain separation: these bytes mean "tree head")
    10      1     version 0x01
    11      8     tree size (number of leaves)
    19      8     timestamp_ms (milliseconds since the Unix epoch, UTC)
    27      32    root hash (RFC 6962 MTH, SHA-256)
    59      8     key id (raw 8 bytes; ``TreeHead.key_id`` is their lowercase hex)

The signature is Ed25519 over exactly these bytes. Because the key id is signed too, a
head cannot be re-labelled to point at another key. Key id = the first 8 bytes of
SHA-256(raw 32-byte Ed25519 public key), as 16 lowercase hex characters.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from motcua_audit.domain.merkle import HASH_SIZE

__all__ = [
    "ENCODED_SIZE",
    "ENCODING_VERSION",
    "SIGNATURE_SIZE",
    "SignedTreeHead",
    "TreeHead",
    "TreeHeadSigner",
    "key_id_for",
    "keyring",
    "load_private_key_pem",
    "load_public_key_pem",
    "private_key_to_pem",
    "public_key_to_pem",
    "verify_tree_head",
]

_MAGIC = b"MOTCUA-STH"
ENCODING_VERSION = 1
_LAYOUT = struct.Struct(f">{len(_MAGIC)}sBQQ{HASH_SIZE}s8s")
ENCODED_SIZE = _LAYOUT.size  # 67
SIGNATURE_SIZE = 64
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_U64_MAX = 2**64 - 1


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """Key id of a public key: hex of the first 8 bytes of SHA-256(raw public key)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def _check_u64(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The unsigned statement "the log had ``size`` leaves with root ``root_hash``"."""

    size: int
    root_hash: bytes
    timestamp_ms: int
    key_id: str

    def __post_init__(self) -> None:
        _check_u64("size", self.size)
        _check_u64("timestamp_ms", self.timestamp_ms)
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise ValueError("root_hash must be 32 bytes")
        if not isinstance(self.key_id, str) or not _KEY_ID_RE.fullmatch(self.key_id):
            raise ValueError(f"key_id must be 16 lowercase hex chars, got {self.key_id!r}")

    def encode(self) -> bytes:
        """The canonical bytes that get signed (layout in the module docstring)."""
        return _LAYOUT.pack(
            _MAGIC,
            ENCODING_VERSION,
            self.size,
            self.timestamp_ms,
            self.root_hash,
            bytes.fromhex(self.key_id),
        )

    @classmethod
    def decode(cls, data: bytes) -> TreeHead:
        """Inverse of ``encode``; rejects any other length, magic or version."""
        if len(data) != ENCODED_SIZE:
            raise ValueError(f"tree head encoding must be {ENCODED_SIZE} bytes")
        magic, version, size, ts, root, kid = _LAYOUT.unpack(data)
        if magic != _MAGIC or version != ENCODING_VERSION:
            raise ValueError("not a version-1 motcua tree head")
        return cls(size=size, root_hash=root, timestamp_ms=ts, key_id=kid.hex())


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A ``TreeHead`` plus the Ed25519 signature over ``head.encode()``.

    The signature is not checked on construction (heads arrive from untrusted exports);
    call ``verify_tree_head``.
    """

    head: TreeHead
    signature: bytes

    def to_bytes(self) -> bytes:
        """``head.encode() || signature`` (131 bytes), a compact wire/storage form."""
        return self.head.encode() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedTreeHead:
        if len(data) != ENCODED_SIZE + SIGNATURE_SIZE:
            raise ValueError(f"signed tree head must be {ENCODED_SIZE + SIGNATURE_SIZE} bytes")
        return cls(TreeHead.decode(data[:ENCODED_SIZE]), bytes(data[ENCODED_SIZE:]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (hashes and signature as lowercase hex) for exports."""
        return {
            "size": self.head.size,
            "root_hash": self.head.root_hash.hex(),
            "timestamp_ms": self.head.timestamp_ms,
            "key_id": self.head.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedTreeHead:
        head = TreeHead(
            size=data["size"],
            root_hash=bytes.fromhex(data["root_hash"]),
            timestamp_ms=data["timestamp_ms"],
            key_id=data["key_id"],
        )
        return cls(head, bytes.fromhex(data["signature"]))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TreeHeadSigner:
    """Signs tree heads with one Ed25519 key; rotate by creating a signer with a new key."""

    def __init__(self, private_key: Ed25519PrivateKey, clock: Callable[[], int] = _now_ms) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("TreeHeadSigner needs an Ed25519 private key")
        self._key = private_key
        self._clock = clock
        self._public = private_key.public_key()
        self._key_id = key_id_for(self._public)

    @classmethod
    def generate(cls, clock: Callable[[], int] = _now_ms) -> TreeHeadSigner:
        return cls(Ed25519PrivateKey.generate(), clock)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._key

    def sign(self, size: int, root_hash: bytes, timestamp_ms: int | None = None) -> SignedTreeHead:
        """Sign ``(size, root_hash)`` now (or at ``timestamp_ms``) under this signer's key."""
        ts = self._clock() if timestamp_ms is None else timestamp_ms
        head = TreeHead(size=size, root_hash=root_hash, timestamp_ms=ts, key_id=self._key_id)
        return SignedTreeHead(head, self._key.sign(head.encode()))


def verify_tree_head(signed: SignedTreeHead, public_keys: Mapping[str, Ed25519PublicKey]) -> bool:
    """True iff the head's named key is in the keyring, really has that id, and signed it.

    Re-deriving the id from the key catches a mislabelled keyring entry, which would
    otherwise let one key vouch under another key's name.
    """
    head = signed.head
    key = public_keys.get(head.key_id)
    if key is None or not isinstance(key, Ed25519PublicKey) or key_id_for(key) != head.key_id:
        return False
    if not isinstance(signed.signature, bytes) or len(signed.signature) != SIGNATURE_SIZE:
        return False
    try:
        key.verify(signed.signature, head.encode())
    except InvalidSignature:
        return False
    return True


def keyring(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """``{key_id: key}`` for current and retired keys, the form ``verify_tree_head`` takes."""
    return {key_id_for(k): k for k in public_keys}


# -- PEM helpers ---------------------------------------------------------------------------


def private_key_to_pem(key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when given (recommended at rest)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key_pem(data: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM private key; refuses any key type other than Ed25519."""
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def public_key_to_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the form auditors are given."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key_pem(data: bytes) -> Ed25519PublicKey:
    """Load a SubjectPublicKeyInfo PEM public key; refuses any key type other than Ed25519."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key
