"""The gRPC server every service runs: health, reflection, TLS, graceful stop, interceptors.

Interceptors run outermost first: tracing (continue the caller's trace) → metrics (RED) →
authentication (JWT → :class:`~motcua_kit.auth.Principal`) → error mapping (refusals → status
codes, in this one place). Health checks and reflection need no token: Kubernetes probes
carry none. Streamed requests and responses get the same interceptors; a streamed response
is held in them (principal, span, in-flight count, metrics, error mapping) until its last
message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import ValidationError

from motcua_kit import errors
from motcua_kit.auth import TokenVerifier, reset_principal, set_principal
from motcua_kit.metrics import GRPC_LATENCY, GRPC_REQUESTS
from motcua_kit.readiness import READINESS
from motcua_kit.tracing import context_from_headers

log = logging.getLogger(__name__)

_OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_STATUS_OF: dict[type[errors.Refusal], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}

Behaviour = Callable[[Any, grpc.ServicerContext], Any]


def status_for(refusal: errors.Refusal) -> grpc.StatusCode:
    """The gRPC status code of a refusal kind (the one mapping, used by every service)."""
    for kind in type(refusal).__mro__:
        if kind in _STATUS_OF:
            return _STATUS_OF[kind]
    return grpc.StatusCode.FAILED_PRECONDITION


def _wrap_handler(
    handler: grpc.RpcMethodHandler | None, method: str, interceptor: _WrappingInterceptor
) -> grpc.RpcMethodHandler | None:
    """Wrap a handler's behaviour in ``interceptor``: unary or streamed requests, and a unary
    or streamed response (then the interceptor's scope lasts until the stream ends).

    Bidirectional streams (only reflection has one) pass through.
    """
    if handler is None:
        return handler
    kind = (handler.request_streaming, handler.response_streaming)
    if kind == (True, True):
        return handler
    if kind == (True, False):
        return grpc.stream_unary_rpc_method_handler(
            interceptor.wrap(handler.stream_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if kind == (False, True):
        return grpc.unary_stream_rpc_method_handler(
            interceptor.wrap(handler.unary_stream, method, streams_response=True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        interceptor.wrap(handler.unary_unary, method),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _WrappingInterceptor(grpc.ServerInterceptor):
    """An interceptor defined by what it does around one call (:meth:`around`)."""

    wraps_open_methods = False

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if method.startswith(_OPEN_METHODS) and (
            not self.wraps_open_methods or (handler is not None and handler.response_streaming)
        ):
            # Health's Watch streams for as long as its client likes: counting it in flight
            # would hold every graceful stop to its deadline; unwrapped it also keeps its
            # non-blocking mode (no pool thread per watcher).
            return handler
        return _wrap_handler(handler, method, self)

    def around(self, method: str, request: Any, context: grpc.ServicerContext) -> Iterator[None]:
        """A generator (made a context manager by :meth:`wrap`) holding one call."""
        raise NotImplementedError

    def wrap(
        self, behaviour: Behaviour, method: str, *, streams_response: bool = False
    ) -> Behaviour:
        """``behaviour`` run inside :meth:`around`; for a streamed response, until its last
        message has been taken (or the stream is abandoned), so errors raised while iterating
        are handled like those of a unary call."""
        around = contextmanager(self.around)
        if streams_response:

            def streamed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with around(method, request, context):
                    yield from behaviour(request, context)

            return streamed

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with around(method, request, context):
                return behaviour(request, context)

        return unary


class InFlightInterceptor(_WrappingInterceptor):
    """Counts the calls being handled, so a graceful stop knows when the last one finished."""

    wraps_open_methods = True

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    @property
    def count(self) -> int:
        with self._idle:
            return self._count

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is being handled; False if some still are after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)

    def around(self, method: str, request: Any, context: grpc.ServicerContext) -> Iterator[None]:
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                if self._count == 0:
                    self._idle.notify_all()


class TracingInterceptor(_WrappingInterceptor):
    """Continues the caller's trace (``traceparent`` metadata) in a server span."""

    def __init__(self, service: str) -> None:
        self._tracer = trace.get_tracer(f"motcua.{service}.grpc")

    def around(self, method: str, request: Any, context: grpc.ServicerContext) -> Iterator[None]:
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        token = otel_context.attach(context_from_headers(headers))
        try:
            with self._tracer.start_as_current_span(
                method.rsplit("/", 1)[-1],
                kind=trace.SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.method": method},
            ):
                yield
                if log.isEnabledFor(logging.DEBUG):
                    # In the call's span: its trace id leads from the logs to the trace.
                    code = getattr(context.code(), "name", "OK")
                    log.debug("handled %s", method, extra={"grpc_code": code})
        finally:
            otel_context.detach(token)


class MetricsInterceptor(_WrappingInterceptor):
    """RED metrics per method: calls by status code, latency histogram (a stream: its whole
    duration; one its client abandoned counts as CANCELLED)."""

    wraps_open_methods = True

    def __init__(self, service: str) -> None:
        self._service = service

    def around(self, method: str, request: Any, context: grpc.ServicerContext) -> Iterator[None]:
        started = time.perf_counter()
        code = "OK"
        try:
            yield
            set_code = context.code()
            if set_code is not None:
                code = set_code.name
        except GeneratorExit:
            code = "CANCELLED"
            raise
        except Exception:
            set_code = context.code()
            code = set_code.name if set_code is not None else "UNKNOWN"
            raise
        finally:
            GRPC_REQUESTS.labels(self._service, method, code).inc()
            GRPC_LATENCY.labels(self._service, method).observe(time.perf_counter() - started)


class AuthInterceptor(_WrappingInterceptor):
    """Requires a valid bearer token on every call but health checks and reflection."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def around(self, method: str, request: Any, context: grpc.ServicerContext) -> Iterator[None]:
        header = dict(context.invocation_metadata()).get("authorization", "")
        if not isinstance(header, str) or not header.lower().startswith("bearer "):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
        try:
            principal = self._verifier.verify(str(header)[7:].strip())
        except errors.Unauthenticated as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
        span = trace.get_current_span()
        span.set_attribute("enduser.role", principal.primary_role)
        token = set_principal(principal)
        try:
            yield
        finally:
            reset_principal(token)


def _field_path(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "request"


# The range google.protobuf.Timestamp allows (0001-01-01 .. 9999-12-31), as its spec says.
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
_TIMESTAMP = "google.protobuf.Timestamp"


def malformed_field(message: Message, prefix: str = "") -> tuple[str, str] | None:
    """(path, reason) of the first field no handler should meet, if any.

    Checked at the edge so every service is spared failing deep inside a transaction:
    text holding NUL (PostgreSQL cannot store it, and no citizen types it), and a Timestamp
    outside its documented range (Python cannot turn it into a datetime).
    """
    for field, value in message.ListFields():
        if field.type not in (field.TYPE_MESSAGE, field.TYPE_STRING):
            continue
        repeated = field.is_repeated
        items = list(value) if repeated else [value]
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            continue  # maps carry no citizen text in motcua's contracts
        for i, item in enumerate(items):
            path = f"{prefix}{field.name}[{i}]" if repeated else f"{prefix}{field.name}"
            if field.type == field.TYPE_STRING:
                if "\x00" in item:
                    return path, "must not contain NUL characters"
            elif entry is not None and entry.full_name == _TIMESTAMP:
                low, high = _TIMESTAMP_SECONDS
                if not (low <= item.seconds <= high and 0 <= item.nanos <= 999_999_999):
                    return path, "is not a valid timestamp (years 1-9999, nanos 0-999999999)"
            else:
                found = malformed_field(item, path + ".")
                if found:
                    return found
    return None


class ErrorMappingInterceptor(_WrappingInterceptor):
    """Turns refusals into status codes; INVALID_ARGUMENT carries a BadRequest naming the field.

    Anything else is a bug: logged with its trace, answered INTERNAL without internals.
    """

    def wrap(
        self, behaviour: Behaviour, method: str, *, streams_response: bool = False
    ) -> Behaviour:
        """Also checks every request message (each one of a streamed request as it is read)
        with :func:`malformed_field`."""

        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Message):
                _refuse_malformed(request)
                return behaviour(request, context)
            return behaviour(_checked_stream(request), context)

        return super().wrap(checked, method, streams_response=streams_response)

    def around(self, method: str, request: Any, context: grpc.ServicerContext) -> Iterator[None]:
        try:
            yield
        except errors.InvalidArgument as exc:
            _abort_invalid(context, [(exc.field, exc.reason)])
        except ValidationError as exc:
            violations = [(_field_path(e["loc"]), e["msg"]) for e in exc.errors()]
            _abort_invalid(context, violations)
        except errors.Refusal as exc:
            context.abort(status_for(exc), exc.message)
        except Exception as exc:
            if context.code() is not None:
                raise  # already aborted deliberately
            log.exception("unhandled error in %s", method)
            trace.get_current_span().record_exception(exc)
            context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _refuse_malformed(message: Message) -> None:
    bad = malformed_field(message)
    if bad:
        raise errors.InvalidArgument(*bad)


def _checked_stream(requests: Iterable[Any]) -> Iterator[Any]:
    for message in requests:
        if isinstance(message, Message):
            _refuse_malformed(message)
        yield message


def _abort_invalid(context: grpc.ServicerContext, violations: list[tuple[str, str]]) -> None:
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    message = "; ".join(f"{f}: {d}" for f, d in violations)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[packed])
    context.abort_with_status(rpc_status.to_status(status))


@dataclass(frozen=True)
class ServerTLS:
    """Certificate files for the server; with a client CA, clients must present a certificate."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


Registration = Callable[[grpc.Server], None]


def registration(
    pb2: ModuleType, service: str, add: Callable[[Any, grpc.Server], None], servicer: object
) -> tuple[str, Registration]:
    """(full name, registration) of one gRPC service of a generated ``*_pb2`` module: the
    name comes from the proto's descriptor (health and reflection announce it), not a string."""
    full_name: str = pb2.DESCRIPTOR.services_by_name[service].full_name
    return full_name, lambda server: add(servicer, server)


class GrpcServer:
    """A thread-pool gRPC server with health, reflection and graceful shutdown."""

    def __init__(
        self,
        service: str,
        *,
        host: str,
        port: int,
        registrations: Iterable[tuple[str, Registration]],
        verifier: TokenVerifier,
        tls: ServerTLS | None = None,
        max_workers: int = 16,
    ) -> None:
        self.service = service
        self._in_flight = InFlightInterceptor()
        self._executor = futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="grpc"
        )
        self._server = grpc.server(
            self._executor,
            interceptors=[
                self._in_flight,
                TracingInterceptor(service),
                MetricsInterceptor(service),
                AuthInterceptor(verifier),
                ErrorMappingInterceptor(),
            ],
            options=[("grpc.so_reuseport", 0)],
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        self._service_names: list[str] = []
        for full_name, register in registrations:
            register(self._server)
            names.append(full_name)
            self._service_names.append(full_name)
        reflection.enable_server_reflection(names, self._server)
        address = f"{host}:{port}"
        if tls is not None:
            self.port = self._server.add_secure_port(address, tls.credentials())
        else:
            self.port = self._server.add_insecure_port(address)
        self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._health_lock = threading.Lock()
        self._stopping = False
        self._unwatch: Callable[[], None] = lambda: None

    def _set_all(self, status: int) -> None:
        for name in ["", *self._service_names]:
            self.health.set(name, status)

    def start(self) -> None:
        self._server.start()
        # SERVING unless a worker reports it cannot work until an operator acts (a refused
        # Kafka password, a missing ACL); then NOT_SERVING until it can (motcua_kit.readiness).
        self._unwatch = READINESS.watch(self.service, self._on_readiness)

    def _on_readiness(self, blocks: dict[str, str]) -> None:
        with self._health_lock:
            if self._stopping:
                return
            if blocks:
                self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
            else:
                self._set_all(health_pb2.HealthCheckResponse.SERVING)

    @property
    def in_flight(self) -> int:
        """Calls being handled now."""
        return self._in_flight.count

    def handler_threads(self) -> list[threading.Thread]:
        """The pool's threads (for the log when a stop has to abandon a call)."""
        return [t for t in threading.enumerate() if t.name.startswith("grpc_")]

    def stop(self, grace: float) -> bool:
        """Report NOT_SERVING, refuse new calls, let in-flight calls finish within ``grace``.

        ``grace`` bounds the whole stop. Returns False when a handler was still running at the
        end of it: the call was cancelled, but its thread (not a daemon) may still be busy.
        """
        deadline = time.monotonic() + max(grace, 0.0)
        with self._health_lock:
            self._stopping = True
            self._unwatch()
            self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        stopped = self._server.stop(grace)
        idle = self._in_flight.wait_idle(grace)
        stopped.wait(max(deadline - time.monotonic(), 0.0))
        idle = idle or self._in_flight.wait_idle(0)
        if not idle:
            log.warning(
                "%s: %d gRPC calls still running at the deadline", self.service, self.in_flight
            )
        elif stopped.is_set():
            # Idle pool threads would otherwise be joined only by the interpreter's exit hook.
            self._executor.shutdown(wait=False)
        return idle and stopped.is_set()

    def wait(self) -> None:
        self._server.wait_for_termination()
