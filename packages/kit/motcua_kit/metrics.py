"""Prometheus metrics shared by every service, and the HTTP endpoint that serves them.

The same port answers ``/metrics``, ``/healthz`` (the process is alive) and ``/readyz`` (it can
take work): Kubernetes probes and Prometheus need nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from motcua_kit.readiness import READINESS

GRPC_REQUESTS = Counter(
    "motcua_grpc_requests_total", "gRPC calls handled", ["service", "method", "code"]
)
GRPC_LATENCY = Histogram(
    "motcua_grpc_request_seconds",
    "gRPC call latency",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_BACKLOG = Gauge("motcua_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "motcua_outbox_oldest_pending_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "motcua_outbox_published_total", "Outbox rows published to Kafka", ["service", "topic"]
)
OUTBOX_PUBLISH_ERRORS = Counter(
    "motcua_outbox_publish_errors_total", "Failed attempts to publish outbox rows", ["service"]
)
CONSUMER_LAG = Gauge(
    "motcua_consumer_lag", "Records behind the partition end", ["service", "topic", "partition"]
)
EVENTS_CONSUMED = Counter(
    "motcua_events_consumed_total",
    "Events handled by consumers, by outcome (processed, duplicate, ignored, dead_lettered)",
    ["service", "topic", "outcome"],
)
DLQ_PUBLISHED = Counter(
    "motcua_dlq_published_total", "Records sent to a dead-letter topic", ["service", "topic"]
)


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
        elif self.path == "/healthz":
            body, ctype, code = b"ok\n", "text/plain", 200
        elif self.path == "/readyz":
            # Not ready also while a worker reports it cannot work until an operator acts
            # (motcua_kit.readiness); the reasons are in the body.
            blocked = READINESS.reasons()
            ready = self.server.ready() and not blocked
            body = b"ready\n" if ready else b"not ready\n"
            body += "".join(f"{k}: {v}\n" for k, v in sorted(blocked.items())).encode()
            ctype = "text/plain"
            code = 200 if ready else 503
        else:
            body, ctype, code = b"not found\n", "text/plain", 404
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # probes every few seconds would drown the logs


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], ready: Callable[[], bool]) -> None:
        super().__init__(addr, _Handler)
        self.ready = ready


class MetricsEndpoint:
    """Serves /metrics, /healthz and /readyz on one port in a daemon thread."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._server = _MetricsServer((host, port), ready)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # stop() waits for one poll: keep it short
            name="metrics-http",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
