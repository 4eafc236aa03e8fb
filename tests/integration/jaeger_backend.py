"""A real trace backend for the tests: Jaeger v2 (all-in-one, in-memory storage) on 127.0.0.1.

The binary is the one ``infra/jaeger.sh fetch`` builds into the cache (built on first use when
absent, as Kafka's jars are fetched; that takes minutes). :class:`Jaeger` starts it with
``infra/jaeger/config.yaml`` on free ports, waits until its health check and query API answer
(with a deadline) and stops it by PID; :class:`JaegerQuery` reads what it stored through its
HTTP query API, as the Jaeger UI does.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness import ROOT, StopWaiting, free_port, wait_for

JAEGER_SH = ROOT / "infra" / "jaeger.sh"
CONFIG = ROOT / "infra" / "jaeger" / "config.yaml"
BUILD_TIMEOUT = 1800.0
"""Seconds ``infra/jaeger.sh fetch`` may take when it has to build (some 6.5 min on 2 cores)."""
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
    done = subprocess.run(
        ["bash", str(JAEGER_SH), "path"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return done.returncode == 0


def jaeger_binary() -> Path:
    """The cached binary, built by ``infra/jaeger.sh fetch`` first if it is absent."""
    done = subprocess.run(
        ["bash", str(JAEGER_SH), "fetch"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    return Path(done.stdout.strip().splitlines()[-1])


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


@dataclass
class Jaeger:
    """One Jaeger all-in-one process; ``otlp_endpoint`` is what services export to."""

    work_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.work_dir / "jaeger.log"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['JAEGER_OTLP_GRPC_PORT']}"

    @property
    def query(self) -> JaegerQuery:
        return JaegerQuery(f"http://127.0.0.1:{self.ports['JAEGER_QUERY_HTTP_PORT']}")

    def start(self, timeout: float = 60.0, attempts: int = 3) -> Jaeger:
        binary = jaeger_binary()
        for attempt in range(1, attempts + 1):
            # Free ports are only free when picked: another process may take one meanwhile.
            self.ports = {name: free_port() for name in PORT_VARIABLES}
            try:
                self._start(binary, timeout)
                return self
            except AssertionError:
                if attempt == attempts or "address already in use" not in self.log_tail():
                    raise
        raise AssertionError("unreachable")

    def _start(self, binary: Path, timeout: float) -> None:
        env = {**os.environ, **{name: str(port) for name, port in self.ports.items()}}
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), f"--config=file:{CONFIG}"],
                env=env,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        health = f"http://127.0.0.1:{self.ports['JAEGER_HEALTH_PORT']}/status"

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise StopWaiting(f"jaeger exited with {self.proc.returncode}")
            if httpx.get(health, timeout=1).status_code != httpx.codes.OK:
                return False
            self.query.services()  # the query API answers too
            return True

        try:
            wait_for(ready, timeout, 0.1, "jaeger to be ready")
        except (AssertionError, StopWaiting) as exc:
            self.stop()
            raise AssertionError(f"{exc}\n--- jaeger log ---\n{self.log_tail()}") from None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its PID and wait; SIGKILL if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@contextmanager
def running_jaeger(work_dir: Path) -> Iterator[Jaeger]:
    """A started Jaeger, stopped (by PID) on exit."""
    jaeger = Jaeger(work_dir)
    try:
        yield jaeger.start()
    finally:
        jaeger.stop()
