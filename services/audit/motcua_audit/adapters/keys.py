"""The tree-head signing key and the trusted public keys, loaded from PEM files.

Production mounts the private key (``MOTCUA_AUDIT_SIGNING_KEY_FILE``) from a Secret; retired
keys stay trusted through ``MOTCUA_AUDIT_TRUSTED_PUBLIC_KEY_FILES`` so heads signed before a
rotation still verify. Without a key file a laptop run generates a development key under
``.state/`` (and says so loudly), unless ``MOTCUA_AUDIT_REQUIRE_SIGNING_KEY`` forbids it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from motcua_audit.domain.tree_head import (
    TreeHeadSigner,
    key_id_for,
    load_private_key_pem,
    load_public_key_pem,
    private_key_to_pem,
)
from motcua_audit.settings import AuditSettings

log = logging.getLogger(__name__)


class SigningKeyError(RuntimeError):
    """The signing configuration cannot be used (missing file, wrong key type, bad password)."""


@dataclass(frozen=True)
class PublishedKey:
    key_id: str
    key: Ed25519PublicKey
    current: bool


@dataclass(frozen=True)
class KeyRing:
    """The signer of new heads and every public key a head may be verified with."""

    signer: TreeHeadSigner
    retired: tuple[Ed25519PublicKey, ...] = ()

    @property
    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """``{key_id: key}``: current first, then retired keys (the form verifiers take)."""
        ring = {self.signer.key_id: self.signer.public_key}
        for key in self.retired:
            ring.setdefault(key_id_for(key), key)
        return ring

    def published(self) -> list[PublishedKey]:
        current = self.signer.key_id
        return [PublishedKey(kid, k, kid == current) for kid, k in self.public_keys.items()]


def _read_private(path: Path, password: bytes | None) -> Ed25519PrivateKey:
    try:
        return load_private_key_pem(path.read_bytes(), password)
    except FileNotFoundError:
        raise SigningKeyError(f"signing key file {path} does not exist") from None
    except (TypeError, ValueError) as exc:
        raise SigningKeyError(
            f"signing key file {path} is not a usable Ed25519 key: {exc}"
        ) from None


def _dev_key(path: Path) -> Ed25519PrivateKey:
    """Load the development key at ``path``, creating it atomically if missing.

    Several processes may start at once (tests, ``make run``): the key is written to a
    temporary file and hard-linked into place, so exactly one key ever appears there.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")
        try:
            os.write(fd, private_key_to_pem(Ed25519PrivateKey.generate()))
            os.close(fd)
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return _read_private(path, None)


def load_key_ring(settings: AuditSettings) -> KeyRing:
    """Build the key ring from settings; raises :class:`SigningKeyError` with the reason."""
    password = (
        settings.signing_key_password.get_secret_value().encode()
        if settings.signing_key_password
        else None
    )
    if settings.signing_key_file is not None:
        private = _read_private(settings.signing_key_file, password)
    elif settings.require_signing_key:
        raise SigningKeyError(
            "MOTCUA_AUDIT_SIGNING_KEY_FILE is not set and MOTCUA_AUDIT_REQUIRE_SIGNING_KEY is on"
        )
    else:
        private = _dev_key(settings.dev_signing_key_file)
        log.warning(
            "MOTCUA_AUDIT_SIGNING_KEY_FILE is not set: signing tree heads with the development "
            "key %s; auditors cannot trust these heads outside development",
            settings.dev_signing_key_file,
        )
    retired = []
    for path in settings.trusted_public_key_paths:
        try:
            retired.append(load_public_key_pem(path.read_bytes()))
        except FileNotFoundError:
            raise SigningKeyError(f"trusted public key file {path} does not exist") from None
        except (TypeError, ValueError) as exc:
            raise SigningKeyError(f"trusted public key file {path} is not Ed25519: {exc}") from None
    return KeyRing(TreeHeadSigner(private), tuple(retired))


class LazyKeyRing:
    """Loads the key ring on first use, so ``migrate`` never needs the signing key."""

    def __init__(self, settings: AuditSettings) -> None:
        self._settings = settings
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()

    def get(self) -> KeyRing:
        with self._lock:
            if self._ring is None:
                self._ring = load_key_ring(self._settings)
            return self._ring
