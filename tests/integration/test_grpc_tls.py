"""TLS and mutual TLS on the kit's gRPC server, with a throwaway CA made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from motcua_kit.auth import TokenVerifier, generate_signing_key
from motcua_kit.grpc_client import open_channel
from motcua_kit.grpc_server import GrpcServer, ServerTLS


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """A CA, a server certificate, a client certificate, and a client from another CA."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("motcua test CA", ca_key, None, ca=True)
        self.ca = self._write("ca.pem", ca)
        issuer = (ca.subject, ca_key)
        self.server_cert, self.server_key = self._pair("server", issuer, server=True)
        self.client_cert, self.client_key = self._pair("client", issuer)
        rogue_key = ec.generate_private_key(ec.SECP256R1())
        rogue_ca = _cert("rogue CA", rogue_key, None, ca=True)
        self.rogue_cert, self.rogue_key = self._pair("rogue", (rogue_ca.subject, rogue_key))

    def _write(self, name: str, cert: x509.Certificate) -> Path:
        path = self.folder / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def _pair(
        self, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey], server: bool = False
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._write(f"{name}.pem", _cert(name, key, issuer, server=server))
        key_path = self.folder / f"{name}-key.pem"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert, key_path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def _server(pki: Pki, mutual: bool) -> GrpcServer:
    _, public_pem = generate_signing_key()
    server = GrpcServer(
        "tls-test",
        host="127.0.0.1",
        port=0,
        registrations=[],
        verifier=TokenVerifier(public_pem, "motcua", "motcua"),
        tls=ServerTLS(pki.server_cert, pki.server_key, pki.ca if mutual else None),
    )
    server.start()
    return server


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[GrpcServer]:
    server = _server(pki, mutual=True)
    yield server
    server.stop(0)


def _check(channel: grpc.Channel) -> int:
    with channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(), timeout=5)
            .status
        )


def test_mtls_accepts_a_client_certificate_from_the_ca(mtls_server: GrpcServer, pki: Pki) -> None:
    channel = open_channel(
        f"localhost:{mtls_server.port}",
        ca_file=pki.ca,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    assert _check(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("client", ["no certificate", "certificate from another CA", "plaintext"])
def test_mtls_refuses_clients_without_a_valid_certificate(
    mtls_server: GrpcServer, pki: Pki, client: str
) -> None:
    target = f"localhost:{mtls_server.port}"
    if client == "no certificate":
        channel = open_channel(target, ca_file=pki.ca)
    elif client == "certificate from another CA":
        channel = open_channel(
            target, ca_file=pki.ca, cert_file=pki.rogue_cert, key_file=pki.rogue_key
        )
    else:
        channel = open_channel(target)
    with pytest.raises(grpc.RpcError) as info:
        _check(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_without_client_ca_serves_any_tls_client_but_not_plaintext(pki: Pki) -> None:
    server = _server(pki, mutual=False)
    try:
        target = f"localhost:{server.port}"
        assert (
            _check(open_channel(target, ca_file=pki.ca)) == health_pb2.HealthCheckResponse.SERVING
        )
        with pytest.raises(grpc.RpcError):
            _check(open_channel(target))
    finally:
        server.stop(0)
