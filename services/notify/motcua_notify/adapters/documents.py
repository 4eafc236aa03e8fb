"""The dossier service's documents, fetched for an email: ``DossierService.GetDocument``.

Server streaming: the first message is the document's metadata, every later one the next
bytes. Notify calls with a service-account bearer token read from a file at each fetch (the
identity provider rotates it), and checks what it got against the event, which is the authority
(:func:`motcua_notify.domain.documents.mismatch`). A failure says whether retrying can help.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_kit.grpc_client import call_metadata, open_channel
from motcua_notify.domain.documents import DocumentRef, mismatch
from motcua_notify.metrics import DOCUMENT_FETCHES

log = logging.getLogger(__name__)

# Worth another attempt later: the service is down or busy, or the token ran out.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "unavailable",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "unavailable",
    grpc.StatusCode.ABORTED: "unavailable",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
}
_PERMANENT = {
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.PERMISSION_DENIED: "permission_denied",
    grpc.StatusCode.INVALID_ARGUMENT: "error",
    grpc.StatusCode.FAILED_PRECONDITION: "error",
}


class DocumentFetchError(Exception):
    """The document could not be had as the event names it; ``permanent`` when retrying
    cannot help (not found, not allowed, other bytes than the event's)."""

    def __init__(self, outcome: str, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.outcome = outcome  # the fetch metric's label
        self.reason = reason
        self.permanent = permanent


class DossierDocuments:
    """A GetDocument client on one channel (opened on first use, closed with the service)."""

    def __init__(
        self,
        target: str,
        token_file: Path,
        *,
        timeout: float,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.target = target
        self.token_file = token_file
        self.timeout = timeout
        self._tls = (ca_file, cert_file, key_file)
        self._channel: grpc.Channel | None = None

    def _stub(self) -> dossier_pb2_grpc.DossierServiceStub:
        if self._channel is None:
            ca, cert, key = self._tls
            self._channel = open_channel(self.target, ca_file=ca, cert_file=cert, key_file=key)
        return dossier_pb2_grpc.DossierServiceStub(self._channel)

    def _token(self) -> str:
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise DocumentFetchError(
                "error",
                f"service token file {self.token_file} unreadable: {exc.strerror or exc}",
                permanent=False,
            ) from exc
        if not token:
            raise DocumentFetchError(
                "error", f"service token file {self.token_file} is empty", permanent=False
            )
        return token

    def fetch(self, ref: DocumentRef) -> bytes:
        """The document's bytes, exactly as the event names them (size and SHA-256)."""
        try:
            data = self._read(ref)
        except DocumentFetchError as exc:
            DOCUMENT_FETCHES.labels(exc.outcome).inc()
            raise
        wrong = mismatch(ref, data)
        if wrong:
            DOCUMENT_FETCHES.labels("mismatch").inc()
            log.error("%s: not sent", wrong, extra={"dossier_code": ref.dossier_code})
            raise DocumentFetchError("mismatch", wrong, permanent=True)
        DOCUMENT_FETCHES.labels("fetched").inc()
        return data

    def _read(self, ref: DocumentRef) -> bytes:
        metadata = call_metadata(self._token())
        request = dossier_pb2.GetDocumentRequest(document_id=ref.id)
        parts: list[bytes] = []
        received = 0
        try:
            stream = self._stub().GetDocument(request, metadata=metadata, timeout=self.timeout)
            for i, answer in enumerate(stream):
                part = answer.WhichOneof("part")
                if i == 0:
                    if part != "document" or answer.document.id != ref.id:
                        stream.cancel()
                        raise _error("bad_stream", ref, "the stream did not begin with it")
                    continue
                if part != "chunk":
                    stream.cancel()
                    raise _error("bad_stream", ref, "metadata came again after the first message")
                received += len(answer.chunk)
                if received > ref.size_bytes:  # never hold more than the event announced
                    stream.cancel()
                    raise DocumentFetchError(
                        "mismatch",
                        f"document {ref.id}: served more than the {ref.size_bytes} bytes "
                        "the event says",
                        permanent=True,
                    )
                parts.append(answer.chunk)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            detail = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            what = f"GetDocument {ref.id}: {code.name if code else 'error'}: {detail}"
            if code in _PERMANENT:
                raise DocumentFetchError(_PERMANENT[code], what, permanent=True) from exc
            outcome = _TRANSIENT.get(code, "error") if code is not None else "error"
            raise DocumentFetchError(outcome, what, permanent=False) from exc
        return b"".join(parts)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def _error(outcome: str, ref: DocumentRef, why: str) -> DocumentFetchError:
    return DocumentFetchError(outcome, f"document {ref.id}: {why}", permanent=True)
