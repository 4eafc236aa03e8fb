"""`motcua document verify FILE`, offline: papers signed in the session's SoftHSM2 token (or
from PKCS#12 files) by the dev PKI, checked by the CLI, each failure named on its line."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyhanko.pdf_utils.generic import NameObject, TextStringObject
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from typer.testing import CliRunner
from unit.documents.support import Pki, content_data, pki, tsa

from motcua_documents import keyring
from motcua_documents.devpki import DevPki, make_leaf
from motcua_documents.local_tsa import LocalTsa
from motcua_documents.model import FormContent
from motcua_documents.render import render
from motcua_documents.signing import Pkcs11Key, Pkcs12Key, sign
from motcua_ops.cli import app

__all__ = ["pki", "tsa"]  # the documents tests' fixtures, used here too

runner = CliRunner()
AGENCY = "STP"
DOSSIER = "STP-261204-0001"


def paper(**over: object) -> bytes:
    """The receipt of dossier STP-261204-0001, unsigned (the agency in the samples' words)."""
    data = content_data("receipt", dossier_code=DOSSIER, **over)
    data["agency"] = {**data["agency"], "code": AGENCY}
    return render(FormContent.build(data)).pdf


@pytest.fixture(scope="module")
def stp_key(dev_pki: DevPki) -> Pkcs11Key | Pkcs12Key:
    return keyring.load(dev_pki.keyring).key_for(AGENCY)


@pytest.fixture(scope="module")
def signed(stp_key: Pkcs11Key | Pkcs12Key) -> bytes:
    return sign(paper(), stp_key, reason="Cấp giấy tờ một cửa")


@pytest.fixture(scope="module")
def root_pem(dev_pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roots") / "root.pem"
    path.write_bytes(dev_pki.root.pem())
    return path


def run(tmp_path: Path, data: bytes, *args: str, name: str = "paper.pdf") -> tuple[int, dict, str]:
    """(exit code, {check: its line's verdict}, the whole output)."""
    path = tmp_path / name
    path.write_bytes(data)
    result = runner.invoke(app, ["document", "verify", str(path), *args])
    lines = {}
    for line in result.output.splitlines():
        check, sep, verdict = line.partition(": ")
        if sep and check in ("signature", "chain", "timestamp", "audit"):
            lines[check] = verdict
    return result.exit_code, lines, result.output


def test_a_good_paper_passes_signature_chain_and_timestamp_offline(
    signed: bytes, root_pem: Path, tmp_path: Path
) -> None:
    code, lines, out = run(
        tmp_path, signed, "--trust-root", str(root_pem), "--agency", AGENCY, "--offline"
    )
    assert code == 0, out
    assert lines["signature"].startswith("ok PAdES B-B"), out
    assert lines["chain"].startswith("ok ") and f"agency {AGENCY}" in lines["chain"], out
    assert lines["timestamp"].startswith("ok none (B-B"), out
    assert lines["audit"].startswith("not checked"), out
    assert "verified, except audit (not checked)" in out


def test_without_audit_and_without_offline_the_exit_code_is_not_zero(
    signed: bytes, root_pem: Path, tmp_path: Path
) -> None:
    code, lines, out = run(tmp_path, signed, "--trust-root", str(root_pem))
    assert code == 1, out
    assert lines["signature"].startswith("ok") and lines["chain"].startswith("ok")
    assert lines["audit"].startswith("FAILED: not checked"), out
    assert out.rstrip().endswith("FAILED: audit")


def test_trust_roots_from_a_keyring(signed: bytes, dev_pki: DevPki, tmp_path: Path) -> None:
    code, lines, out = run(tmp_path, signed, "--keyring", str(dev_pki.keyring), "--offline")
    assert code == 0 and lines["chain"].startswith("ok"), out


def test_a_root_that_did_not_issue_the_certificate_fails_the_chain(
    signed: bytes, pki: Pki, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(pki.other_root.pem())
    code, lines, out = run(tmp_path, signed, "--trust-root", str(other), "--offline")
    assert code == 1, out
    assert lines["chain"].startswith("FAILED: chain: no path"), out
    assert lines["signature"].startswith("ok"), out


def test_one_changed_byte_fails_naming_integrity(
    signed: bytes, root_pem: Path, tmp_path: Path
) -> None:
    at = signed.index(b"motcua-documents")  # the Creator, inside the signed range
    tampered = bytearray(signed)
    tampered[at] = ord("M")
    code, lines, out = run(tmp_path, bytes(tampered), "--trust-root", str(root_pem), "--offline")
    assert code == 1, out
    assert lines["signature"].startswith("FAILED: integrity:"), out
    assert out.rstrip().splitlines()[-1].startswith("FAILED: signature")


def test_an_incremental_update_fails_naming_coverage(
    signed: bytes, root_pem: Path, tmp_path: Path
) -> None:
    writer = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    info = writer.trailer["/Info"].get_object()
    info[NameObject("/Author")] = TextStringObject("Người khác")
    writer.update_container(info)
    buf = io.BytesIO()
    writer.write(buf)
    code, lines, out = run(tmp_path, buf.getvalue(), "--trust-root", str(root_pem), "--offline")
    assert code == 1, out
    assert lines["signature"].startswith("FAILED: coverage:"), out


def test_another_agencys_certificate_fails_naming_agency(
    dev_pki: DevPki, root_pem: Path, tmp_path: Path
) -> None:
    other = sign(paper(), keyring.load(dev_pki.keyring).key_for("SXD"))
    code, lines, out = run(
        tmp_path, other, "--trust-root", str(root_pem), "--agency", AGENCY, "--offline"
    )
    assert code == 1, out
    assert lines["chain"] == "FAILED: agency: the certificate is SXD's, the form is STP's", out
    assert lines["signature"].startswith("ok"), out


def test_an_expired_certificate_fails_naming_chain_and_expired(
    pki: Pki, root_pem: Path, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    expired = make_leaf(
        pki.root,
        "Văn phòng Sở Tư pháp (cũ)",
        agency_code=AGENCY,
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=35),
    )
    data = sign(paper(), pki.p12(expired, "expired-stp"))
    code, lines, out = run(
        tmp_path, data, "--trust-root", str(root_pem), "--agency", AGENCY, "--offline"
    )
    assert code == 1, out
    assert lines["chain"].startswith("FAILED: chain:") and "expired" in lines["chain"], out


def test_b_t_passes_and_require_timestamp_refuses_b_b(
    stp_key: Pkcs11Key | Pkcs12Key, signed: bytes, tsa: LocalTsa, root_pem: Path, tmp_path: Path
) -> None:
    stamped = sign(paper(), stp_key, tsa_url=tsa.url)
    code, lines, out = run(
        tmp_path, stamped, "--trust-root", str(root_pem), "--require-timestamp", "--offline"
    )
    assert code == 0, out
    assert lines["timestamp"].startswith("ok B-T, RFC 3161 token of"), out
    assert lines["signature"].startswith("ok PAdES B-T"), out
    code, lines, out = run(
        tmp_path, signed, "--trust-root", str(root_pem), "--require-timestamp", "--offline"
    )
    assert code == 1, out
    assert lines["timestamp"].startswith("FAILED: no RFC 3161 timestamp (PAdES B-B)"), out


def test_an_unsigned_paper_fails_every_paper_check(root_pem: Path, tmp_path: Path) -> None:
    code, lines, out = run(tmp_path, paper(), "--trust-root", str(root_pem), "--offline")
    assert code == 1, out
    assert lines["signature"] == "FAILED: signature: expected one agency signature, found 0"
    assert lines["chain"].startswith("FAILED: not checked")


@pytest.mark.parametrize(
    "args",
    [
        ("missing.pdf", "--trust-root", "ROOT"),  # an unreadable file
        ("FILE",),  # no trust root
        ("FILE", "--trust-root", "FILE"),  # a trust root that is no certificate
        ("FILE", "--trust-root", "ROOT", "--audit", "127.0.0.1:9"),  # no token
        ("FILE", "--trust-root", "ROOT", "--audit-key", "ROOT"),  # not an Ed25519 key
    ],
)
def test_unusable_input_exits_2(
    args: tuple[str, ...],
    signed: bytes,
    root_pem: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MOTCUA_TOKEN", raising=False)
    file = tmp_path / "paper.pdf"
    file.write_bytes(signed)
    given = [
        str(file) if a == "FILE" else str(root_pem) if a == "ROOT" else a
        for a in args
        if a != "missing.pdf"
    ]
    if args[0] == "missing.pdf":
        given.insert(0, str(tmp_path / "missing.pdf"))
    result = runner.invoke(app, ["document", "verify", *given])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
