"""A real trace backend for the tests: Jaeger v2 (all-in-one, in-memory storage) on 127.0.0.1.

The binary is the one ``infra/jaeger.sh fetch`` builds into the cache (built on first use when
absent, as Kafka's jars are fetched; that takes minutes). :class:`Jaeger` starts it with
``infra/jaeger/config.yaml`` on free ports, waits until its health check and query API answer
(with a deadline) and stops it by PID; :class:`JaegerQuery` reads what it stored through its
HTTP query API, as the Jaeger UI does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from go_backend import BUILD_TIMEOUT, GoBackend, script_binary
from harness import ROOT

CONFIG = ROOT / "infra" / "jaeger" / "config.yaml"
__all__ = ["BUILD_TIMEOUT", "Jaeger", "JaegerQuery", "Span", "is_built", "running_jaeger"]
PORT_VARIABLES = (
    "JAEGER_OTLP_GRPC_PORT",
    "JAEGER_OTLP_HTTP_PORT",
    "JAEGER_QUERY_HTTP_PORT",
    "JAEGER_QUERY_GRPC_PORT",
    "JAEGER_HEALTH_PORT",
)
SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP SpanKind


def is_built() -> bool:
    """Whether the cached binary is there (else the first start builds it)."""
    return script_binary("jaeger.sh", build=False) is not None


@dataclass(frozen=True)
class Span:
    """One span as Jaeger stored it (from the OTLP form of ``/api/v3/traces/{id}``)."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, str]


def _value(v: dict[str, Any]) -> str:
    """An OTLP JSON ``AnyValue`` as text (ints arrive as strings already)."""
    for key in ("stringValue", "intValue", "doubleValue"):
        if key in v:
            return str(v[key])
    if "boolValue" in v:
        return "true" if v["boolValue"] else "false"
    return str(v)


class JaegerQuery:
    """Jaeger's HTTP query API: ``/api/services`` and ``/api/traces`` (the UI's JSON API) and
    ``/api/v3/traces/{id}`` (the trace in OTLP form, with span kinds and parent ids as sent)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", params=params, timeout=10)

    def services(self) -> list[str]:
        resp = self._get("/api/services")
        resp.raise_for_status()
        return list(resp.json()["data"] or [])

    def find_trace_ids(
        self, service: str, operation: str, lookback: str = "1h", limit: int = 20
    ) -> list[str]:
        """Ids of the traces with a span of ``operation`` by ``service`` (newest first)."""
        resp = self._get(
            "/api/traces", service=service, operation=operation, lookback=lookback, limit=limit
        )
        resp.raise_for_status()
        return [t["traceID"] for t in resp.json()["data"] or []]

    def trace(self, trace_id: str) -> list[Span]:
        """Every span of one trace Jaeger holds now (empty while it knows none)."""
        resp = self._get(f"/api/v3/traces/{trace_id}")
        if resp.status_code == httpx.codes.NOT_FOUND:
            return []
        resp.raise_for_status()
        spans = []
        for resource_spans in resp.json()["result"]["resourceSpans"]:
            resource = {
                a["key"]: _value(a["value"])
                for a in resource_spans.get("resource", {}).get("attributes", [])
            }
            for scope in resource_spans.get("scopeSpans", []):
                for s in scope.get("spans", []):
                    spans.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=s["name"],
                            kind=int(s.get("kind", 0)),
                            trace_id=s["traceId"],
                            span_id=s["spanId"],
                            parent_span_id=s.get("parentSpanId", ""),
                            attributes={
                                a["key"]: _value(a["value"]) for a in s.get("attributes", [])
                            },
                        )
                    )
        return spans


class Jaeger(GoBackend):
    """One Jaeger all-in-one process; ``otlp_endpoint`` is what services export to."""

    name = "jaeger"
    script = "jaeger.sh"
    port_names = PORT_VARIABLES

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['JAEGER_OTLP_GRPC_PORT']}"

    @property
    def query(self) -> JaegerQuery:
        return JaegerQuery(f"http://127.0.0.1:{self.ports['JAEGER_QUERY_HTTP_PORT']}")

    def command(self, binary: Path) -> list[str]:
        return [str(binary), f"--config=file:{CONFIG}"]

    def environment(self) -> dict[str, str]:
        return {name: str(port) for name, port in self.ports.items()}

    def ready(self) -> bool:
        health = f"http://127.0.0.1:{self.ports['JAEGER_HEALTH_PORT']}/status"
        if httpx.get(health, timeout=1).status_code != httpx.codes.OK:
            return False
        self.query.services()  # the query API answers too
        return True


@contextmanager
def running_jaeger(work_dir: Path) -> Iterator[Jaeger]:
    """A started Jaeger, stopped (by PID) on exit."""
    jaeger = Jaeger(work_dir)
    try:
        jaeger.start()
        yield jaeger
    finally:
        jaeger.stop()
