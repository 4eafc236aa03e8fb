"""Signed tree heads: canonical encoding, Ed25519 signing, key ids, rotation, tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from motcua_audit.domain.merkle import EMPTY_ROOT, leaf_hash
from motcua_audit.domain.tree_head import (
    ENCODED_SIZE,
    SignedTreeHead,
    TreeHead,
    TreeHeadSigner,
    key_id_for,
    keyring,
    load_private_key_pem,
    load_public_key_pem,
    private_key_to_pem,
    public_key_to_pem,
    verify_tree_head,
)

# RFC 8032 section 7.1, TEST 1: a fixed Ed25519 key so encodings are reproducible.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def fixed_signer() -> TreeHeadSigner:
    return TreeHeadSigner(Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET), clock=lambda: 42)


def test_key_id_is_first_8_bytes_of_sha256_of_raw_public_key():
    signer = fixed_signer()
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == RFC8032_PUBLIC
    assert signer.key_id == hashlib.sha256(RFC8032_PUBLIC).digest()[:8].hex()
    assert len(signer.key_id) == 16 and signer.key_id == key_id_for(signer.public_key)


def test_canonical_encoding_layout():
    head = TreeHead(
        size=8, root_hash=ROOT, timestamp_ms=1_700_000_000_123, key_id="0011223344556677"
    )
    expected = (
        b"MOTCUA-STH"
        + b"\x01"
        + (8).to_bytes(8, "big")
        + (1_700_000_000_123).to_bytes(8, "big")
        + ROOT
        + bytes.fromhex("0011223344556677")
    )
    assert head.encode() == expected
    assert len(expected) == ENCODED_SIZE == 67
    assert TreeHead.decode(expected) == head


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"MOTCUA-STH\x01" + b"\x00" * 55,  # one byte short
        b"MOTCUA-STX\x01" + b"\x00" * 56,  # wrong magic
        b"MOTCUA-STH\x02" + b"\x00" * 56,  # unknown version
    ],
)
def test_decode_rejects_foreign_bytes(data):
    with pytest.raises(ValueError):
        TreeHead.decode(data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": -1},
        {"size": 2**64},
        {"size": True},
        {"size": "8"},
        {"timestamp_ms": -5},
        {"root_hash": ROOT[:31]},
        {"root_hash": ROOT.hex()},
        {"key_id": "00112233445566"},
        {"key_id": "00112233445566GG"},
        {"key_id": "0011223344556677".upper().replace("0", "A")},
    ],
)
def test_tree_head_validates_fields(kwargs):
    base = {"size": 1, "root_hash": ROOT, "timestamp_ms": 0, "key_id": "0011223344556677"}
    with pytest.raises(ValueError):
        TreeHead(**{**base, **kwargs})


def test_sign_and_verify_round_trip():
    signer = fixed_signer()
    signed = signer.sign(8, ROOT)
    assert signed.head == TreeHead(8, ROOT, 42, signer.key_id)  # clock was used
    assert verify_tree_head(signed, {signer.key_id: signer.public_key})
    assert verify_tree_head(signed, keyring([signer.public_key]))
    # Ed25519 is deterministic: same head, same signature; and it is over encode().
    assert signer.sign(8, ROOT) == signed
    signer.public_key.verify(signed.signature, signed.head.encode())
    assert signer.sign(0, EMPTY_ROOT, timestamp_ms=7).head.timestamp_ms == 7


@pytest.mark.parametrize(
    "change",
    [
        {"size": 9},
        {"size": 7},
        {"root_hash": leaf_hash(b"other")},
        {"timestamp_ms": 43},
    ],
)
def test_any_field_change_breaks_the_signature(change):
    signer = fixed_signer()
    signed = signer.sign(8, ROOT)
    tampered = SignedTreeHead(dataclasses.replace(signed.head, **change), signed.signature)
    assert not verify_tree_head(tampered, keyring([signer.public_key]))


def test_signature_tampering_is_rejected():
    signer = fixed_signer()
    keys = keyring([signer.public_key])
    signed = signer.sign(8, ROOT)
    for i in range(0, 64, 7):
        sig = bytearray(signed.signature)
        sig[i] ^= 0x01
        assert not verify_tree_head(SignedTreeHead(signed.head, bytes(sig)), keys)
    assert not verify_tree_head(SignedTreeHead(signed.head, signed.signature[:63]), keys)
    assert not verify_tree_head(SignedTreeHead(signed.head, signed.signature + b"\x00"), keys)
    assert not verify_tree_head(SignedTreeHead(signed.head, b""), keys)


def test_key_rotation():
    old, new = fixed_signer(), TreeHeadSigner.generate()
    assert old.key_id != new.key_id
    head_a = old.sign(10, leaf_hash(b"a"))
    head_b = new.sign(20, leaf_hash(b"b"))
    both = keyring([old.public_key, new.public_key])
    assert verify_tree_head(head_a, both) and verify_tree_head(head_b, both)
    only_new = keyring([new.public_key])
    assert not verify_tree_head(head_a, only_new)  # retired key removed -> old heads fail
    assert verify_tree_head(head_b, only_new)
    assert not verify_tree_head(head_a, {})


def test_relabelling_a_head_to_another_key_fails():
    a, b = fixed_signer(), TreeHeadSigner.generate()
    keys = keyring([a.public_key, b.public_key])
    signed = a.sign(3, ROOT)
    relabelled = SignedTreeHead(dataclasses.replace(signed.head, key_id=b.key_id), signed.signature)
    assert not verify_tree_head(relabelled, keys)


def test_mislabelled_keyring_entry_is_not_trusted():
    a, b = fixed_signer(), TreeHeadSigner.generate()
    signed = b.sign(3, ROOT)
    # A keyring claiming b's key id maps to a's key must not make a's heads verify as b,
    # nor let the right signature pass under the wrong id.
    assert not verify_tree_head(signed, {b.key_id: a.public_key})
    forged = a.sign(3, ROOT)
    forged_as_b = SignedTreeHead(
        dataclasses.replace(forged.head, key_id=b.key_id), forged.signature
    )
    assert not verify_tree_head(forged_as_b, {b.key_id: a.public_key})


def test_key_id_must_belong_to_the_key_that_verifies():
    """A key listed under someone else's id can't vouch for heads naming that id."""
    a, b = fixed_signer(), TreeHeadSigner.generate()
    claims_b = TreeHead(size=3, root_hash=ROOT, timestamp_ms=1, key_id=b.key_id)
    signed_by_a = SignedTreeHead(claims_b, a.private_key.sign(claims_b.encode()))
    assert not verify_tree_head(signed_by_a, {b.key_id: a.public_key})
    assert not verify_tree_head(signed_by_a, keyring([a.public_key, b.public_key]))


def test_signed_head_serialisation_round_trips():
    signer = fixed_signer()
    signed = signer.sign(8, ROOT)
    raw = signed.to_bytes()
    assert len(raw) == 131 and raw[:67] == signed.head.encode()
    assert SignedTreeHead.from_bytes(raw) == signed
    as_dict = signed.to_dict()
    assert as_dict["root_hash"] == ROOT.hex() and as_dict["key_id"] == signer.key_id
    assert SignedTreeHead.from_dict(as_dict) == signed
    assert verify_tree_head(SignedTreeHead.from_dict(as_dict), keyring([signer.public_key]))
    with pytest.raises(ValueError):
        SignedTreeHead.from_bytes(raw[:-1])
    with pytest.raises(ValueError):
        SignedTreeHead.from_dict({**as_dict, "size": -1})


def test_pem_round_trips():
    signer = fixed_signer()
    pem = private_key_to_pem(signer.private_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = TreeHeadSigner(load_private_key_pem(pem))
    assert again.key_id == signer.key_id

    encrypted = private_key_to_pem(signer.private_key, password=b"s3cret")
    assert b"ENCRYPTED" in encrypted
    assert TreeHeadSigner(load_private_key_pem(encrypted, b"s3cret")).key_id == signer.key_id
    with pytest.raises((ValueError, TypeError)):
        load_private_key_pem(encrypted, b"wrong")

    pub_pem = public_key_to_pem(signer.public_key)
    assert pub_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = load_public_key_pem(pub_pem)
    assert key_id_for(loaded) == signer.key_id
    assert verify_tree_head(signer.sign(1, ROOT), keyring([loaded]))


def test_pem_loaders_refuse_other_key_types():
    ec_key = ec.generate_private_key(ec.SECP256R1())
    priv = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(TypeError):
        load_private_key_pem(priv)
    with pytest.raises(TypeError):
        load_public_key_pem(pub)
    with pytest.raises(TypeError):
        TreeHeadSigner(ec_key)  # type: ignore[arg-type]


def test_encoding_uses_unsigned_big_endian_u64():
    head = TreeHead(size=2**64 - 1, root_hash=ROOT, timestamp_ms=2**64 - 1, key_id="ff" * 8)
    size, ts = struct.unpack(">QQ", head.encode()[11:27])
    assert size == ts == 2**64 - 1
