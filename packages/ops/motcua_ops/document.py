"""``motcua document verify FILE``: is this paper what the agency issued? (ADR 0087)

Four checks, one line each, ``ok ...`` or ``FAILED: <reason>``:

- ``signature``: the one PAdES signature is intact, verifies, and covers the whole file;
- ``chain``: the signing certificate chains to a pinned trust root (and, with ``--agency``,
  is that agency's);
- ``timestamp``: the RFC 3161 token verifies under a trust root (B-T), or there is none (B-B,
  refused with ``--require-timestamp``);
- ``audit``: the audit log recorded this file's exact SHA-256 when it was issued: the entry
  (``GetDocumentProof``) is a document_issued entry naming this hash and the paper's dossier,
  its leaf hash is SHA-256(0x00 || canonical entry), its RFC 9162 inclusion proof leads to
  the root of a tree head, and that head is signed by the audit log's Ed25519 key.

What the verifier must pin itself (anything fetched from the service it checks proves
nothing): the trust roots (``--trust-root`` or a keyring's ``trust_roots``), and the audit
key (``--audit-key``); without it the key is fetched from the service and the output says
it was not pinned. Exit 0 only when every check passed; 1 when one failed (each is named);
2 for unusable input (an unreadable file, no trust root, no token).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer
import yaml
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pyhanko.pdf_utils.reader import PdfFileReader

from motcua import topics
from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua_audit.domain.documents import parse_document_resource
from motcua_audit.domain.entry import Entry, EntryFormatError
from motcua_audit.domain.merkle import leaf_hash, verify_inclusion
from motcua_audit.domain.tree_head import (
    SignedTreeHead,
    TreeHead,
    key_id_for,
    load_public_key_pem,
    verify_tree_head,
)
from motcua_documents.verify import Report, verify

app = typer.Typer(help="Check official papers: signature, chain, timestamp, audit log.")

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
CHECKS = ("signature", "chain", "timestamp", "audit")
_SIGNATURE_KINDS = ("document", "signature", "integrity", "coverage")
_CHAIN_KINDS = ("chain", "agency")
_DOSSIER_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.]*-\d{6}-\d{4,}")


class Unusable(Exception):
    """The input cannot be checked at all (exit 2)."""


@dataclass(frozen=True)
class Outcome:
    """One check's verdict: ``ok`` and what was found, or why it failed."""

    check: str
    ok: bool
    detail: str
    counts: bool = True  # False: "not checked" that --offline allows

    def line(self) -> str:
        verdict = f"ok {self.detail}" if self.ok else f"FAILED: {self.detail}"
        return f"{self.check}: {verdict}"


# -- inputs ------------------------------------------------------------------------------------
def _certificates(data: bytes, where: str) -> list[asn1_x509.Certificate]:
    try:
        if pem.detect(data):
            return [asn1_x509.Certificate.load(der) for _, _, der in pem.unarmor(data, True)]
        return [asn1_x509.Certificate.load(data)]
    except ValueError as exc:
        raise Unusable(f"{where}: not a certificate ({exc})") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Unusable(f"{what} {path}: {exc.strerror or exc}") from None


def load_trust_roots(
    trust_roots: Sequence[Path], keyring: Path | None
) -> list[asn1_x509.Certificate]:
    """The pinned roots: each ``--trust-root`` file, plus a keyring's ``trust_roots`` (paths
    relative to the keyring). Only that list is read from a keyring: a verifier holds no
    signing key, PIN or token."""
    roots: list[asn1_x509.Certificate] = []
    for path in trust_roots:
        roots += _certificates(_read(path, "--trust-root"), f"--trust-root {path}")
    if keyring is not None:
        try:
            data = yaml.safe_load(_read(keyring, "--keyring"))
        except yaml.YAMLError as exc:
            raise Unusable(f"--keyring {keyring}: {exc}") from None
        listed = data.get("trust_roots") if isinstance(data, dict) else None
        if not isinstance(listed, list) or not listed:
            raise Unusable(f"--keyring {keyring}: trust_roots: a list of certificate files")
        for i, item in enumerate(listed):
            path = Path(str(item))
            path = path if path.is_absolute() else keyring.parent / path
            where = f"--keyring {keyring}: trust_roots[{i}]"
            roots += _certificates(_read(path, where), where)
    if not roots:
        raise Unusable("a trust root is required (--trust-root PEM, or --keyring with trust_roots)")
    return roots


def claimed_dossier(pdf: bytes, filename: str) -> str | None:
    """The dossier the paper names: its PDF Subject ("<kind> <code>", written by the renderer
    inside the signed bytes), else a code at the start of the file name; None if neither."""
    try:
        info = PdfFileReader(io.BytesIO(pdf), strict=False).trailer_view.get("/Info")
        subject = str(info.get_object().get("/Subject", "")) if info is not None else ""
    except Exception:  # an unreadable PDF: the signature check says so
        subject = ""
    for text in (subject.rsplit(" ", 1)[-1], filename):
        found = _DOSSIER_CODE.match(text)
        if found:
            return found.group(0)
    return None


# -- the offline checks ------------------------------------------------------------------------
def paper_checks(report: Report, require_timestamp: bool) -> list[Outcome]:
    """signature, chain and timestamp from ``motcua_documents.verify``'s report."""

    def of(kinds: Sequence[str]) -> list[str]:
        return [f for f in report.failures if f.split(":", 1)[0] in kinds]

    unreadable = any(f.split(":", 1)[0] in ("document", "signature") for f in report.failures)
    bad = of(_SIGNATURE_KINDS)
    out = [
        Outcome("signature", False, "; ".join(bad))
        if bad
        else Outcome(
            "signature",
            True,
            f"PAdES {report.level}, intact, covers the whole file"
            + (f", signed {report.signed_at:%Y-%m-%d %H:%M:%S %Z}" if report.signed_at else ""),
        )
    ]
    bad = of(_CHAIN_KINDS)
    if bad:
        out.append(Outcome("chain", False, "; ".join(bad)))
    elif unreadable and not report.signer:
        out.append(Outcome("chain", False, "not checked: the signature could not be read"))
    else:
        agency = f", agency {report.agency_code}" if report.agency_code else ""
        out.append(Outcome("chain", True, f"{report.signer}{agency} → a pinned trust root"))
    bad = of(("timestamp",))
    if bad:
        out.append(Outcome("timestamp", False, "; ".join(bad)))
    elif unreadable and not report.signer:
        out.append(Outcome("timestamp", False, "not checked: the signature could not be read"))
    elif report.level == "B-T" and report.timestamp is not None:
        out.append(
            Outcome(
                "timestamp", True, f"B-T, RFC 3161 token of {report.timestamp:%Y-%m-%d %H:%M:%S %Z}"
            )
        )
    elif require_timestamp:
        out.append(
            Outcome(
                "timestamp",
                False,
                "no RFC 3161 timestamp (PAdES B-B) and --require-timestamp asks for B-T",
            )
        )
    else:
        out.append(Outcome("timestamp", True, "none (B-B: the signing time is the signer's claim)"))
    return out


# -- the audit check ---------------------------------------------------------------------------
def _signed_head(head: audit_pb2.SignedTreeHead) -> SignedTreeHead:
    return SignedTreeHead(
        TreeHead(head.tree_size, head.root_hash, head.timestamp_ms, head.key_id), head.signature
    )


def check_entry(
    got: audit_pb2.GetDocumentProofResponse,
    sha256_hex: str,
    dossier: str | None,
    keys: dict[str, Ed25519PublicKey],
    pinned: bool,
) -> Outcome:
    """Everything the answer claims, checked here: nothing the service says is taken."""
    entry = got.entry
    canonical = bytes(entry.canonical_entry)
    try:
        decoded = Entry.decode(canonical)
    except EntryFormatError as exc:
        return Outcome("audit", False, f"the entry is not a canonical audit entry ({exc})")
    if bytes(entry.leaf_hash) != leaf_hash(canonical):
        return Outcome("audit", False, "the leaf hash is not SHA-256(0x00 || canonical entry)")
    parsed = parse_document_resource(decoded.resource)
    if parsed is None or parsed[1] != sha256_hex:
        return Outcome(
            "audit",
            False,
            f"the entry's resource {decoded.resource!r} does not name SHA-256 {sha256_hex}",
        )
    if decoded.event_type != topics.DOSSIER_DOCUMENT_ISSUED:
        return Outcome(
            "audit", False, f"the entry records {decoded.event_type!r}, not a document issue"
        )
    if dossier is not None and decoded.dossier_code != dossier:
        return Outcome(
            "audit",
            False,
            f"the entry is dossier {decoded.dossier_code}'s, the paper names {dossier}",
        )
    head = got.tree_head
    proof = entry.inclusion_proof
    if proof.leaf_index != entry.index or proof.tree_size != head.tree_size:
        return Outcome(
            "audit",
            False,
            f"the inclusion proof is for leaf {proof.leaf_index} of {proof.tree_size}, "
            f"not entry {entry.index} of the tree head's {head.tree_size}",
        )
    if not verify_inclusion(
        leaf_hash(canonical), entry.index, head.tree_size, list(proof.audit_path), head.root_hash
    ):
        return Outcome(
            "audit",
            False,
            f"the inclusion proof of entry {entry.index} does not lead to the tree head's root "
            f"(size {head.tree_size})",
        )
    try:
        signed = _signed_head(head)
    except (ValueError, TypeError) as exc:
        return Outcome("audit", False, f"the tree head is malformed ({exc})")
    if not verify_tree_head(signed, keys):
        which = "the pinned audit key" if pinned else "the audit service's published keys"
        return Outcome(
            "audit",
            False,
            f"the tree head's signature (size {head.tree_size}, key {head.key_id or 'none'}) "
            f"does not verify with {which}",
        )
    document_id = parsed[0]
    where = f"dossier {decoded.dossier_code}" + ("" if dossier else " (the paper names none)")
    key = (
        f"pinned key {head.key_id}"
        if pinned
        else f"key {head.key_id} NOT pinned (fetched from the audit service; pin it with "
        "--audit-key)"
    )
    return Outcome(
        "audit",
        True,
        f"entry {entry.index}: document {document_id} of {where}, recorded "
        f"{decoded.recorded_at:%Y-%m-%d %H:%M:%S %Z}, included in the tree of "
        f"{head.tree_size} signed with {key}",
    )


def audit_check(
    pdf: bytes,
    dossier: str | None,
    target: str,
    token: str,
    pinned_key: Ed25519PublicKey | None,
) -> Outcome:
    """SHA-256 of the file → GetDocumentProof → :func:`check_entry`."""
    sha256_hex = hashlib.sha256(pdf).hexdigest()
    metadata = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(target) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        try:
            if pinned_key is not None:
                keys = {key_id_for(pinned_key): pinned_key}
            else:
                published = stub.GetPublicKeys(
                    audit_pb2.GetPublicKeysRequest(), metadata=metadata, timeout=30
                )
                keys = {k.key_id: Ed25519PublicKey.from_public_bytes(k.raw) for k in published.keys}
            got = stub.GetDocumentProof(
                audit_pb2.GetDocumentProofRequest(sha256=sha256_hex), metadata=metadata, timeout=30
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return Outcome(
                    "audit",
                    False,
                    f"no entry in the audit log records this file (SHA-256 {sha256_hex}): "
                    f"{exc.details()}",
                )
            return Outcome("audit", False, f"{exc.code().name} from {target}: {exc.details()}")
        except ValueError as exc:  # a published key that is not 32 bytes
            return Outcome("audit", False, f"the audit service published a bad key ({exc})")
    return check_entry(got, sha256_hex, dossier, keys, pinned_key is not None)


# -- the command -------------------------------------------------------------------------------
def run(
    file: Path,
    *,
    trust_roots: Sequence[Path],
    keyring: Path | None,
    agency: str | None,
    audit: str | None,
    token: str,
    audit_key: Path | None,
    require_timestamp: bool,
    offline: bool,
) -> tuple[int, list[Outcome]]:
    """Every check of one paper; (exit code, outcomes). Raises Unusable for exit 2."""
    pdf = _read(file, "file")
    roots = load_trust_roots(trust_roots, keyring)
    pinned = None
    if audit_key is not None:
        try:
            pinned = load_public_key_pem(_read(audit_key, "--audit-key"))
        except ValueError as exc:
            raise Unusable(f"--audit-key {audit_key}: not an Ed25519 public key ({exc})") from None
    if audit and not token:
        raise Unusable("a bearer token is required for --audit (--token or MOTCUA_TOKEN)")
    outcomes = paper_checks(verify(pdf, roots, agency_code=agency), require_timestamp)
    if audit:
        outcomes.append(audit_check(pdf, claimed_dossier(pdf, file.name), audit, token, pinned))
    else:
        outcomes.append(
            Outcome(
                "audit",
                False,
                "not checked (no --audit HOST:PORT; --offline accepts that)",
                counts=not offline,
            )
        )
    failed = [o for o in outcomes if not o.ok and o.counts]
    return (EXIT_FAILED if failed else EXIT_OK), outcomes


def _line(outcome: Outcome) -> str:
    if not outcome.ok and not outcome.counts:
        return f"{outcome.check}: {outcome.detail}"
    return outcome.line()


@app.command("verify")
def verify_command(
    file: Annotated[Path, typer.Argument(help="the paper: a signed PDF")],
    trust_root: Annotated[
        list[Path] | None,
        typer.Option("--trust-root", help="a pinned root certificate (PEM or DER); repeatable"),
    ] = None,
    keyring: Annotated[
        Path | None, typer.Option("--keyring", help="a keyring YAML: its trust_roots are pinned")
    ] = None,
    agency: Annotated[
        str | None, typer.Option("--agency", help="the agency code the paper claims to be from")
    ] = None,
    audit: Annotated[
        str | None, typer.Option("--audit", help="the audit service's gRPC HOST:PORT")
    ] = None,
    token: Annotated[
        str, typer.Option("--token", envvar="MOTCUA_TOKEN", help="bearer token (any role)")
    ] = "",
    audit_key: Annotated[
        Path | None,
        typer.Option("--audit-key", help="the audit log's Ed25519 public key (PEM), pinned"),
    ] = None,
    require_timestamp: Annotated[
        bool, typer.Option("--require-timestamp", help="refuse a paper without a B-T timestamp")
    ] = False,
    offline: Annotated[
        bool, typer.Option("--offline", help="no audit check: do not fail for want of it")
    ] = False,
) -> None:
    """Check a paper: signature, chain to a pinned root, timestamp, and its audit entry."""
    try:
        code, outcomes = run(
            file,
            trust_roots=trust_root or [],
            keyring=keyring,
            agency=agency,
            audit=audit,
            token=token,
            audit_key=audit_key,
            require_timestamp=require_timestamp,
            offline=offline,
        )
    except Unusable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNUSABLE) from None
    for outcome in outcomes:
        typer.echo(_line(outcome))
    failed = [o.check for o in outcomes if not o.ok and o.counts]
    skipped = [o.check for o in outcomes if not o.ok and not o.counts]
    if failed:
        typer.echo(f"FAILED: {', '.join(failed)}")
    elif skipped:
        typer.echo(f"verified, except {', '.join(skipped)} (not checked)")
    else:
        typer.echo("verified: every check passed")
    raise typer.Exit(code)
