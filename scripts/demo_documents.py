"""The demo's signed papers: a dev PKI with a SoftHSM2 token, a local TSA, the result upload,
and the checks a citizen's bank would run (poppler's pdfsig and ``motcua document verify``).

The PKI is made again on every run in .state/pki (its keys prove nothing: dev only).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_documents import devpki
from motcua_documents.local_tsa import LocalTsa

CHUNK = 256 * 1024
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
ROOT = Path(__file__).resolve().parents[1]
AGENCIES = ROOT / "services/dossier/motcua_dossier/data/agencies.yaml"


def catalogue_agencies() -> dict[str, str]:
    """Every agency of the shipped catalogue (code → name): each gets a signing key."""
    data = yaml.safe_load(AGENCIES.read_text(encoding="utf-8"))
    return {a["code"]: a["name"] for a in data["agencies"]}


def make_pki(state: Path, agencies: dict[str, str]) -> devpki.DevPki:
    """A fresh dev PKI in ``state/pki``: a root, a TSA, a key per agency in a SoftHSM2 token."""
    base = state / "pki"
    shutil.rmtree(base, ignore_errors=True)
    return devpki.create(base, agencies)


def local_tsa(pki: devpki.DevPki) -> LocalTsa:
    """The demo's RFC 3161 timestamp authority on 127.0.0.1 (so the papers are PAdES B-T)."""
    return LocalTsa(pki.tsa.asn1, pki.tsa.asn1_key, chain=(pki.root.asn1,))


def result_pdf(dossier_code: str, title: str, lines: Sequence[str]) -> bytes:
    """The procedure's result as the agency's records system would hand it over (unsigned)."""
    if "DejaVu" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVu", FONT))
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, invariant=True)
    page.setTitle(f"{title} — {dossier_code}")
    page.setFont("DejaVu", 14)
    page.drawCentredString(A4[0] / 2, A4[1] - 80, title)
    page.setFont("DejaVu", 11)
    for n, line in enumerate([f"Mã hồ sơ: {dossier_code}", *lines]):
        page.drawString(60, A4[1] - 130 - 18 * n, line)
    page.showPage()
    page.save()
    return out.getvalue()


def _upload(
    header: dossier_pb2.ReturnResultHeader, data: bytes
) -> Iterator[dossier_pb2.ReturnResultRequest]:
    yield dossier_pb2.ReturnResultRequest(header=header)
    for start in range(0, len(data), CHUNK):
        yield dossier_pb2.ReturnResultRequest(chunk=data[start : start + CHUNK])


def return_result(
    stub: dossier_pb2_grpc.DossierServiceStub,
    dossier: dossier_pb2.Dossier,
    data: bytes,
    metadata: list[tuple[str, str]],
) -> dossier_pb2.ReturnResultResponse:
    """The officer's "return result" with the result's bytes, over the client stream."""
    header = dossier_pb2.ReturnResultHeader(
        code=dossier.code,
        expected_version=dossier.version,
        filename=f"{dossier.code}-ket-qua.pdf",
        media_type="application/pdf",
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    response: dossier_pb2.ReturnResultResponse = stub.ReturnResult(
        _upload(header, data), metadata=metadata, timeout=60
    )
    return response


def fetch(
    stub: dossier_pb2_grpc.DossierServiceStub, document_id: str, metadata: list[tuple[str, str]]
) -> tuple[dossier_pb2.IssuedDocument, bytes]:
    """One issued document over the server stream: its metadata, then its bytes."""
    meta = dossier_pb2.IssuedDocument()
    parts: list[bytes] = []
    for message in stub.GetDocument(
        dossier_pb2.GetDocumentRequest(document_id=document_id), metadata=metadata, timeout=60
    ):
        if message.HasField("document"):
            meta = message.document
        else:
            parts.append(message.chunk)
    data = b"".join(parts)
    if hashlib.sha256(data).hexdigest() != meta.sha256:
        raise RuntimeError(f"document {document_id}: the bytes do not match their SHA-256")
    return meta, data


def pdfsig(path: Path, nssdir: str) -> str:
    """poppler's verdict on the file's signature, one line."""
    done = subprocess.run(
        ["pdfsig", "-nssdir", nssdir, str(path)], capture_output=True, text=True, timeout=60
    )
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines()]
    wanted = [
        line for line in lines if line.startswith(("- Signature Validation", "- Certificate"))
    ]
    return "; ".join(wanted) or "\n".join(lines)


class Papers:
    """The citizen's view of a dossier's signed papers: listed, fetched and saved."""

    def __init__(
        self,
        stub: dossier_pb2_grpc.DossierServiceStub,
        metadata: list[tuple[str, str]],
        folder: Path,
    ) -> None:
        self.stub, self.metadata, self.folder = stub, metadata, folder

    def save(self, code: str, kind: int) -> tuple[dossier_pb2.IssuedDocument, Path]:
        """The dossier's latest paper of ``kind``, written to ``folder`` under its file name."""
        listed = self.stub.ListDocuments(
            dossier_pb2.ListDocumentsRequest(code=code), metadata=self.metadata, timeout=30
        ).documents
        chosen = [doc for doc in listed if doc.kind == kind]
        if not chosen:
            raise SystemExit(f"{code}: no {dossier_pb2.DocumentKind.Name(kind)} was issued")
        meta, data = fetch(self.stub, chosen[-1].id, self.metadata)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / meta.filename
        path.write_bytes(data)
        return meta, path


def verify(path: Path, pki: devpki.DevPki, audit: str, token: str, audit_key: Path) -> None:
    """``motcua document verify`` as anyone would run it: roots and the audit key pinned."""
    private = serialization.load_pem_private_key(audit_key.read_bytes(), password=None)
    public = audit_key.with_name("audit-public-key.pem")
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "motcua_ops",
            "document",
            "verify",
            str(path),
            "--trust-root",
            str(pki.root_pem),
            "--audit",
            audit,
            "--audit-key",
            str(public),
            "--require-timestamp",
        ],
        env={**os.environ, "MOTCUA_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    for line in done.stdout.splitlines():
        print(f"    motcua document verify: {line}")
    if done.returncode != 0:
        raise SystemExit(f"{path.name} does not verify: {done.stderr.strip()}")
