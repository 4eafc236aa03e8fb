"""A development and test PKI: a root CA, per-agency signing certificates, a TSA certificate,
a SoftHSM2 token holding the agency keys, and the keyring file the services read.

For tests and ``make run`` only: the keys are made here, so they prove nothing about anyone.
Production gets its certificates from the national CA and keeps its keys in an HSM or USB
token; it writes the same keyring file (``motcua_documents.keyring``) by hand.

SoftHSM2 reads ``SOFTHSM2_CONF`` once per process, when the module is first loaded: one
process sees one token directory. Certificates are written into the token by a child process
(``python -m motcua_documents.devpki store-cert``), so making a token never loads the module
into the calling process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
DEV_PIN = "246810"
DEV_SO_PIN = "13579111"
TOKEN_LABEL = "motcua-dev"


@dataclass
class Issued:
    """A private key and its certificate, in both libraries' forms."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def asn1(self) -> asn1_x509.Certificate:
        """The certificate as pyHanko wants it."""
        return asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    @property
    def asn1_key(self) -> asn1_keys.PrivateKeyInfo:
        """The key as pyHanko's in-process signers want it (the TSA, PKCS#12 tests)."""
        return asn1_keys.PrivateKeyInfo.load(self.key_der())

    def key_der(self) -> bytes:
        """PKCS#8 DER, unencrypted."""
        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pem(self) -> bytes:
        """The certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def make_root(name: str) -> Issued:
    """A self-signed root CA (keyCertSign, cRLSign; path length 0)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _now()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def make_leaf(
    root: Issued,
    common_name: str,
    *,
    agency_code: str | None = None,
    tsa: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A signing certificate under ``root``: an agency's (organizationIdentifier = its code,
    digitalSignature + nonRepudiation, documentSigning + emailProtection) or a TSA's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _now()
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, common_name),
    ]
    if agency_code:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, agency_code))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if tsa:
        usage = (True, False)  # digitalSignature only
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING])
    else:
        usage = (True, True)  # digitalSignature + nonRepudiation (contentCommitment)
        eku = x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=usage[0],
                content_commitment=usage[1],
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(eku, critical=tsa)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    return Issued(key, cert)


@dataclass
class DevPki:
    """What ``create`` made, and where it wrote it."""

    dir: Path
    root: Issued
    tsa: Issued
    agencies: dict[str, Issued]
    softhsm_conf: Path
    keyring: Path
    root_pem: Path
    nssdir: str
    pin: str = field(default=DEV_PIN, repr=False)

    def env(self) -> dict[str, str]:
        """What a process that signs needs in its environment (SoftHSM2's token directory)."""
        return {"SOFTHSM2_CONF": str(self.softhsm_conf)}


def _run(cmd: list[str], env: Mapping[str, str]) -> None:
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed: {done.stderr.strip() or done.stdout}")


def init_token(directory: Path, label: str = TOKEN_LABEL, pin: str = DEV_PIN) -> Path:
    """A fresh SoftHSM2 token in ``directory`` (never the system token directory)."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    _run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            DEV_SO_PIN,
        ],
        env,
    )
    return conf


def import_key(
    conf: Path,
    issued: Issued,
    key_label: str,
    key_id: int,
    *,
    label: str = TOKEN_LABEL,
    pin: str = DEV_PIN,
) -> None:
    """Put ``issued``'s key and certificate into the token, both under ``key_label``."""
    env = {"SOFTHSM2_CONF": str(conf)}
    key_pem = conf.parent / f".{key_label}-key.pem"
    key_pem.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_pem, 0o600)
    try:
        _run(
            [
                "softhsm2-util",
                "--import",
                str(key_pem),
                "--token",
                label,
                "--label",
                key_label,
                "--id",
                f"{key_id:04x}",
                "--pin",
                pin,
            ],
            env,
        )
    finally:
        key_pem.unlink()  # the key now lives only in the token
    cert_der = conf.parent / f".{key_label}-cert.der"
    cert_der.write_bytes(issued.cert.public_bytes(serialization.Encoding.DER))
    try:
        _run(
            [
                sys.executable,
                "-m",
                "motcua_documents.devpki",
                "store-cert",
                str(cert_der),
                label,
                key_label,
                f"{key_id:04x}",
            ],
            {**env, "MOTCUA_DEVPKI_PIN": pin},
        )
    finally:
        cert_der.unlink()


def nss_database(directory: Path, roots: Mapping[str, Path]) -> str:
    """An NSS database trusting ``roots`` (nickname → PEM), for poppler's ``pdfsig -nssdir``."""
    directory.mkdir(parents=True, exist_ok=True)
    _run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], {})
    for nick, pem in roots.items():
        _run(
            ["certutil", "-A", "-d", f"sql:{directory}", "-n", nick, "-t", "C,C,C", "-i", str(pem)],
            {},
        )
    return f"sql:{directory}"


def create(directory: Path, agencies: Mapping[str, str], *, tsa_url: str = "") -> DevPki:
    """A root, a TSA certificate, one signing certificate per agency (code → name) with its key
    in a fresh SoftHSM2 token, an NSS database, and ``keyring.yaml`` naming it all."""
    directory.mkdir(parents=True, exist_ok=True)
    root = make_root("Motcua Dev")
    tsa = make_leaf(root, "Motcua Dev TSA", tsa=True)
    issued = {code: make_leaf(root, name, agency_code=code) for code, name in agencies.items()}
    root_pem = directory / "root.pem"
    root_pem.write_bytes(root.pem())
    (directory / "tsa.pem").write_bytes(tsa.pem())
    tsa_key = directory / "tsa-key.der"
    tsa_key.write_bytes(tsa.key_der())
    os.chmod(tsa_key, 0o600)
    conf = init_token(directory / "softhsm")
    for n, (code, leaf) in enumerate(sorted(issued.items()), start=1):
        import_key(conf, leaf, code, n)
    pin_file = directory / "token.pin"
    pin_file.write_text(DEV_PIN + "\n")
    os.chmod(pin_file, 0o600)
    keyring = directory / "keyring.yaml"
    keyring.write_text(
        yaml.safe_dump(
            {
                "trust_roots": [str(root_pem)],
                "tsa_url": tsa_url,
                "agencies": {
                    code: {
                        "pkcs11": {
                            "module": SOFTHSM_MODULE,
                            "token_label": TOKEN_LABEL,
                            "key_label": code,
                            "pin_file": str(pin_file),
                        },
                        "chain": [str(root_pem)],
                    }
                    for code in sorted(issued)
                },
            },
            allow_unicode=True,
            sort_keys=False,
        )
    )
    nssdir = nss_database(directory / "nss", {"motcua-dev-root": root_pem})
    return DevPki(directory, root, tsa, issued, conf, keyring, root_pem, nssdir)


def _store_cert(der_path: str, token_label: str, key_label: str, key_id: str) -> None:
    import pkcs11
    from pkcs11 import Attribute, CertificateType, ObjectClass

    der = Path(der_path).read_bytes()
    cert = x509.load_der_x509_certificate(der)
    token = pkcs11.lib(SOFTHSM_MODULE).get_token(token_label=token_label)
    with token.open(rw=True, user_pin=os.environ["MOTCUA_DEVPKI_PIN"]) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: key_label,
                Attribute.ID: bytes.fromhex(key_id),
                Attribute.SUBJECT: cert.subject.public_bytes(),
                Attribute.VALUE: der,
            }
        )


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "store-cert":
        _store_cert(*sys.argv[2:])
    else:
        sys.exit("usage: python -m motcua_documents.devpki store-cert DER TOKEN LABEL ID")
