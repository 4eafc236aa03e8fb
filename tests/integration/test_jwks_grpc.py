"""A service configured with a JWKS URL authenticates gRPC calls with the published keys.

The service runs in-process (ServiceHost, no broker); a local HTTP server publishes the JWKS.
Refusals of the key source reach the caller as UNAUTHENTICATED, like every other bad token.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import empty_pb2, wrappers_pb2
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import MetaData

from motcua_kit.auth import current_principal, mint_token
from motcua_kit.grpc_server import Registration
from motcua_kit.service import Service, ServiceHost
from motcua_kit.settings import ServiceSettings

METHOD = "/motcua.test.v1.Whoami/Get"


def _whoami(request: empty_pb2.Empty, context: grpc.ServicerContext) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=current_principal().subject)


def _register(server: grpc.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(
        _whoami,
        request_deserializer=empty_pb2.Empty.FromString,
        response_serializer=wrappers_pb2.StringValue.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("motcua.test.v1.Whoami", {"Get": handler}),)
    )


class _Whoami(Service):
    name = "whoami"
    settings_class = ServiceSettings
    metadata = MetaData()
    migrations = "unused:unused"

    def grpc_services(self) -> list[tuple[str, Registration]]:
        return [("motcua.test.v1.Whoami", _register)]


def _private_key_and_jwk(kid: str) -> tuple[bytes, dict[str, object]]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwk = {**OKPAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}
    return pem, jwk


@pytest.fixture
def jwks_url() -> Iterator[tuple[str, bytes]]:
    """(JWKS URL, private PEM of the published key ``k1``)."""
    pem, jwk = _private_key_and_jwk("k1")
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json", pem
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def channel(tmp_path: Path, jwks_url: tuple[str, bytes]) -> Iterator[grpc.Channel]:
    settings = ServiceSettings(
        database_url=f"sqlite:///{tmp_path}/whoami.db",
        jwt_jwks_url=jwks_url[0],
        grpc_port=0,
        metrics_port=0,
        kafka_create_topics=False,
        shutdown_grace_seconds=2,
    )
    host = ServiceHost(_Whoami, settings)
    host.start()
    assert host.grpc is not None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{host.grpc.port}") as ch:
            yield ch
    finally:
        host.stop()


def _call(channel: grpc.Channel, token: str) -> str:
    stub = channel.unary_unary(
        METHOD,
        request_serializer=empty_pb2.Empty.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
    reply = stub(empty_pb2.Empty(), metadata=[("authorization", f"Bearer {token}")], timeout=10)
    return str(reply.value)


def test_calls_are_authenticated_with_the_published_keys(
    channel: grpc.Channel, jwks_url: tuple[str, bytes]
) -> None:
    pem = jwks_url[1]
    assert _call(channel, mint_token(pem, "officer-1", ["officer"], kid="k1")) == "officer-1"

    stranger, _ = _private_key_and_jwk("k9")
    refusals = {
        "unknown signing key id 'k9'": mint_token(stranger, "x", ["admin"], kid="k9"),
        "Signature verification failed": mint_token(stranger, "x", ["admin"], kid="k1"),
        "names no signing key": mint_token(pem, "x", ["officer"]),
    }
    for message, token in refusals.items():
        with pytest.raises(grpc.RpcError) as caught:
            _call(channel, token)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert message in str(caught.value.details())
