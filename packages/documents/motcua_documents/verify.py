"""Check a signed form offline: integrity, coverage, the chain, the agency, the timestamp.

``verify`` never raises on a bad document: it returns a report whose ``failures`` name each
check that failed, so a citizen, a court or an agency sees why a paper is refused.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

# RFC 9336 id-kp-documentSigning; emailProtection is accepted too, because poppler's pdfsig
# (NSS) checks signing certificates for the email-signer usage.
DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"
SIGNER_USAGE = KeyUsageConstraints(
    key_usage={"digital_signature", "non_repudiation"},
    match_all_key_usages=True,
    extd_key_usage={DOCUMENT_SIGNING, "email_protection"},
)


@dataclass(frozen=True)
class Report:
    """What was found; ``ok`` only when every check passed."""

    failures: tuple[str, ...]
    signer: str = ""
    agency_code: str = ""
    level: str = ""  # "B-B" or "B-T"
    timestamp: datetime | None = None
    signed_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failures


def _agency_code(cert: x509.Certificate) -> str:
    for rdn in cert.subject.chosen:
        for attr in rdn:
            if attr["type"].dotted == "2.5.4.97":  # organizationIdentifier
                return str(attr["value"].native)
    return ""


def verify(
    pdf: bytes,
    trust_roots: Sequence[x509.Certificate],
    *,
    agency_code: str | None = None,
    at: datetime | None = None,
) -> Report:
    """Verify the one agency signature of ``pdf`` against ``trust_roots``.

    ``agency_code``, when given, is the agency the form claims to come from: the signing
    certificate must carry it (organizationIdentifier), so another agency's valid
    certificate under the same root is refused too. ``at`` fixes the validation time.
    """
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures = reader.embedded_regular_signatures
    except (PdfError, ValueError, KeyError) as exc:
        return Report(failures=(f"document: not a readable PDF ({exc})",))
    if len(signatures) != 1:
        return Report(
            failures=(f"signature: expected one agency signature, found {len(signatures)}",)
        )
    embedded = signatures[0]

    def context() -> ValidationContext:
        return ValidationContext(
            trust_roots=list(trust_roots),
            allow_fetching=False,
            revocation_mode="soft-fail",
            moment=at,
            best_signature_time=at,
        )

    failures: list[str] = []
    try:
        status = validate_pdf_signature(
            embedded,
            signer_validation_context=context(),
            ts_validation_context=context(),
            key_usage_settings=SIGNER_USAGE,
        )
    except Exception as exc:  # a malformed CMS blob: pyHanko raises many kinds
        return Report(failures=(f"signature: cannot be read ({exc!r})",))
    cert = status.signing_cert
    signer = cert.subject.human_friendly
    code = _agency_code(cert)
    if not status.intact:
        failures.append("integrity: the signed bytes were changed (digest mismatch)")
    if not status.valid:
        failures.append("signature: the signature value does not verify with the certificate")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        ranges = [int(v) for v in embedded.byte_range]
        extra = len(pdf) - (ranges[2] + ranges[3])
        failures.append(
            f"coverage: {extra} bytes were appended after signing (an incremental update); "
            f"the signature covers only part of the file"
        )
    if not status.trusted:
        problem = status.trust_problem_indic
        indic = str(getattr(problem, "name", problem)) if problem else "UNKNOWN"
        validity = cert["tbs_certificate"]["validity"]
        reason = {
            "NO_CERTIFICATE_CHAIN_FOUND": "no path from the signing certificate to a trusted root",
            "OUT_OF_BOUNDS_NO_POE": "the signing certificate is expired or not yet valid "
            f"(valid {validity['not_before'].native:%Y-%m-%d} to "
            f"{validity['not_after'].native:%Y-%m-%d})",
            "OUT_OF_BOUNDS_NOT_REVOKED": "the signing certificate is expired "
            f"(valid to {validity['not_after'].native:%Y-%m-%d})",
            "EXPIRED": "the signing certificate is expired "
            f"(valid to {validity['not_after'].native:%Y-%m-%d})",
            "SIG_CONSTRAINTS_FAILURE": "the certificate's key usage does not allow signing forms",
            "REVOKED": "the signing certificate is revoked",
        }.get(indic, "the signing certificate is not trusted")
        failures.append(f"chain: {reason} ({indic}); signer {signer}")
    if agency_code is not None and code != agency_code:
        failures.append(
            f"agency: the certificate is {code or 'no agency'}'s, the form is {agency_code}'s"
        )
    ts = status.timestamp_validity
    if ts is not None and not (ts.intact and ts.valid and ts.trusted):
        failures.append(
            "timestamp: the RFC 3161 token does not verify or its TSA is not trusted "
            f"(intact={ts.intact}, valid={ts.valid}, trusted={ts.trusted})"
        )
    return Report(
        failures=tuple(failures),
        signer=signer,
        agency_code=code,
        level="B-T" if ts is not None else "B-B",
        timestamp=ts.timestamp if ts is not None else None,
        signed_at=status.signer_reported_dt,
    )
