"""Signing and verification: every form signed in a real SoftHSM2 token (PKCS#11) or from a
PKCS#12 file, B-B and B-T (a real RFC 3161 TSA on loopback), checked by our verify(), by
pyHanko's validator inside it, and independently by poppler's pdfsig; then the refusals.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyhanko.pdf_utils.generic import NameObject, TextStringObject
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from unit.documents.support import KINDS, OTHER_AGENCY, Pki, content_data, pdfsig, pdftotext

from motcua_documents.local_tsa import LocalTsa
from motcua_documents.model import FormContent
from motcua_documents.render import render
from motcua_documents.signing import Pkcs11Key, Pkcs12Key, SigningError, sign
from motcua_documents.verify import verify

CODE = "so-tu-phap-qng"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_every_form_signed_in_the_token_verifies_everywhere(
    kind: str, pki: Pki, token: Pkcs11Key, tmp_path: Path
) -> None:
    rendering = render(FormContent.build(content_data(kind)))
    signed = sign(rendering.pdf, token, reason="Cấp giấy tờ một cửa")
    assert signed.startswith(rendering.pdf)  # an incremental update over the rendering
    report = verify(signed, [pki.root.asn1], agency_code=CODE)
    assert report.failures == ()
    assert (report.level, report.agency_code) == ("B-B", CODE)
    path = _write(tmp_path, kind, signed)
    out = pdfsig(path, pki.nssdir)
    assert "Signature Validation: Signature is Valid." in out, out
    assert "Certificate Validation: Certificate is Trusted." in out, out
    assert "Total document signed" in out and "Not total document signed" not in out, out
    assert "ETSI.CAdES.detached" in out, out
    # the signature changes nothing of what a reader extracts
    assert pdftotext(path).rstrip("\f\n") == rendering.text


def test_b_t_with_the_local_tsa_over_http(
    pki: Pki, token: Pkcs11Key, tsa: LocalTsa, tmp_path: Path
) -> None:
    before = tsa.requests
    signed = sign(render(FormContent.build(content_data("receipt"))).pdf, token, tsa_url=tsa.url)
    assert tsa.requests > before  # pyHanko also asks once to size the signature
    report = verify(signed, [pki.root.asn1], agency_code=CODE)
    assert report.failures == ()
    assert report.level == "B-T" and report.timestamp is not None
    out = pdfsig(_write(tmp_path, "bt", signed), pki.nssdir)
    assert "Signature is Valid." in out and "Certificate is Trusted." in out, out


def test_a_tsa_of_another_root_is_refused(pki: Pki, token: Pkcs11Key) -> None:
    with LocalTsa(pki.foreign.asn1, pki.foreign.asn1_key) as stranger:
        signed = sign(
            render(FormContent.build(content_data("receipt"))).pdf, token, tsa_url=stranger.url
        )
    report = verify(signed, [pki.root.asn1], agency_code=CODE)
    assert [f.split(":")[0] for f in report.failures] == ["timestamp"], report.failures


def test_an_unreachable_tsa_fails_signing_clearly(token: Pkcs11Key) -> None:
    with pytest.raises(SigningError, match="timestamp authority"):
        sign(
            render(FormContent.build(content_data("receipt"))).pdf,
            token,
            tsa_url="http://127.0.0.1:9/tsa",
        )


def test_pkcs12_small_install(pki: Pki, tmp_path: Path) -> None:
    signed = sign(
        render(FormContent.build(content_data("refusal"))).pdf, pki.p12(pki.agency, "agency")
    )
    assert verify(signed, [pki.root.asn1], agency_code=CODE).failures == ()
    out = pdfsig(_write(tmp_path, "p12", signed), pki.nssdir)
    assert "Signature is Valid." in out and "Certificate is Trusted." in out, out


def test_wrong_pin_and_wrong_passphrase_fail_signing(token: Pkcs11Key, pki: Pki) -> None:
    pdf = render(FormContent.build(content_data("receipt"))).pdf
    with pytest.raises(SigningError, match="PKCS#11 token"):
        sign(pdf, Pkcs11Key(token.module, token.token_label, token.key_label, "000000"))
    with pytest.raises(SigningError, match="PKCS#12"):
        sign(pdf, Pkcs12Key(pki.p12(pki.agency, "agency").path, b"wrong"))


# --- refusals: each names what failed --------------------------------------------------------


@pytest.fixture(scope="module")
def signed_receipt(token: Pkcs11Key) -> bytes:
    return sign(render(FormContent.build(content_data("receipt"))).pdf, token)


def test_one_changed_byte_is_refused(signed_receipt: bytes, pki: Pki, tmp_path: Path) -> None:
    at = signed_receipt.index(b"motcua-documents")  # the Creator, inside the signed range
    tampered = bytearray(signed_receipt)
    tampered[at] = ord("M")
    report = verify(bytes(tampered), [pki.root.asn1], agency_code=CODE)
    assert any(f.startswith("integrity:") for f in report.failures), report.failures
    out = pdfsig(_write(tmp_path, "byte", bytes(tampered)), pki.nssdir)
    assert "Signature is Invalid" in out or "Digest Mismatch" in out, out


def test_an_incremental_update_after_signing_is_refused(
    signed_receipt: bytes, pki: Pki, tmp_path: Path
) -> None:
    import io

    writer = IncrementalPdfFileWriter(io.BytesIO(signed_receipt), strict=False)
    info = writer.trailer["/Info"].get_object()
    info[NameObject("/Author")] = TextStringObject("Người khác")
    writer.update_container(info)
    out_buf = io.BytesIO()
    writer.write(out_buf)
    updated = out_buf.getvalue()
    assert updated.startswith(signed_receipt) and len(updated) > len(signed_receipt)
    report = verify(updated, [pki.root.asn1], agency_code=CODE)
    assert any(f.startswith("coverage:") for f in report.failures), report.failures
    out = pdfsig(_write(tmp_path, "update", updated), pki.nssdir)
    assert "Not total document signed" in out, out


def test_another_agencys_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    pdf = render(FormContent.build(content_data("receipt"))).pdf
    signed = sign(pdf, pki.p12(pki.other_agency, "other-agency"))
    report = verify(signed, [pki.root.asn1], agency_code=CODE)
    assert report.failures == (
        f"agency: the certificate is {OTHER_AGENCY['code']}'s, the form is {CODE}'s",
    )
    # pdfsig knows nothing of agencies: to it this is a valid signature by a trusted signer
    out = pdfsig(_write(tmp_path, "other-agency", signed), pki.nssdir)
    assert "Signature is Valid." in out


def test_a_certificate_of_another_root_is_refused(pki: Pki, tmp_path: Path) -> None:
    signed = sign(
        render(FormContent.build(content_data("receipt"))).pdf, pki.p12(pki.foreign, "foreign")
    )
    report = verify(signed, [pki.root.asn1], agency_code=CODE)
    assert len(report.failures) == 1 and report.failures[0].startswith(
        "chain: no path from the signing certificate to a trusted root"
    ), report.failures
    out = pdfsig(_write(tmp_path, "foreign", signed), pki.nssdir)
    assert "Certificate issuer isn't Trusted" in out, out


def test_an_expired_signing_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    signed = sign(
        render(FormContent.build(content_data("receipt"))).pdf, pki.p12(pki.expired, "expired")
    )
    report = verify(signed, [pki.root.asn1], agency_code=CODE)
    assert len(report.failures) == 1 and "expired" in report.failures[0], report.failures
    assert report.failures[0].startswith("chain:")
    out = pdfsig(_write(tmp_path, "expired", signed), pki.nssdir)
    assert "Certificate has Expired" in out, out


def test_garbage_and_unsigned_are_refused(pki: Pki) -> None:
    assert verify(b"not a pdf", [pki.root.asn1]).failures[0].startswith("document:")
    unsigned = render(FormContent.build(content_data("receipt"))).pdf
    assert verify(unsigned, [pki.root.asn1]).failures == (
        "signature: expected one agency signature, found 0",
    )
