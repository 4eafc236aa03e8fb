"""One trace follows a dossier across gRPC and Kafka: spans exported over OTLP to a receiver."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dossier_client import CITIZEN_ID, DossierClient, submit_request
from harness import ServiceProcess, wait_for
from notify_providers import SmtpSink, fresh_group, notify_env
from otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


def dossier_topic_bootstrap(proc: ServiceProcess) -> str:
    return proc.env[proc.prefix + "KAFKA_BOOTSTRAP"]


def _tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTLP_ENDPOINT": receiver.endpoint}


def test_submit_notification_send_and_audit_append_share_one_trace(
    receiver: OtlpReceiver,
    service_factory: Callable[..., ServiceProcess],
    token: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    dossier = service_factory(
        "dossier", f"sqlite:///{tmp_path}/d.db", **_tracing_env(receiver)
    ).start()
    audit = service_factory("audit", f"sqlite:///{tmp_path}/a.db", **_tracing_env(receiver)).start()
    smtp = SmtpSink().__enter__()
    notify = service_factory(
        "notify",
        f"sqlite:///{tmp_path}/n.db",
        CONSUMER_GROUP=fresh_group(dossier_topic_bootstrap(audit)),
        **notify_env(smtp),
        **_tracing_env(receiver),
    ).start()
    client = DossierClient(dossier.target, token("citizen", citizen_id=CITIZEN_ID))
    code = client.submit(submit_request("HT-001", f"t-{uuid.uuid4()}")).dossier.code

    def chain() -> tuple[ReceivedSpan, ReceivedSpan] | None:
        spans = receiver.snapshot()
        submit = [s for s in spans if s.name == "SubmitDossier" and s.service == "motcua-dossier"]
        consumed = [
            s
            for s in spans
            if s.service == "motcua-audit"
            and s.name == "motcua.dossier.v1 process"
            and s.attributes.get("cloudevents.event_type") == "vn.motcua.dossier.submitted.v1"
        ]
        for parent in submit:
            for child in consumed:
                if child.trace_id == parent.trace_id:
                    return parent, child
        return None

    parent, child = wait_for(chain, 60, 0.2, "the SubmitDossier → audit span chain")
    assert child.parent_span_id == parent.span_id
    assert parent.kind == 2  # SERVER
    assert child.kind == 5  # CONSUMER

    def sent() -> ReceivedSpan | None:
        return next(
            (
                s
                for s in receiver.snapshot()
                if s.service == "motcua-notify"
                and s.name == "notify send email"
                and s.trace_id == parent.trace_id
            ),
            None,
        )

    send = wait_for(sent, 60, 0.2, "notify's send span in the same trace")
    ids = {s.span_id for s in receiver.snapshot() if s.trace_id == parent.trace_id}
    assert send.parent_span_id in ids, "the send span hangs off the dossier's trace"
    assert send.attributes.get("motcua.dossier.code") == code
    for proc in (dossier, audit, notify):
        proc.terminate()
    smtp.__exit__(None, None, None)
