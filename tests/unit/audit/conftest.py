"""Fixtures for the audit adapter tests: a migrated SQLite database and the service in-process.

SQLite is the real embedded database the service runs on by default; no broker is needed
because the service's use cases are called directly (the host is built, never started).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from motcua_audit.adapters.keys import LazyKeyRing
from motcua_audit.domain.tree_head import private_key_to_pem, public_key_to_pem
from motcua_audit.service import AuditService
from motcua_audit.settings import AuditSettings
from motcua_kit.auth import Principal, reset_principal, set_principal
from motcua_kit.service import ServiceHost


class SteppingClock:
    """A clock that moves one millisecond per reading (distinct, ordered timestamps)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    """(private PEM, public PEM) of a fresh Ed25519 signing key."""
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    private.write_bytes(private_key_to_pem(key))
    public.write_bytes(public_key_to_pem(key.public_key()))
    return private, public


@pytest.fixture
def settings(tmp_path: Path, key_files: tuple[Path, Path]) -> AuditSettings:
    return AuditSettings(
        database_url=f"sqlite:///{tmp_path}/audit.db",
        signing_key_file=key_files[0],
        dev_signing_key_file=tmp_path / "dev-key.pem",
    )


@pytest.fixture
def host(settings: AuditSettings) -> Iterator[ServiceHost]:
    built = ServiceHost(
        AuditService, settings, overrides={"clock": SteppingClock(), "keys": LazyKeyRing(settings)}
    )
    built.migrate()
    try:
        yield built
    finally:
        built.engine.dispose()


@pytest.fixture
def service(host: ServiceHost) -> AuditService:
    assert isinstance(host.service, AuditService)
    return host.service


@pytest.fixture
def as_principal() -> Iterator[object]:
    """``as_principal(subject, *roles, agency=...)`` sets the caller for in-process API calls."""
    tokens = []

    def set_(subject: str, *roles: str, agency: str = "") -> Principal:
        principal = Principal(subject, frozenset(roles), agency_code=agency)
        tokens.append(set_principal(principal))
        return principal

    yield set_
    for token in reversed(tokens):
        reset_principal(token)
