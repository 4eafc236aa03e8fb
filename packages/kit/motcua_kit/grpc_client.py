"""Opening channels to motcua services, with TLS/mTLS and the caller's bearer token."""

from __future__ import annotations

from pathlib import Path

import grpc

from motcua_kit.tracing import current_traceparent


def open_channel(
    target: str,
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> grpc.Channel:
    """A channel; TLS when a CA is given, mutual TLS when a client certificate is given too."""
    if ca_file is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=key_file.read_bytes() if key_file else None,
        certificate_chain=cert_file.read_bytes() if cert_file else None,
    )
    return grpc.secure_channel(target, credentials)


def call_metadata(token: str) -> list[tuple[str, str]]:
    """Metadata for one call: the bearer token and the current trace context."""
    return [("authorization", f"Bearer {token}"), *current_traceparent().items()]
