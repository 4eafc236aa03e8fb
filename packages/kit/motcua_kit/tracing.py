"""OpenTelemetry set-up and W3C trace-context propagation through gRPC metadata and Kafka headers.

One dossier's request becomes one trace: the gRPC interceptor continues the caller's context,
the outbox stores the ``traceparent`` of the transaction that wrote the event, and the consumer
runner continues it when it handles the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False


def configure_tracing(
    service: str, otlp_endpoint: str = "", extra_processors: Iterable[SpanProcessor] = ()
) -> TracerProvider:
    """Install a tracer provider for the process; export over OTLP only when an endpoint is set."""
    global _configured
    provider = TracerProvider(resource=Resource.create({"service.name": f"motcua-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    if not _configured:
        trace.set_tracer_provider(provider)
        _configured = True
    return provider


def tracer(name: str) -> trace.Tracer:
    """The tracer for one component of the kit or a service."""
    return trace.get_tracer(name)


def current_traceparent() -> dict[str, str]:
    """The W3C headers of the current context (``traceparent``, maybe ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context:
    """A context continuing the trace named in W3C headers (empty context when absent)."""
    return propagate.extract(dict(headers))


def context_from_kafka_headers(headers: Iterable[tuple[str, bytes]]) -> otel_context.Context:
    """Like :func:`context_from_headers` for Kafka's (name, bytes) header list."""
    carrier = {}
    for name, value in headers:
        if name in ("traceparent", "tracestate") and value is not None:
            carrier[name] = value.decode("ascii", "replace")
    return propagate.extract(carrier)
