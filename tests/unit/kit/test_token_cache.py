"""The verified-token cache: a hit skips the signature check, but never outlives the token.

Intake pays the Ed25519 check once per token, not once per call; an expired token is refused
even if it was verified a moment before, a tampered copy is never served from the cache, and a
JWKS verifier (whose key the provider may withdraw) does not cache at all.
"""

from __future__ import annotations

import time

import jwt
import pytest

from motcua_kit import auth
from motcua_kit.auth import TokenVerifier, generate_signing_key, mint_token
from motcua_kit.errors import Unauthenticated


@pytest.fixture
def keys() -> tuple[bytes, bytes]:
    return generate_signing_key()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token PyJWT is asked to check, in order."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: object, **kwargs: object) -> object:
        seen.append(token)
        return real(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth.jwt, "decode", counting)
    return seen


def test_a_second_call_with_the_same_token_skips_the_signature_check(
    keys: tuple[bytes, bytes], decodes: list[str]
) -> None:
    verifier = TokenVerifier(keys[1], "motcua", "motcua")
    token = mint_token(keys[0], "officer-1", ["officer"], agency="A")
    first = verifier.verify(token)
    second = verifier.verify(token)
    assert first == second
    assert second.subject == "officer-1" and second.agency_code == "A"
    assert decodes == [token]


def test_a_cached_token_is_refused_once_it_expires(keys: tuple[bytes, bytes]) -> None:
    verifier = TokenVerifier(keys[1], "motcua", "motcua")
    token = mint_token(keys[0], "officer-1", ["officer"], agency="A", ttl_seconds=1)
    verifier.verify(token)
    deadline = time.monotonic() + 10
    while True:
        try:
            verifier.verify(token)
        except Unauthenticated as exc:
            assert "expired" in str(exc)
            break
        assert time.monotonic() < deadline, "an expired token was still accepted"
        time.sleep(0.05)


def test_a_tampered_copy_of_a_cached_token_is_refused(keys: tuple[bytes, bytes]) -> None:
    verifier = TokenVerifier(keys[1], "motcua", "motcua")
    token = mint_token(keys[0], "citizen-1", ["citizen"], citizen_id="001099000001")
    verifier.verify(token)
    head, body, signature = token.split(".")
    forged = ".".join((head, body, ("A" if signature[0] != "A" else "B") + signature[1:]))
    with pytest.raises(Unauthenticated):
        verifier.verify(forged)
    other_key = generate_signing_key()[0]
    with pytest.raises(Unauthenticated):
        verifier.verify(mint_token(other_key, "citizen-1", ["citizen"]))


def test_the_cache_is_bounded(keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 3)
    verifier = TokenVerifier(keys[1], "motcua", "motcua")
    tokens = [mint_token(keys[0], f"u{i}", ["officer"], agency="A") for i in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert list(verifier._verified) == tokens[2:]
