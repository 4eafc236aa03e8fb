"""The kit's interceptors for request-streaming gRPC methods (client streaming).

:mod:`motcua_kit.grpc_server` wraps only unary-request handlers; a request-streaming one passes
its interceptors untouched, so it would run with no principal, no error mapping, no metrics
and no span. :class:`StreamRequestGuard` applies the same interceptors (tracing → metrics →
authentication → error mapping) around such a method, from inside the servicer, with a token
verifier built from the service's settings the way the host builds its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import grpc

from motcua_kit.auth import TokenVerifier
from motcua_kit.grpc_server import (
    AuthInterceptor,
    Behaviour,
    ErrorMappingInterceptor,
    MetricsInterceptor,
    TracingInterceptor,
)
from motcua_kit.settings import ServiceSettings


def verifier_from_settings(settings: ServiceSettings) -> TokenVerifier:
    """The identity provider's keys as the host reads them: a JWKS URL or a key file."""
    jwks_url = settings.jwt_jwks_url.strip()
    if jwks_url:
        return TokenVerifier.from_jwks(
            jwks_url,
            settings.jwt_issuer,
            settings.jwt_audience,
            cache_seconds=settings.jwt_jwks_cache_seconds,
            max_stale_seconds=settings.jwt_jwks_max_stale_seconds,
        )
    if settings.jwt_public_key_file is None:
        raise RuntimeError("no identity-provider key is configured")
    return TokenVerifier.from_file(
        settings.jwt_public_key_file, settings.jwt_issuer, settings.jwt_audience
    )


class StreamRequestGuard:
    """Wraps request-streaming behaviours of one service in the kit's interceptors."""

    def __init__(self, service: str, settings: Callable[[], ServiceSettings]) -> None:
        self._service = service
        self._settings = settings
        self._wrapped: dict[str, Behaviour] = {}

    @cached_property
    def _verifier(self) -> TokenVerifier:
        return verifier_from_settings(self._settings())

    def wrap(self, behaviour: Behaviour, method: str) -> Behaviour:
        """``behaviour(request_iterator, context)`` traced, measured, authenticated (the
        principal is set while it runs) and with refusals mapped to status codes."""
        wrapped = ErrorMappingInterceptor().wrap(behaviour, method)
        wrapped = AuthInterceptor(self._verifier).wrap(wrapped, method)
        wrapped = MetricsInterceptor(self._service).wrap(wrapped, method)
        return TracingInterceptor(self._service).wrap(wrapped, method)

    def __call__(
        self, behaviour: Behaviour, method: str, request: Any, context: grpc.ServicerContext
    ) -> Any:
        """Run one call of ``behaviour`` guarded (the wrapping is built once per method)."""
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped.setdefault(method, self.wrap(behaviour, method))
        return wrapped(request, context)
