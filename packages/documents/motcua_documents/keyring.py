"""The keyring file: which key signs for which agency, the trust roots, the TSA.

One YAML file, read at start-up, so a missing key or a wrong path stops the service before
its first citizen, with the field named::

    trust_roots: [/etc/motcua/pki/root.pem]     # what verification trusts
    tsa_url: https://tsa.example.vn/tsr          # optional: B-T when set, B-B otherwise
    agencies:
      STP:                                       # the agency code (organizationIdentifier)
        pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token_label: motcua,
                 key_label: STP, pin_file: /run/secrets/token-pin}
        chain: [/etc/motcua/pki/root.pem]       # certificates to embed above the signer's
      SXD:
        pkcs12: {path: /etc/motcua/pki/sxd.p12, passphrase_file: /run/secrets/sxd-pass}

PINs and passphrases are read from files (Kubernetes secrets mounted as files), never from
the YAML itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from asn1crypto import x509

from motcua_documents.signing import Pkcs11Key, Pkcs12Key, certificates


class KeyringError(ValueError):
    """The keyring file is wrong; the message names the field."""


@dataclass(frozen=True)
class Keyring:
    """The loaded keyring."""

    trust_roots: tuple[x509.Certificate, ...]
    tsa_url: str
    keys: Mapping[str, Pkcs11Key | Pkcs12Key]

    def key_for(self, agency_code: str) -> Pkcs11Key | Pkcs12Key:
        """The agency's key; KeyringError when the keyring has none for it."""
        try:
            return self.keys[agency_code]
        except KeyError:
            raise KeyringError(f"agencies.{agency_code}: no signing key for this agency") from None


def _path(value: object, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise KeyringError(f"{where}: must be a file path")
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise KeyringError(f"{where}: {path} is not a readable file")
    return path


def _secret(spec: Mapping[str, Any], name: str, where: str, base: Path) -> str:
    return _path(spec.get(name), f"{where}.{name}", base).read_text().strip()


def _certs(value: object, where: str, base: Path) -> tuple[x509.Certificate, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise KeyringError(f"{where}: must be a list of certificate files")
    out: list[x509.Certificate] = []
    for i, item in enumerate(value):
        path = _path(item, f"{where}[{i}]", base)
        try:
            out.extend(certificates([path.read_bytes()]))
        except ValueError as exc:
            raise KeyringError(f"{where}[{i}]: {path} is not a certificate ({exc})") from None
    return tuple(out)


def _key(code: str, spec: object, base: Path) -> Pkcs11Key | Pkcs12Key:
    where = f"agencies.{code}"
    if not isinstance(spec, Mapping):
        raise KeyringError(f"{where}: must be a mapping with pkcs11 or pkcs12")
    chain = _certs(spec.get("chain"), f"{where}.chain", base)
    if "pkcs11" in spec and "pkcs12" in spec:
        raise KeyringError(f"{where}: name pkcs11 or pkcs12, not both")
    if isinstance(spec.get("pkcs11"), Mapping):
        p11 = spec["pkcs11"]
        for name in ("module", "token_label", "key_label"):
            if not isinstance(p11.get(name), str) or not p11[name]:
                raise KeyringError(f"{where}.pkcs11.{name}: is required")
        return Pkcs11Key(
            module=str(_path(p11["module"], f"{where}.pkcs11.module", base)),
            token_label=p11["token_label"],
            key_label=p11["key_label"],
            pin=_secret(p11, "pin_file", f"{where}.pkcs11", base),
            chain=chain,
        )
    if isinstance(spec.get("pkcs12"), Mapping):
        p12 = spec["pkcs12"]
        passphrase = (
            _secret(p12, "passphrase_file", f"{where}.pkcs12", base).encode()
            if p12.get("passphrase_file")
            else None
        )
        return Pkcs12Key(_path(p12.get("path"), f"{where}.pkcs12.path", base), passphrase)
    raise KeyringError(f"{where}: must hold a pkcs11 or a pkcs12 mapping")


def load(path: Path, *, tsa_url: str | None = None) -> Keyring:
    """Read and check the keyring file; ``tsa_url`` overrides the file's."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KeyringError(f"keyring {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise KeyringError(f"keyring {path}: must be a mapping")
    base = path.parent
    roots = _certs(data.get("trust_roots"), "trust_roots", base)
    if not roots:
        raise KeyringError("trust_roots: at least one root certificate is required")
    agencies = data.get("agencies")
    if not isinstance(agencies, Mapping) or not agencies:
        raise KeyringError("agencies: at least one agency key is required")
    keys = {str(code): _key(str(code), spec, base) for code, spec in agencies.items()}
    url = (data.get("tsa_url") or "") if tsa_url is None else tsa_url
    if not isinstance(url, str):
        raise KeyringError("tsa_url: must be a URL")
    return Keyring(trust_roots=roots, tsa_url=url, keys=keys)
