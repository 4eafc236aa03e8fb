"""Who is calling: JWT bearer tokens with roles, verified with the identity provider's key.

Tokens are issued by the province's identity provider (or, in tests and ``make run``, by
:func:`mint_token` with a throwaway key). Claims used: ``sub``, ``roles`` (citizen, officer,
admin, service), ``agency`` (for officers) and ``citizen_id`` (for citizens: whose dossiers
they may see).

The provider's public key comes either from a PEM file (:meth:`TokenVerifier.from_file`) or from
its JWKS (:meth:`TokenVerifier.from_jwks`, :class:`JwksKeys`), so it can rotate keys without a
restart of the services (ADR 0070).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt import PyJWK, PyJWKClient

from motcua_kit.errors import PermissionDenied, Unauthenticated

ROLES = frozenset({"citizen", "officer", "admin", "service"})
_ALGORITHMS = ["EdDSA", "RS256", "ES256"]
OIDC_DISCOVERY_SUFFIX = "/.well-known/openid-configuration"

log = logging.getLogger(__name__)


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


class JwksKeys:
    """The identity provider's signing keys from its JWKS, selected by ``kid``.

    Why not :class:`jwt.PyJWKClient` alone: it forgets its cache when the lifespan ends, so an
    unreachable endpoint refuses every token at once, and its clock cannot be injected. Here
    PyJWKClient only fetches and parses; this class keeps the policy:

    * the key set is reused for ``cache_seconds``, then fetched again;
    * a token whose ``kid`` is not in the set triggers one fetch (the provider rotated), then
      is refused;
    * when the endpoint cannot be reached, the last key set keeps serving until it is
      ``cache_seconds + max_stale_seconds`` old; after that every token is refused;
    * fetches are at least ``min_refetch_seconds`` apart, whatever callers send (unknown or
      random ``kid`` values cannot make us hammer the provider).

    ``url`` is the JWKS itself or an OIDC discovery document (ending in
    ``/.well-known/openid-configuration``) whose ``jwks_uri`` names it.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        max_stale_seconds: float = 3600.0,
        min_refetch_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _require_http_url(url, "JWKS URL")
        if cache_seconds <= 0 or max_stale_seconds < 0 or min_refetch_seconds < 0:
            raise ValueError("cache_seconds must be > 0; max_stale / min_refetch must be >= 0")
        self.url = url
        self._discovery = url if url.rstrip("/").endswith(OIDC_DISCOVERY_SUFFIX) else None
        self._jwks_uri: str | None = None if self._discovery else url
        self._cache_seconds = cache_seconds
        self._max_stale_seconds = max_stale_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._last_error = "not fetched yet"

    def key_for(self, kid: str) -> PyJWK:
        """The key that signed a token with this ``kid``; refuses (Unauthenticated) otherwise."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._cache_seconds:
                self._refresh(now)
            if self._fetched_at is None:
                raise Unauthenticated(f"identity provider keys unavailable: {self._last_error}")
            age = now - self._fetched_at
            if age > self._cache_seconds + self._max_stale_seconds:
                raise Unauthenticated(
                    f"identity provider keys are stale ({age:.0f} s old) and cannot be "
                    f"refreshed: {self._last_error}"
                )
            key = self._keys.get(kid)
            if key is None and self._refresh(now):  # maybe the provider rotated its keys
                key = self._keys.get(kid)
            if key is None:
                raise Unauthenticated(f"invalid token: unknown signing key id {kid[:80]!r}")
            return key

    def _refresh(self, now: float) -> bool:
        """Fetch the key set unless one was tried too recently; True when it was replaced."""
        if self._attempted_at is not None and now - self._attempted_at < self._min_refetch_seconds:
            return False
        self._attempted_at = now
        try:
            keys = self._fetch()
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            if self._discovery:
                self._jwks_uri = None  # look the JWKS up again: it may have moved
            log.warning("could not fetch the identity provider's JWKS from %s: %s", self.url, exc)
            return False
        if self._keys and keys.keys() != self._keys.keys():
            log.info(
                "identity provider keys changed",
                extra={"kids": sorted(keys), "previous_kids": sorted(self._keys)},
            )
        self._keys = keys
        self._fetched_at = now
        return True

    def _fetch(self) -> dict[str, PyJWK]:
        if self._jwks_uri is None:
            assert self._discovery is not None
            # fetch_data returns any JSON object; PyJWKClient gives us its transport (http(s)
            # only, no redirects, timeout) for the discovery document too.
            discovery = PyJWKClient(self._discovery, cache_jwk_set=False, timeout=self._timeout)
            document = discovery.fetch_data()
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError("the OIDC discovery document has no jwks_uri")
            _require_http_url(jwks_uri, "jwks_uri")
            self._jwks_uri = jwks_uri
        client = PyJWKClient(self._jwks_uri, cache_jwk_set=False, timeout=self._timeout)
        keys = {
            key.key_id: key
            for key in client.get_jwk_set().keys
            if key.key_id
            and key.public_key_use in ("sig", None)
            and key.algorithm_name in _ALGORITHMS
        }
        if not keys:
            raise ValueError("the JWKS holds no signing key with a kid and a supported algorithm")
        return keys


def _require_http_url(url: str, what: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{what} must be an http(s) URL, got {url!r}")


# A verified token is kept this long (never past its own exp), so a client's every call does
# not pay the signature check again; only with a fixed key, since a JWKS key can be withdrawn.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 4096


class TokenVerifier:
    """Verifies bearer tokens against the identity provider's public key (a file or a JWKS)."""

    def __init__(
        self,
        public_key_pem: bytes | None,
        issuer: str,
        audience: str,
        *,
        jwks: JwksKeys | None = None,
    ) -> None:
        if (public_key_pem is None) == (jwks is None):
            raise ValueError("give exactly one of public_key_pem and jwks")
        self._key: Any = (
            serialization.load_pem_public_key(public_key_pem)
            if public_key_pem is not None
            else None
        )
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._clock: Callable[[], float] = time.time
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._verified_lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, issuer: str, audience: str) -> TokenVerifier:
        return cls(path.read_bytes(), issuer, audience)

    @classmethod
    def from_jwks(
        cls,
        url: str,
        issuer: str,
        audience: str,
        *,
        cache_seconds: float = 300.0,
        max_stale_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> TokenVerifier:
        """Verify with keys from a JWKS or OIDC discovery URL, so the provider can rotate them."""
        keys = JwksKeys(
            url, cache_seconds=cache_seconds, max_stale_seconds=max_stale_seconds, clock=clock
        )
        return cls(None, issuer, audience, jwks=keys)

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("invalid token: its header names no signing key (kid)")
        return self._jwks.key_for(kid)

    def verify(self, token: str) -> Principal:
        """Decode and check signature, expiry, issuer, audience and roles."""
        if self._jwks is not None:
            return self._verify(token)
        now = self._clock()
        with self._verified_lock:
            hit = self._verified.get(token)
            if hit is not None:
                if hit[0] > now:
                    self._verified.move_to_end(token)
                    return hit[1]
                del self._verified[token]
        principal = self._verify(token)
        exp = principal.claims.get("exp")
        expires = float(exp) if isinstance(exp, int | float) else now
        keep_until = min(now + VERIFIED_CACHE_SECONDS, expires)
        if keep_until > now:
            with self._verified_lock:
                self._verified[token] = (keep_until, principal)
                while len(self._verified) > VERIFIED_CACHE_SIZE:
                    self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
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
    kid: str = "",
) -> str:
    """Issue a token as the identity provider would; for tests, demos and service accounts.

    ``kid`` names the signing key in the header, as a provider publishing a JWKS does.
    """
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
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm="EdDSA", headers=headers)  # type: ignore[arg-type]
