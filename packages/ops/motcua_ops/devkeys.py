"""The local development keys of ``make run``: one place that makes them and reads them.

``scripts/demo.py`` makes a throwaway identity-provider key pair and the gateway secret in
``.state/dev-keys/`` and marks the folder as local; ``motcua dev token`` mints tokens with that
key and with no other, so the command cannot become a way to sign tokens for a real identity
provider's key that happens to be on the machine.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from motcua_kit.auth import generate_signing_key

FOLDER = "dev-keys"
PRIVATE, PUBLIC, GATEWAY_SECRET = "idp-private.pem", "idp-public.pem", "payment-gateway.secret"
MARKER = "LOCAL-DEVELOPMENT-ONLY"
_MARKER_TEXT = (
    "motcua: throwaway keys made by scripts/demo.py for `make run` on this machine.\n"
    "Never configure a deployed service with them. Delete this folder to get new ones.\n"
)


class NotDevKeys(Exception):
    """The folder holds no local development key, or a key this tool must not use."""


@dataclass(frozen=True)
class DevKeys:
    """Paths of the demo's identity-provider key pair and payment-gateway secret."""

    folder: Path

    @property
    def private_key(self) -> Path:
        return self.folder / PRIVATE

    @property
    def public_key(self) -> Path:
        return self.folder / PUBLIC

    @property
    def gateway_secret(self) -> Path:
        return self.folder / GATEWAY_SECRET


def default_state_dir() -> Path:
    """``$MOTCUA_STATE_DIR``, else ``.state`` in the current directory (the repository root)."""
    return Path(os.environ.get("MOTCUA_STATE_DIR") or ".state")


def ensure_dev_keys(state_dir: Path) -> DevKeys:
    """Make the keys once (kept across runs so tokens and the gateway keep working)."""
    keys = DevKeys(state_dir / FOLDER)
    keys.folder.mkdir(parents=True, exist_ok=True)
    if not keys.private_key.exists():
        private_pem, public_pem = generate_signing_key()
        _write_private(keys.private_key, private_pem)
        keys.public_key.write_bytes(public_pem)
    if not keys.gateway_secret.exists():
        _write_private(keys.gateway_secret, secrets.token_urlsafe(32).encode())
    (keys.folder / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
    return keys


def load_dev_private_key(state_dir: Path) -> bytes:
    """The demo's private key PEM, after checking it is the local development key: the
    folder carries the demo's marker, the key is an unencrypted Ed25519 key, and it matches the
    public key the services were started with."""
    keys = DevKeys(state_dir / FOLDER)
    if not keys.private_key.is_file() or not keys.public_key.is_file():
        raise NotDevKeys(
            f"no local development key in {keys.folder}; start the demo once with `make run` "
            "(or point --state-dir / MOTCUA_STATE_DIR at its .state folder)"
        )
    if not (keys.folder / MARKER).is_file():
        raise NotDevKeys(
            f"{keys.folder} is not marked as made by the demo ({MARKER} is missing); "
            "this command only signs with the local development key of `make run`"
        )
    private_pem = keys.private_key.read_bytes()
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
        public = serialization.load_pem_public_key(keys.public_key.read_bytes())
    except (ValueError, TypeError) as exc:
        raise NotDevKeys(f"{keys.private_key} is not the demo's key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NotDevKeys(f"{keys.private_key} is not the demo's key (not an Ed25519 key)")
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    if key.public_key().public_bytes(*raw) != public.public_bytes(*raw):
        raise NotDevKeys(f"{keys.private_key} does not match {keys.public_key}")
    return private_pem


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
