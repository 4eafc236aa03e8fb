"""Sign a rendered form PAdES with the agency's key: B-B, or B-T when a TSA is configured.

The key sits in a PKCS#11 token (SoftHSM2 in tests and ``make run``, a real HSM or USB token in
production: the same interface, only the module path changes), or, for a small install, in a
PKCS#12 file. The private key never leaves the token: pyHanko asks the token to sign.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import x509
from pyhanko.config.pkcs11 import TokenCriteria
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.pkcs11 import PKCS11Signer, open_pkcs11_session
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

FIELD_NAME = "MotcuaAgencySignature"


class SigningError(RuntimeError):
    """Signing failed: the token, the key, the certificate or the TSA said no."""


@dataclass(frozen=True)
class Pkcs11Key:
    """A key and its certificate in a PKCS#11 token, found by labels."""

    module: str
    token_label: str
    key_label: str
    pin: str = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class Pkcs12Key:
    """A PKCS#12 file holding the key, its certificate and the chain (small installs)."""

    path: Path
    passphrase: bytes | None = field(default=None, repr=False)


def _metadata(reason: str | None) -> signers.PdfSignatureMetadata:
    """PAdES (ETSI.CAdES.detached); B-T comes from the timestamper, in the CMS itself."""
    return signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason,
        use_pades_lta=False,
        embed_validation_info=False,
    )


def _sign(
    pdf: bytes, signer: signers.Signer, timestamper: TimeStamper | None, reason: str | None
) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    pdf_signer = signers.PdfSigner(_metadata(reason), signer=signer, timestamper=timestamper)
    try:
        out = pdf_signer.sign_pdf(writer)
    except TimestampRequestError as exc:
        raise SigningError(f"timestamp authority: {exc}") from exc
    return bytes(out.getvalue())


def sign(
    pdf: bytes,
    key: Pkcs11Key | Pkcs12Key,
    *,
    tsa_url: str | None = None,
    timestamper: TimeStamper | None = None,
    reason: str | None = None,
) -> bytes:
    """The signed PDF: B-T when ``tsa_url`` (or a ``timestamper``) is given, B-B otherwise."""
    if timestamper is None and tsa_url:
        timestamper = HTTPTimeStamper(tsa_url, timeout=10)
    if isinstance(key, Pkcs12Key):
        try:
            p12 = signers.SimpleSigner.load_pkcs12(str(key.path), passphrase=key.passphrase)
        except (OSError, ValueError) as exc:
            raise SigningError(f"PKCS#12 {key.path}: {exc}") from exc
        if p12 is None:
            raise SigningError(f"PKCS#12 {key.path}: could not be opened (passphrase?)")
        return _sign(pdf, p12, timestamper, reason)
    try:
        session = open_pkcs11_session(
            key.module, token_criteria=TokenCriteria(label=key.token_label), user_pin=key.pin
        )
    except Exception as exc:  # python-pkcs11 raises its own hierarchy, not one base class
        raise SigningError(f"PKCS#11 token {key.token_label!r}: {exc!r}") from exc
    try:
        signer = PKCS11Signer(
            session,
            key_label=key.key_label,
            cert_label=key.key_label,
            ca_chain=list(key.chain),
        )
        return _sign(pdf, signer, timestamper, reason)
    except SigningError:
        raise
    except Exception as exc:
        raise SigningError(f"PKCS#11 key {key.key_label!r}: {exc!r}") from exc
    finally:
        session.close()


def certificates(chain: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    """DER or PEM certificates as the asn1crypto objects pyHanko wants."""
    from asn1crypto import pem

    out = []
    for blob in chain:
        der = pem.unarmor(blob)[2] if pem.detect(blob) else blob
        out.append(x509.Certificate.load(der))
    return tuple(out)
