"""Identity keys from a JWKS: rotation without restart, unknown ``kid`` refused, bounded staleness.

A real HTTP server on 127.0.0.1 publishes the JWKS (and an OIDC discovery document); keys are
fresh Ed25519 pairs; time is an injected clock, so nothing sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from pydantic_settings import SettingsConfigDict
from sqlalchemy import MetaData

from motcua_kit.auth import TokenVerifier, mint_token
from motcua_kit.errors import Unauthenticated
from motcua_kit.service import Service, ServiceHost
from motcua_kit.settings import ServiceSettings

DISCOVERY = "/.well-known/openid-configuration"


class Signer:
    """One of the identity provider's key pairs, named by ``kid``."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        key = Ed25519PrivateKey.generate()
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.jwk: dict[str, Any] = {
            **OKPAlgorithm.to_jwk(key.public_key(), as_dict=True),
            "kid": kid,
            "use": "sig",
            "alg": "EdDSA",
        }

    def token(self, subject: str = "u1", *, kid: str | None = None) -> str:
        return mint_token(
            self.private_pem, subject, ["officer"], agency="A", kid=self.kid if kid is None else kid
        )


class JwksServer:
    """Serves ``/jwks.json`` and an OIDC discovery document; counts requests per path."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.failing = False  # answer 503 instead of the document
        self.hits: dict[str, int] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits[self.path] = owner.hits.get(self.path, 0) + 1
                if owner.failing:
                    self.send_error(503)
                    return
                body: dict[str, object]
                if self.path == "/jwks.json":
                    body = {"keys": owner.keys}
                elif self.path == DISCOVERY:
                    body = {"issuer": "motcua", "jwks_uri": f"{owner.base}/jwks.json"}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.url = f"{self.base}/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self._running = True

    def publish(self, *signers: Signer) -> None:
        self.keys = [s.jwk for s in signers]

    def fetches(self, path: str = "/jwks.json") -> int:
        return self.hits.get(path, 0)

    def stop(self) -> None:
        """Close the socket: from now on the endpoint refuses connections."""
        if self._running:
            self._running = False
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server() -> Iterator[JwksServer]:
    srv = JwksServer()
    yield srv
    srv.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _verifier(url: str, clock: Clock, cache: float = 300, stale: float = 600) -> TokenVerifier:
    return TokenVerifier.from_jwks(
        url, "motcua", "motcua", cache_seconds=cache, max_stale_seconds=stale, clock=clock
    )


def test_a_rotated_key_is_picked_up_without_a_restart(server: JwksServer, clock: Clock) -> None:
    old, new = Signer("2026-01"), Signer("2026-02")
    server.publish(old)
    verifier = _verifier(server.url, clock)
    assert verifier.verify(old.token("a")).subject == "a"
    assert verifier.verify(old.token("b")).subject == "b"
    assert server.fetches() == 1  # cached

    server.publish(new)  # the provider rotates: the old key is retired
    clock.advance(30)  # well within the cache lifetime
    principal = verifier.verify(new.token("c"))  # unknown kid: one refetch finds it
    assert principal.subject == "c" and principal.roles == {"officer"}
    assert server.fetches() == 2
    with pytest.raises(Unauthenticated, match="unknown signing key id '2026-01'"):
        verifier.verify(old.token())  # retired key: refused, no refetch so soon
    assert server.fetches() == 2

    server.publish(old, new)
    clock.advance(300)  # the cache expires: fetched again even for a known kid
    assert verifier.verify(new.token()).subject == "u1"
    assert server.fetches() == 3
    assert verifier.verify(old.token()).subject == "u1"


def test_an_unknown_kid_is_refused_after_one_refetch_without_hammering(
    server: JwksServer, clock: Clock
) -> None:
    known, stranger = Signer("known"), Signer("stranger")
    server.publish(known)
    verifier = _verifier(server.url, clock)
    assert verifier.verify(known.token()).subject == "u1"
    clock.advance(60)
    for _ in range(20):
        with pytest.raises(Unauthenticated, match="unknown signing key id 'stranger'"):
            verifier.verify(stranger.token())
    assert server.fetches() == 2  # one refetch for the whole burst
    clock.advance(60)
    with pytest.raises(Unauthenticated, match="unknown signing key id"):
        verifier.verify(stranger.token(kid="other"))
    assert server.fetches() == 3
    # A known kid with somebody else's signature is refused on the signature.
    with pytest.raises(Unauthenticated, match="invalid token: Signature verification failed"):
        verifier.verify(stranger.token(kid="known"))
    # A token that names no key cannot be matched at all.
    with pytest.raises(Unauthenticated, match="names no signing key"):
        verifier.verify(mint_token(known.private_pem, "u1", ["officer"]))
    with pytest.raises(Unauthenticated, match="invalid token"):
        verifier.verify("not-a-jwt")
    assert server.fetches() == 3


def test_an_unreachable_jwks_keeps_the_cached_keys_for_a_bounded_time_then_refuses(
    server: JwksServer, clock: Clock
) -> None:
    signer = Signer("k1")
    server.publish(signer)
    verifier = _verifier(server.url, clock, cache=60, stale=120)
    assert verifier.verify(signer.token()).subject == "u1"
    server.stop()  # connection refused from now on

    clock.advance(61)  # cache expired, refetch fails: the cached key still serves
    assert verifier.verify(signer.token()).subject == "u1"
    clock.advance(118)  # 179 s after the last fetch: still within 60 + 120
    assert verifier.verify(signer.token()).subject == "u1"
    clock.advance(2)  # 181 s: too stale
    with pytest.raises(
        Unauthenticated, match=r"stale .*cannot be refreshed.*PyJWKClientConnection"
    ):
        verifier.verify(signer.token())


def test_a_failing_jwks_is_retried_at_a_bounded_rate_and_recovers(
    server: JwksServer, clock: Clock
) -> None:
    signer = Signer("k1")
    server.publish(signer)
    server.failing = True
    verifier = _verifier(server.url, clock, cache=60, stale=0)
    for _ in range(5):  # cold start with the provider down: refused, one request only
        with pytest.raises(Unauthenticated, match=r"identity provider keys unavailable.*503"):
            verifier.verify(signer.token())
    assert server.fetches() == 1
    server.failing = False
    clock.advance(5)  # within the refetch interval: still refused, not asked
    with pytest.raises(Unauthenticated, match="unavailable"):
        verifier.verify(signer.token())
    assert server.fetches() == 1
    clock.advance(10)
    assert verifier.verify(signer.token()).subject == "u1"
    assert server.fetches() == 2

    server.failing = True
    clock.advance(61)  # max_stale 0: the first failed refresh after expiry refuses
    with pytest.raises(Unauthenticated, match="stale"):
        verifier.verify(signer.token())


def test_an_oidc_discovery_url_leads_to_the_jwks(server: JwksServer, clock: Clock) -> None:
    old, new = Signer("old"), Signer("new")
    server.publish(old)
    verifier = _verifier(server.base + DISCOVERY, clock)
    assert verifier.verify(old.token()).subject == "u1"
    server.publish(new)
    clock.advance(30)
    assert verifier.verify(new.token()).subject == "u1"
    assert server.fetches() == 2
    assert server.fetches(DISCOVERY) == 1  # the jwks_uri is remembered


def test_a_jwks_without_usable_keys_does_not_replace_the_cached_ones(
    server: JwksServer, clock: Clock
) -> None:
    signer = Signer("k1")
    server.publish(signer)
    verifier = _verifier(server.url, clock, cache=60)
    assert verifier.verify(signer.token()).subject == "u1"
    server.keys = [{k: v for k, v in signer.jwk.items() if k != "kid"}]  # a broken publish
    clock.advance(61)
    assert verifier.verify(signer.token()).subject == "u1"
    assert server.fetches() == 2


def test_a_jwks_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        TokenVerifier.from_jwks("file:///etc/passwd", "motcua", "motcua")


class _Demo(Service):
    name = "demo"
    settings_class = ServiceSettings
    metadata = MetaData()
    migrations = "unused:unused"


def _start(tmp_path: Path, **settings: Any) -> None:
    host = ServiceHost(
        _Demo, ServiceSettings(database_url=f"sqlite:///{tmp_path}/demo.db", **settings)
    )
    try:
        host.start()
    finally:
        host.engine.dispose()


def test_the_service_needs_exactly_one_source_of_keys(tmp_path: Path) -> None:
    pem = tmp_path / "public.pem"
    pem.write_bytes(b"unused")
    with pytest.raises(
        SystemExit, match="both MOTCUA_DEMO_JWT_PUBLIC_KEY_FILE and MOTCUA_DEMO_JWT_JWKS_URL"
    ):
        _start(tmp_path, jwt_public_key_file=pem, jwt_jwks_url="https://idp.example/jwks.json")
    with pytest.raises(
        SystemExit, match="neither MOTCUA_DEMO_JWT_PUBLIC_KEY_FILE nor MOTCUA_DEMO_JWT_JWKS_URL"
    ):
        _start(tmp_path)
    with pytest.raises(SystemExit, match=r"MOTCUA_DEMO_JWT_JWKS_URL: .*http"):
        _start(tmp_path, jwt_jwks_url="ftp://idp.example/jwks.json")


def test_the_jwks_settings_come_from_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    class DemoSettings(ServiceSettings):
        model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_DEMO_")

    monkeypatch.setenv("MOTCUA_DEMO_JWT_JWKS_URL", "https://idp.example/jwks.json")
    monkeypatch.setenv("MOTCUA_DEMO_JWT_JWKS_CACHE_SECONDS", "120")
    monkeypatch.setenv("MOTCUA_DEMO_JWT_JWKS_MAX_STALE_SECONDS", "900")
    s = DemoSettings()
    assert (s.jwt_jwks_url, s.jwt_jwks_cache_seconds, s.jwt_jwks_max_stale_seconds) == (
        "https://idp.example/jwks.json",
        120.0,
        900.0,
    )


def test_a_token_is_checked_again_on_every_call_when_its_key_can_be_withdrawn(
    server: JwksServer, clock: Clock
) -> None:
    """The verified-token cache is for a fixed key only: a withdrawn JWKS key refuses at once."""
    signer = Signer("2026-01")
    server.publish(signer)
    verifier = _verifier(server.url, clock)
    token = signer.token("a")
    assert verifier.verify(token).subject == "a"
    server.publish(Signer("2026-02"))  # the provider withdraws the key (e.g. it leaked)
    clock.advance(301)  # past the JWKS cache: the next call refetches
    with pytest.raises(Unauthenticated):
        verifier.verify(token)
