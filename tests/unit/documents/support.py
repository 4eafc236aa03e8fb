"""Helpers for the documents tests: sample forms, a test CA, a SoftHSM2 token, a local TSA.

Everything is real: the token is SoftHSM2 (Debian softhsm2) in a temporary directory named by
SOFTHSM2_CONF (the system token directory is never touched), the TSA answers RFC 3161 over
HTTP on loopback, and pdfsig checks trust against an NSS database holding the test root.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from motcua_documents.local_tsa import LocalTsa
from motcua_documents.model import VIETNAM, FormContent
from motcua_documents.signing import Pkcs11Key, Pkcs12Key

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
PIN = "246810"
KINDS = ("receipt", "supplement", "refusal", "apology", "control")

AGENCY = {
    "code": "so-tu-phap-qng",
    "name": "Trung tâm Phục vụ hành chính công tỉnh",
    "parent": "Ủy ban nhân dân tỉnh Quảng Ngãi",
    "place": "Quảng Ngãi",
}
OTHER_AGENCY = {**AGENCY, "code": "ubnd-xa-nghia-dung", "name": "UBND xã Nghĩa Dũng"}


def base(kind: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": kind,
        "number": "125/TTPVHCC",
        "agency": AGENCY,
        "dossier_code": "000.00.17.H48-260315-0001",
        "procedure": "Cấp phiếu lý lịch tư pháp cho công dân Việt Nam",
        "applicant": {
            "name": "Nguyễn Thị Hương",
            "address": "Số 12 đường Lê Lợi, phường Nghĩa Chánh",
            "phone": "0905123456",
            "email": "huong.nguyen@example.vn",
        },
        "officer": {"name": "Trần Văn Đức", "title": "Công chức tiếp nhận", "phone": "02553822123"},
        "received_at": datetime(2026, 3, 15, 8, 30, tzinfo=VIETNAM),
        "issued_on": date(2026, 3, 15),
        "documents": [
            {"name": "Tờ khai yêu cầu cấp phiếu lý lịch tư pháp", "kind": "bản chính", "copies": 1},
            {"name": "Căn cước công dân", "kind": "bản sao", "copies": 1},
        ],
        "appointment": datetime(2026, 3, 25, 16, 0, tzinfo=VIETNAM),
        "working_days": 8,
    }
    data.update(over)
    return data


SAMPLES: dict[str, dict[str, Any]] = {
    "receipt": base("receipt"),
    "supplement": base(
        "supplement",
        requested=["Bản sao giấy khai sinh có chứng thực", "Ảnh chân dung 4x6 chụp trong 6 tháng"],
        reason="Hồ sơ thiếu giấy tờ chứng minh nơi cư trú.",
    ),
    "refusal": base(
        "refusal",
        reason="Yêu cầu không thuộc thẩm quyền giải quyết của cơ quan; đề nghị ông/bà liên hệ "
        "Sở Tư pháp tỉnh Quảng Nam để được hướng dẫn tiếp.",
    ),
    "apology": base(
        "apology",
        issued_on=date(2026, 3, 25),
        new_appointment=datetime(2026, 3, 30, 10, 0, tzinfo=VIETNAM),
        reason="Cơ quan phối hợp chưa gửi kết quả xác minh đúng hạn.",
    ),
    "control": base(
        "control",
        issued_on=date(2026, 3, 16),
        handovers=[
            {
                "giver": "Bộ phận Tiếp nhận và Trả kết quả",
                "receiver": "Phòng Hành chính tư pháp",
                "at": datetime(2026, 3, 15, 9, 0, tzinfo=VIETNAM),
                "outcome": "Đúng hạn",
            },
            {
                "giver": "Phòng Hành chính tư pháp",
                "receiver": "Lãnh đạo Sở",
                "at": datetime(2026, 3, 16, 14, 15, tzinfo=VIETNAM),
                "outcome": "Trước hạn",
                "note": "Đã xác minh với công an huyện",
            },
        ],
    ),
}


def content(kind: str, **over: Any) -> FormContent:
    return FormContent.build({**SAMPLES[kind], **over})


def content_data(kind: str, **over: Any) -> dict[str, Any]:
    return {**SAMPLES[kind], **over}


# --- a CA hierarchy made with cryptography ---------------------------------------------------


@dataclass
class Issued:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def asn1(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    @property
    def asn1_key(self) -> asn1_keys.PrivateKeyInfo:
        return asn1_keys.PrivateKeyInfo.load(
            self.key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


NOW = datetime.now(UTC).replace(microsecond=0)


def make_root(name: str) -> Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
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
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=3650))
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
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
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
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365))
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
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    root = make_root("Motcua Test")
    other_root = make_root("Elsewhere Test")
    nss = base / "nss"
    nss.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    (base / "root.pem").write_bytes(root.pem())
    subprocess.run(
        [
            "certutil",
            "-A",
            "-d",
            f"sql:{nss}",
            "-n",
            "motcua-root",
            "-t",
            "C,C,C",
            "-i",
            str(base / "root.pem"),
        ],
        check=True,
    )
    return Pki(
        root=root,
        other_root=other_root,
        agency=make_leaf(
            root, "Trung tâm Phục vụ hành chính công tỉnh", agency_code=AGENCY["code"]
        ),
        other_agency=make_leaf(root, "UBND xã Nghĩa Dũng", agency_code=OTHER_AGENCY["code"]),
        foreign=make_leaf(other_root, "Trung tâm giả danh", agency_code=AGENCY["code"]),
        expired=make_leaf(
            root,
            "Trung tâm Phục vụ hành chính công tỉnh (cũ)",
            agency_code=AGENCY["code"],
            not_before=NOW - timedelta(days=400),
            not_after=NOW - timedelta(days=35),
        ),
        tsa=make_leaf(root, "Motcua Test TSA", tsa=True),
        dir=base,
        nssdir=f"sql:{nss}",
    )


# --- a SoftHSM2 token in a temporary directory ----------------------------------------------


@pytest.fixture(scope="session")
def token(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pkcs11Key]:
    """A fresh SoftHSM2 token holding the agency's key and certificate (label 'agency')."""
    import pkcs11
    from pkcs11 import Attribute, CertificateType, ObjectClass

    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    util = ["softhsm2-util"]
    subprocess.run(
        [
            *util,
            "--init-token",
            "--free",
            "--label",
            "motcua-test",
            "--pin",
            PIN,
            "--so-pin",
            "13579111",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    key_pem = base / "agency-key.pem"
    key_pem.write_bytes(
        pki.agency.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    subprocess.run(
        [
            *util,
            "--import",
            str(key_pem),
            "--token",
            "motcua-test",
            "--label",
            "agency",
            "--id",
            "01",
            "--pin",
            PIN,
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    key_pem.unlink()  # the key now lives only in the token
    lib = pkcs11.lib(SOFTHSM_MODULE)
    tok = lib.get_token(token_label="motcua-test")
    with tok.open(rw=True, user_pin=PIN) as session:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: "agency",
                Attribute.ID: b"\x01",
                Attribute.SUBJECT: pki.agency.cert.subject.public_bytes(),
                Attribute.VALUE: pki.agency.cert.public_bytes(serialization.Encoding.DER),
            }
        )
    yield Pkcs11Key(
        module=SOFTHSM_MODULE,
        token_label="motcua-test",
        key_label="agency",
        pin=PIN,
        chain=(pki.root.asn1,),
    )
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


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
