"""The kit's gRPC server wraps streamed calls as it wraps unary ones.

A real server on 127.0.0.1 (built with :class:`GrpcServer`) serves the dossier contract's
client-streaming ReturnResult and server-streaming GetDocument from FakeStreamingServicer:
no token is refused before the handler runs, a refusal raised mid-stream becomes its status
with the field named, the call is counted in the RPC metrics and stays in flight until its
stream ends, and the caller's principal is set while the response stream is produced.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from motcua.dossier.v1 import dossier_pb2, dossier_pb2_grpc
from motcua_kit.auth import TokenVerifier, current_principal, generate_signing_key, mint_token
from motcua_kit.errors import InvalidArgument
from motcua_kit.grpc_server import GrpcServer, registration

_SERVICE = dossier_pb2.DESCRIPTOR.services_by_name["DossierService"].full_name
RETURN_RESULT = f"/{_SERVICE}/ReturnResult"
GET_DOCUMENT = f"/{_SERVICE}/GetDocument"
_names = itertools.count()


@dataclass
class FakeStreamingServicer(dossier_pb2_grpc.DossierServiceServicer):
    """Streams like the dossier service would, with hooks to hold or fail a call mid-stream."""

    calls: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    hold: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)

    def _wait(self) -> None:
        if self.hold is not None:
            self.holding.set()
            assert self.hold.wait(10), "the test never released the call"

    def ReturnResult(
        self, request_iterator: Iterator[dossier_pb2.ReturnResultRequest], context: object
    ) -> dossier_pb2.ReturnResultResponse:
        self.calls.append("ReturnResult")
        self.subjects.append(current_principal().subject)
        header = next(request_iterator).header
        self._wait()
        size = 0
        for i, message in enumerate(request_iterator, start=1):
            if message.chunk == b"bad":
                raise InvalidArgument(f"chunk[{i}]", "is not part of a PDF")
            size += len(message.chunk)
        document = dossier_pb2.IssuedDocument(filename=header.filename, size_bytes=size)
        return dossier_pb2.ReturnResultResponse(document=document)

    def GetDocument(
        self, request: dossier_pb2.GetDocumentRequest, context: object
    ) -> Iterator[dossier_pb2.GetDocumentResponse]:
        self.calls.append("GetDocument")
        yield dossier_pb2.GetDocumentResponse(document=dossier_pb2.IssuedDocument(id="d-1"))
        self._wait()
        # Read after the first message: the principal must outlive the handler's return.
        self.subjects.append(current_principal().subject)
        if request.document_id == "bad":
            raise InvalidArgument("document_id", "names no document")
        yield dossier_pb2.GetDocumentResponse(chunk=b"%PDF-")


@dataclass
class Served:
    server: GrpcServer
    servicer: FakeStreamingServicer
    stub: dossier_pb2_grpc.DossierServiceStub
    token: str
    name: str

    @property
    def auth(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]

    def count(self, method: str, code: str) -> float:
        labels = {"service": self.name, "method": method, "code": code}
        return REGISTRY.get_sample_value("motcua_grpc_requests_total", labels) or 0.0


@pytest.fixture
def served() -> Iterator[Served]:
    private_pem, public_pem = generate_signing_key()
    servicer = FakeStreamingServicer()
    name = f"streaming-test-{next(_names)}"  # metrics labels of this test only
    server = GrpcServer(
        name,
        host="127.0.0.1",
        port=0,
        registrations=[
            registration(
                dossier_pb2,
                "DossierService",
                dossier_pb2_grpc.add_DossierServiceServicer_to_server,
                servicer,
            )
        ],
        verifier=TokenVerifier(public_pem, "motcua", "motcua"),
        max_workers=4,
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        token = mint_token(private_pem, "officer-1", ["officer"], agency="so-tu-phap")
        yield Served(server, servicer, dossier_pb2_grpc.DossierServiceStub(channel), token, name)
    finally:
        if servicer.hold is not None:
            servicer.hold.set()
        channel.close()
        server.stop(0)


def _upload(*chunks: bytes) -> Iterator[dossier_pb2.ReturnResultRequest]:
    header = dossier_pb2.ReturnResultHeader(code="HS-1", filename="ket-qua.pdf")
    yield dossier_pb2.ReturnResultRequest(header=header)
    for chunk in chunks:
        yield dossier_pb2.ReturnResultRequest(chunk=chunk)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _violations(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    found = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        found += [v.field for v in bad.field_violations]
    return found


def test_no_token_is_refused_before_either_streaming_handler_runs(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as upload:
        served.stub.ReturnResult(_upload(b"%PDF-"), timeout=10)
    assert upload.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as download:
        list(served.stub.GetDocument(dossier_pb2.GetDocumentRequest(document_id="d-1"), timeout=10))
    assert download.value.code() == grpc.StatusCode.UNAUTHENTICATED
    forged = [("authorization", "Bearer not-a-token")]
    with pytest.raises(grpc.RpcError) as bad_token:
        served.stub.ReturnResult(_upload(b"%PDF-"), metadata=forged, timeout=10)
    assert bad_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert served.servicer.calls == []
    assert served.count(RETURN_RESULT, "UNAUTHENTICATED") == 2
    assert served.count(GET_DOCUMENT, "UNAUTHENTICATED") == 1


def test_a_client_stream_runs_with_the_principal_and_is_counted(served: Served) -> None:
    reply = served.stub.ReturnResult(_upload(b"%PDF-", b"1.7"), metadata=served.auth, timeout=10)
    assert (reply.document.filename, reply.document.size_bytes) == ("ket-qua.pdf", 8)
    assert served.servicer.subjects == ["officer-1"]
    assert served.count(RETURN_RESULT, "OK") == 1


def test_a_refusal_read_mid_upload_names_its_field(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as err:
        served.stub.ReturnResult(_upload(b"%PDF-", b"bad"), metadata=served.auth, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == ["chunk[2]"]
    assert served.count(RETURN_RESULT, "INVALID_ARGUMENT") == 1


def test_every_streamed_request_message_is_checked_at_the_edge(served: Served) -> None:
    header = dossier_pb2.ReturnResultHeader(code="HS-1", filename="a\x00.pdf")
    requests = iter([dossier_pb2.ReturnResultRequest(header=header)])
    with pytest.raises(grpc.RpcError) as err:
        served.stub.ReturnResult(requests, metadata=served.auth, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == ["header.filename"]


def test_a_refusal_raised_while_streaming_the_response_names_its_field(served: Served) -> None:
    stream = served.stub.GetDocument(
        dossier_pb2.GetDocumentRequest(document_id="bad"), metadata=served.auth, timeout=10
    )
    assert next(stream).document.id == "d-1"
    with pytest.raises(grpc.RpcError) as err:
        next(stream)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == ["document_id"]
    assert served.servicer.subjects == ["officer-1"]
    assert served.count(GET_DOCUMENT, "INVALID_ARGUMENT") == 1
    assert served.count(GET_DOCUMENT, "OK") == 0


def test_a_client_stream_is_in_flight_until_its_handler_returns(served: Served) -> None:
    served.servicer.hold = threading.Event()
    call = served.stub.ReturnResult.future(_upload(b"%PDF-"), metadata=served.auth, timeout=10)
    assert served.servicer.holding.wait(10)
    assert served.server.in_flight == 1
    served.servicer.hold.set()
    assert call.result(timeout=10).document.size_bytes == 5
    _wait_for(lambda: served.server.in_flight == 0, "the upload to leave the in-flight count")


def test_a_server_stream_is_in_flight_and_measured_until_its_last_message(served: Served) -> None:
    served.servicer.hold = threading.Event()
    stream = served.stub.GetDocument(
        dossier_pb2.GetDocumentRequest(document_id="d-1"), metadata=served.auth, timeout=10
    )
    assert next(stream).document.id == "d-1"
    assert served.servicer.holding.wait(10)
    # The handler has returned its generator long ago; the call is still being served.
    assert served.server.in_flight == 1
    assert served.count(GET_DOCUMENT, "OK") == 0
    served.servicer.hold.set()
    assert [m.chunk for m in stream] == [b"%PDF-"]
    assert served.servicer.subjects == ["officer-1"]
    _wait_for(lambda: served.server.in_flight == 0, "the download to leave the in-flight count")
    assert served.count(GET_DOCUMENT, "OK") == 1


def test_a_server_stream_its_client_abandons_leaves_the_count_as_cancelled(served: Served) -> None:
    served.servicer.hold = threading.Event()
    stream = served.stub.GetDocument(
        dossier_pb2.GetDocumentRequest(document_id="d-1"), metadata=served.auth, timeout=10
    )
    assert next(stream).document.id == "d-1"
    assert served.servicer.holding.wait(10)
    stream.cancel()
    served.servicer.hold.set()
    _wait_for(lambda: served.server.in_flight == 0, "the abandoned download to end")
    assert served.count(GET_DOCUMENT, "CANCELLED") == 1
    assert served.count(GET_DOCUMENT, "OK") == 0
