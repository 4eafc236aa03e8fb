"""Helpers for the documents tests: sample forms, a test CA, a SoftHSM2 token, a local TSA.

Everything is real: the token is the session's SoftHSM2 token (Debian softhsm2,
tests/conftest.py's ``dev_pki``, in a temporary directory named by SOFTHSM2_CONF; the system
token directory is never touched), the TSA answers RFC 3161 over
HTTP on loopback, and pdfsig checks trust against an NSS database holding the test root.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from motcua_documents import keyring
from motcua_documents.devpki import DevPki, Issued, make_leaf, make_root
from motcua_documents.local_tsa import LocalTsa
from motcua_documents.model import FormContent
from motcua_documents.samples import AGENCY, KINDS, OTHER_AGENCY, SAMPLES
from motcua_documents.signing import Pkcs11Key, Pkcs12Key

__all__ = ["AGENCY", "KINDS", "OTHER_AGENCY", "SAMPLES", "Pki", "content", "content_data"]


def content(kind: str, **over: Any) -> FormContent:
    return FormContent.build({**SAMPLES[kind], **over})


def content_data(kind: str, **over: Any) -> dict[str, Any]:
    return {**SAMPLES[kind], **over}


# --- the test PKI: the session's dev PKI (tests/conftest.py) plus the refusal cases --------

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Pki:
    root: Issued
    other_root: Issued
    agency: Issued
    other_agency: Issued
    foreign: Issued  # the same agency code, issued by another root
    expired: Issued
    tsa: Issued
    dir: Path
    nssdir: str

    def p12(self, issued: Issued, name: str) -> Pkcs12Key:
        path = self.dir / f"{name}.p12"
        if not path.exists():
            path.write_bytes(
                pkcs12.serialize_key_and_certificates(
                    name.encode(),
                    issued.key,
                    issued.cert,
                    [self.root.cert, self.other_root.cert],
                    serialization.BestAvailableEncryption(b"p12-pass"),
                )
            )
        return Pkcs12Key(path, b"p12-pass")


@pytest.fixture(scope="session")
def pki(dev_pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    root = dev_pki.root
    other_root = make_root("Elsewhere Test")
    return Pki(
        root=root,
        other_root=other_root,
        agency=dev_pki.agencies[AGENCY["code"]],
        other_agency=dev_pki.agencies[OTHER_AGENCY["code"]],
        foreign=make_leaf(other_root, "Trung tâm giả danh", agency_code=AGENCY["code"]),
        expired=make_leaf(
            root,
            "Trung tâm Phục vụ hành chính công tỉnh (cũ)",
            agency_code=AGENCY["code"],
            not_before=NOW - timedelta(days=400),
            not_after=NOW - timedelta(days=35),
        ),
        tsa=dev_pki.tsa,
        dir=base,
        nssdir=dev_pki.nssdir,
    )


@pytest.fixture(scope="session")
def token(dev_pki: DevPki) -> Pkcs11Key:
    """The session's SoftHSM2 token, holding this agency's key and certificate."""
    key = keyring.load(dev_pki.keyring).key_for(AGENCY["code"])
    assert isinstance(key, Pkcs11Key)
    return key


@pytest.fixture(scope="session")
def tsa(pki: Pki) -> Iterator[LocalTsa]:
    with LocalTsa(pki.tsa.asn1, pki.tsa.asn1_key, chain=(pki.root.asn1,)) as local:
        yield local


def pdfsig(path: Path, nssdir: str) -> str:
    """poppler's own verdict (NSS), as text."""
    done = subprocess.run(
        ["pdfsig", "-nssdir", nssdir, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout + done.stderr


def pdftotext(path: Path) -> str:
    done = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout
