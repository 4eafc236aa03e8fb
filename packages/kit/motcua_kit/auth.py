"""Who is calling: JWT bearer tokens with roles, verified with the identity provider's key.

Tokens are issued by the province's identity provider (or, in tests and ``make run``, by
:func:`mint_token` with a throwaway key). Claims used: ``sub``, ``roles`` (citizen, officer,
admin, service), ``agency`` (for officers) and ``citizen_id`` (for citizens: whose dossiers
they may see).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from motcua_kit.errors import PermissionDenied, Unauthenticated

ROLES = frozenset({"citizen", "officer", "admin", "service"})
_ALGORITHMS = ["EdDSA", "RS256", "ES256"]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    subject: str
    roles: frozenset[str]
    agency_code: str = ""
    citizen_id: str = ""
    claims: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def require_any(self, *roles: str) -> None:
        """Refuse unless the caller holds one of ``roles``."""
        if not self.has_any(*roles):
            raise PermissionDenied(f"this call needs one of the roles: {', '.join(sorted(roles))}")

    @property
    def primary_role(self) -> str:
        for role in ("admin", "service", "officer", "citizen"):
            if role in self.roles:
                return role
        return ""


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "motcua_principal", default=None
)


def current_principal() -> Principal:
    """The caller of the request being handled; refuses when there is none."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller")
    return principal


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


class TokenVerifier:
    """Verifies bearer tokens against the identity provider's public key."""

    def __init__(self, public_key_pem: bytes, issuer: str, audience: str) -> None:
        self._key = serialization.load_pem_public_key(public_key_pem)
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def from_file(cls, path: Path, issuer: str, audience: str) -> TokenVerifier:
        return cls(path.read_bytes(), issuer, audience)

    def verify(self, token: str) -> Principal:
        """Decode and check signature, expiry, issuer, audience and roles."""
        try:
            claims = jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=_ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not roles or not set(roles) <= ROLES:
            raise Unauthenticated("invalid token: roles must be a non-empty list of known roles")
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(roles),
            agency_code=str(claims.get("agency", "")),
            citizen_id=str(claims.get("citizen_id", "")),
            claims=claims,
        )


def generate_signing_key() -> tuple[bytes, bytes]:
    """A throwaway Ed25519 key pair (private PEM, public PEM) for tests and ``make run``."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def mint_token(
    private_key_pem: bytes,
    subject: str,
    roles: Iterable[str],
    *,
    agency: str = "",
    citizen_id: str = "",
    issuer: str = "motcua",
    audience: str = "motcua",
    ttl_seconds: int = 3600,
) -> str:
    """Issue a token as the identity provider would; for tests, demos and service accounts."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "roles": sorted(roles),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if agency:
        claims["agency"] = agency
    if citizen_id:
        claims["citizen_id"] = citizen_id
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    return jwt.encode(claims, key, algorithm="EdDSA")  # type: ignore[arg-type]
