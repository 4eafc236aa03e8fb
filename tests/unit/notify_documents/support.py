"""Shared by the notify-documents tests: a signed PDF, the dossier service's GetDocument stand-in
(:class:`FakeDossierDocuments`, a real gRPC server on 127.0.0.1) and document_issued events.

The fake stands in for the dossier service only because that service's document support is
built at the same time; it speaks the real contract (protos/motcua/dossier/v1/dossier.proto):
the first message is the IssuedDocument, then chunks, and it checks the bearer token.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from motcua import topics as t
from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc, events_pb2
from motcua_documents import keyring, render, signing
from motcua_documents.devpki import DevPki
from motcua_documents.model import FormContent
from motcua_documents.samples import SAMPLES
from motcua_kit.envelope import Event

SERVICE_TOKEN = "notify-service-account-token-0123456789"
CHUNK = 16 * 1024


def signed_receipt(dev_pki: DevPki, dossier_code: str = "STP-261201-0001") -> bytes:
    """A real receipt slip (Mẫu số 01), signed PAdES with the STP agency's key on the token."""
    content = FormContent.build({**SAMPLES["receipt"], "dossier_code": dossier_code})
    pdf = render.render(content).pdf
    return signing.sign(pdf, keyring.load(dev_pki.keyring).key_for("STP"))


@dataclass
class Stored:
    document: dossier_pb2.IssuedDocument
    content: bytes
    serve: bytes | None = None  # other bytes to serve than the stored ones (a corrupt store)


@dataclass
class FakeDossierDocuments(dossier_pb2_grpc.DossierServiceServicer):
    """DossierService.GetDocument on 127.0.0.1, for notify's tests (only that call).

    ``fail_next`` makes the next calls fail with these codes, one each; every call records the
    authorization it came with.
    """

    token: str = SERVICE_TOKEN
    documents: dict[str, Stored] = field(default_factory=dict)
    fail_next: list[grpc.StatusCode] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (document id, authorization)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    _server: Any = None

    def add(
        self, dossier_code: str, kind: int, content: bytes, **over: Any
    ) -> dossier_pb2.IssuedDocument:
        doc = dossier_pb2.IssuedDocument(
            id=uuid.uuid4().hex,
            dossier_code=dossier_code,
            kind=kind,  # type: ignore[arg-type]
            media_type="application/pdf",
            size_bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            form_number="Mẫu số 01" if kind == dossier_pb2.DOCUMENT_KIND_RECEIPT else "",
            signature_level="B-B",
            signer="CN=Sở Tư pháp",
            filename=f"{dossier_code}-{'receipt' if kind == 1 else 'result'}.pdf",
            cause="receive" if kind == 1 else "return_result",
        )
        doc.issued_at.GetCurrentTime()
        for k, v in over.items():
            setattr(doc, k, v)
        with self.lock:
            self.documents[doc.id] = Stored(doc, content)
        return doc

    def GetDocument(
        self, request: dossier_pb2.GetDocumentRequest, context: grpc.ServicerContext
    ) -> Iterator[dossier_pb2.GetDocumentResponse]:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        with self.lock:
            self.calls.append((request.document_id, str(auth)))
            failure = self.fail_next.pop(0) if self.fail_next else None
            stored = self.documents.get(request.document_id)
        if auth != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad or missing bearer token")
        if failure is not None:
            context.abort(failure, f"told to fail with {failure.name}")
        if stored is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"document {request.document_id} not found")
        assert stored is not None
        yield dossier_pb2.GetDocumentResponse(document=stored.document)
        data = stored.content if stored.serve is None else stored.serve
        for i in range(0, len(data), CHUNK):
            yield dossier_pb2.GetDocumentResponse(chunk=data[i : i + CHUNK])

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeDossierDocuments:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        dossier_pb2_grpc.add_DossierServiceServicer_to_server(self, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def document_calls(self, document_id: str) -> list[str]:
        with self.lock:
            return [auth for d, auth in self.calls if d == document_id]


def document_issued(d: dossier_pb2.Dossier, document: dossier_pb2.IssuedDocument) -> Event:
    """The dossier service's event: the dossier and the document's metadata, never bytes."""
    return Event.new(
        source="/motcua/dossier",
        type=t.DOSSIER_DOCUMENT_ISSUED,
        subject=d.code,
        message=events_pb2.DocumentIssued(dossier=d, document=document),
    )
