"""The keyring file: a good one loads the session token's keys, a wrong one names its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from motcua_documents import keyring
from motcua_documents.devpki import DevPki
from motcua_documents.signing import Pkcs11Key, Pkcs12Key


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "keyring.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_the_dev_keyring_loads_every_agency_with_its_pin_from_the_file(dev_pki: DevPki) -> None:
    ring = keyring.load(dev_pki.keyring)
    assert set(ring.keys) >= set(dev_pki.agencies)
    key = ring.key_for("STP")
    assert isinstance(key, Pkcs11Key) and key.key_label == "STP" and key.pin == dev_pki.pin
    assert ring.trust_roots[0].sha256 == dev_pki.root.asn1.sha256
    assert keyring.load(dev_pki.keyring, tsa_url="http://127.0.0.1:1/tsr").tsa_url.endswith("/tsr")


def test_an_agency_without_a_key_is_named(dev_pki: DevPki) -> None:
    with pytest.raises(keyring.KeyringError, match=r"^agencies\.NOPE: no signing key"):
        keyring.load(dev_pki.keyring).key_for("NOPE")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("trust_roots"), r"^trust_roots: at least one"),
        (lambda d: d.update(trust_roots=["/nonexistent/root.pem"]), r"^trust_roots\[0\]: "),
        (lambda d: d.update(agencies={}), r"^agencies: at least one"),
        (
            lambda d: d["agencies"]["STP"]["pkcs11"].pop("token_label"),
            r"^agencies\.STP\.pkcs11\.token_label: is required",
        ),
        (
            lambda d: d["agencies"]["STP"]["pkcs11"].update(pin_file="/nonexistent/pin"),
            r"^agencies\.STP\.pkcs11\.pin_file: ",
        ),
        (
            lambda d: d["agencies"]["STP"].update(pkcs12={"path": "x.p12"}),
            r"^agencies\.STP: name pkcs11 or pkcs12, not both",
        ),
        (lambda d: d["agencies"].update(STP="token"), r"^agencies\.STP: must be a mapping"),
        (lambda d: d.update(tsa_url=5), r"^tsa_url: must be a URL"),
    ],
)
def test_a_wrong_keyring_is_refused_naming_the_field(
    dev_pki: DevPki, tmp_path: Path, change: object, field: str
) -> None:
    data = yaml.safe_load(dev_pki.keyring.read_text())
    change(data)  # type: ignore[operator]
    with pytest.raises(keyring.KeyringError, match=field):
        keyring.load(_write(tmp_path, data))


def test_a_pkcs12_key_reads_its_passphrase_from_a_file(dev_pki: DevPki, tmp_path: Path) -> None:
    (tmp_path / "agency.p12").write_bytes(b"not checked until signing")
    (tmp_path / "pass").write_text("p12-pass\n")
    data = {
        "trust_roots": [str(dev_pki.root_pem)],
        "agencies": {"SXD": {"pkcs12": {"path": "agency.p12", "passphrase_file": "pass"}}},
    }
    key = keyring.load(_write(tmp_path, data)).key_for("SXD")
    assert isinstance(key, Pkcs12Key)
    assert key.path == tmp_path / "agency.p12" and key.passphrase == b"p12-pass"
