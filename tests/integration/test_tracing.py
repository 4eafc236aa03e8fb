"""One trace follows a dossier across gRPC and Kafka, read back from a real trace backend.

The four services export their spans over OTLP to Jaeger v2 (all-in-one, in-memory storage:
``infra/jaeger.sh``, ``jaeger_backend.py``); the test then asks Jaeger's query API for the
trace of the dossier it submitted, as an operator would in the Jaeger UI, and checks that the
SubmitDossier call and what audit, payment and notify did with its event are one trace with
the right parent links. With LOG_LEVEL=DEBUG, each service's log holds a line of that trace
(the kit logs each handled call and record in its own trace), so the trace id leads from the
backend to the logs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import Kafka, ServiceProcess, free_port, wait_for
from jaeger_backend import (
    BUILD_TIMEOUT,
    CLIENT,
    CONSUMER,
    SERVER,
    Jaeger,
    Span,
    is_built,
    running_jaeger,
)
from notify_providers import EMAIL, SmtpSink, fresh_group, notify_env

# The first run on a machine builds Jaeger (minutes): the time limit allows for it then only.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300 if is_built() else 300 + BUILD_TIMEOUT),
]

SUBMITTED = "vn.motcua.dossier.submitted.v1"
PROCESS = "motcua.dossier.v1 process"
# Every topic a consumer here reads (audit reads notify.v1 too): all positioned at their end.
CONSUMED = ("motcua.dossier.v1", "motcua.payment.v1", "motcua.notify.v1")
SERVICES = {"motcua-dossier", "motcua-audit", "motcua-payment", "motcua-notify"}
EXPECTED = {
    ("motcua-dossier", "SubmitDossier"),
    ("motcua-audit", PROCESS),
    ("motcua-payment", PROCESS),
    ("motcua-notify", PROCESS),
    ("motcua-notify", "notify send email"),
}


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    with running_jaeger(tmp_path / "jaeger") as backend:
        yield backend


def _only(spans: list[Span], service: str, name: str) -> Span:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service} {name!r}: {found}"
    return found[0]


def test_submit_and_what_audit_payment_and_notify_do_with_it_are_one_trace_in_jaeger(
    jaeger: Jaeger,
    kafka: Kafka,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    otlp = {"OTLP_ENDPOINT": jaeger.otlp_endpoint, "LOG_LEVEL": "DEBUG"}

    def consumer(name: str, **env: str) -> ServiceProcess:
        # Its group starts at the end of the shared broker's topics: other tests' events
        # (and traces) stay out.
        return service_factory(
            name,
            f"sqlite:///{tmp_path}/{name}.db",
            CONSUMER_GROUP=fresh_group(kafka.bootstrap, CONSUMED),
            **otlp,
            **env,
        )

    with SmtpSink() as smtp:
        procs = [
            service_factory("dossier", f"sqlite:///{tmp_path}/dossier.db", **otlp),
            consumer("audit"),
            consumer(
                "payment",
                GATEWAY_HASH_SECRET="tracing-hash-secret-0123456789ab",
                CALLBACK_PORT=str(free_port()),
            ),
            consumer("notify", **notify_env(smtp)),
        ]
        for proc in procs:
            proc.start(wait=False)
        for proc in procs:
            proc.wait_serving()
        dossier = procs[0]

        client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
        submitted = client.submit(submit_request("HT-004", f"t-{uuid.uuid4()}")).dossier
        assert submitted.fee_vnd == 8000  # a fee dossier: payment takes its fee down

        # The trace id, as the UI finds it: service motcua-dossier, operation SubmitDossier.
        found = wait_for(
            lambda: jaeger.query.find_trace_ids("motcua-dossier", "SubmitDossier"),
            60,
            0.2,
            "Jaeger to list the SubmitDossier trace",
        )
        assert len(found) == 1, found
        trace_id = found[0]

        def complete() -> list[Span]:
            spans = jaeger.query.trace(trace_id)
            return spans if {(s.service, s.name) for s in spans} >= EXPECTED else []

        try:
            spans = wait_for(complete, 60, 0.3, "the whole trace in Jaeger")
        except AssertionError as exc:
            have = sorted({(s.service, s.name) for s in jaeger.query.trace(trace_id)})
            raise AssertionError(f"{exc}\nJaeger holds {have} of trace {trace_id}") from None

    assert {s.trace_id for s in spans} == {trace_id}
    assert {s.service for s in spans} == SERVICES
    assert set(jaeger.query.services()) >= SERVICES

    submit = _only(spans, "motcua-dossier", "SubmitDossier")
    assert submit.kind == SERVER
    assert submit.parent_span_id == "", "the citizen's call starts the trace"

    consumed = {
        svc: _only(spans, f"motcua-{svc}", PROCESS) for svc in ("audit", "payment", "notify")
    }
    for svc, span in consumed.items():
        assert span.kind == CONSUMER, svc
        assert span.parent_span_id == submit.span_id, f"{svc} continues the SubmitDossier span"
        assert span.attributes["cloudevents.event_type"] == SUBMITTED, svc
    assert len({s.attributes["messaging.message.id"] for s in consumed.values()}) == 1

    send = _only(spans, "motcua-notify", "notify send email")
    assert send.kind == CLIENT
    assert send.parent_span_id == consumed["notify"].span_id, "sent under notify's consumer span"
    assert send.attributes["motcua.dossier.code"] == submitted.code
    assert send.attributes["motcua.notification.verdict"] == "delivered"
    assert smtp.to(EMAIL), "the e-mail the send span stands for arrived"

    for proc in procs:
        assert proc.terminate() == 0, proc.log_tail()
    for proc in procs:
        lines = proc.log_path.read_text(errors="replace").splitlines()
        docs = [json.loads(line) for line in lines if line.startswith("{")]
        mine = [d for d in docs if d.get("trace_id") == trace_id]
        assert mine, f"{proc.name}: no log line of trace {trace_id}"
        assert any(d["message"].startswith("handled ") for d in mine), (proc.name, mine)
