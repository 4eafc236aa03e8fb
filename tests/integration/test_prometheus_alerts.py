"""The chart's alerts in a real Prometheus, scraping the running suite (issue 17, point 2).

The four services run as processes on their own broker (faults here stop it) and PostgreSQL.
A Prometheus server built from its Go module scrapes them every second, with the rules the
chart renders (values-dev.yaml, plus short pending times and thresholds so a fault shows in
seconds, not minutes), and the OpenTelemetry Collector (kafkametrics receiver) reports each
consumer group's lag from the broker. Then one fault at a time, watched through Prometheus's
own API until its alert goes from pending to firing:

- a poison record on motcua.dossier.v1 -> MotcuaDeadLetterQueueNotEmpty;
- notify stopped while dossiers keep coming -> MotcuaConsumerLagGrowing (broker-side lag);
- a rewritten audit row -> MotcuaAuditVerificationFailed;
- the broker stopped while a citizen submits -> MotcuaOutboxStuck.

Last, every query of the Grafana dashboard returns data from that Prometheus.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaProducer
from sqlalchemy import create_engine, text

from dossier_client import CITIZEN_ID, submit_request
from harness import ROOT, Kafka, Postgres, free_port, wait_for
from monitoring_backend import LagCollector, Prometheus, Target, dashboard_queries
from motcua.dossier.v1 import dossier_pb2
from motcua.payment.v1 import payment_pb2, payment_pb2_grpc
from motcua_documents.devpki import DevPki
from motcua_payment.sandbox.client import SandboxClient
from suite import Suite, running_suite, transition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RELEASE = NAMESPACE = "motcua"
SERVICES = ("dossier", "notify", "payment", "audit")
# Seconds, not the production minutes: each alert's expression is the chart's own.
FAST_ALERTS = {
    "serviceDefaults": {
        "alerts": {
            "consumerLagThreshold": 40,  # above what a healthy burst leaves behind for a moment
            "consumerLagWindow": "30s",
            "outboxOldestPendingSeconds": 3,
            "deadLetterWindow": "10m",
            "pendingFor": {
                "grpcHighErrorRate": "10s",
                "consumerLagGrowing": "4s",
                "outboxStuck": "4s",
                "deadLetterQueueNotEmpty": "3s",
                "dossierPaymentRefused": "3s",
                "paymentCallbackRejectionsSpike": "3s",
                "auditTreeHeadStale": "10s",
                "auditVerificationFailed": "3s",
            },
        }
    }
}


def helm_binary() -> str:
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), "/root/go/bin/helm"):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("helm not found: `make tools` installs it", pytrace=False)


def chart_rules(work: Path, groups: dict[str, str]) -> dict[str, Any]:
    """The PrometheusRule groups `helm template` renders, with each service's consumer group."""
    chart = work / "helm"
    shutil.copytree(ROOT / "helm", chart, ignore=shutil.ignore_patterns("*.tgz", "Chart.lock"))
    helm = helm_binary()
    env = {**os.environ, "HELM": helm}
    subprocess.run(["bash", str(chart / "build-deps.sh")], env=env, check=True, timeout=120)
    values = work / "fast-alerts.yaml"
    values.write_text(yaml.safe_dump(FAST_ALERTS))
    sets = [f"services.{svc}.config.CONSUMER_GROUP={group}" for svc, group in groups.items()]
    out = subprocess.run(
        [helm, "template", RELEASE, str(chart / "motcua"), "--namespace", NAMESPACE]
        + ["--kube-version", "1.30.0"]
        + ["-f", str(chart / "motcua" / "values-dev.yaml"), "-f", str(values)]
        + [a for s in sets for a in ("--set", s)]
        + ["--api-versions", "monitoring.coreos.com/v1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(rules) == len(SERVICES), [d["metadata"]["name"] for d in rules]
    return {"groups": [g for r in rules for g in r["spec"]["groups"]]}


class Watch:
    """Prometheus's /api/v1/alerts, polled: the states each alert was seen in, in order."""

    def __init__(self, prometheus: Prometheus) -> None:
        self.prometheus = prometheus

    def until_firing(self, alert: str, *services: str, timeout: float = 120.0) -> list[str]:
        """Wait until ``alert`` fires for every one of ``services`` (watched together, so none
        is first looked at after it already fired); the states seen, for each in turn."""
        seen: dict[str, list[str]] = {s: [] for s in services}

        def firing() -> bool:
            for a in self.prometheus.alerts():
                labels = a["labels"]
                states = seen.get(labels.get("service", ""))
                if labels["alertname"] != alert or states is None:
                    continue
                if not states or states[-1] != a["state"]:
                    states.append(a["state"])
            return all("firing" in states for states in seen.values())

        wait_for(firing, timeout, 0.2, f"{alert} to fire for {services} (seen: {seen})")
        return [state for s in services for state in seen[s]]


def assert_pending_then_firing(states: list[str]) -> None:
    assert states[0] == "pending" and states[-1] == "firing", states


Monitored = tuple[Suite, Prometheus, Kafka]
OLDEST_PENDING = 'motcua_outbox_oldest_pending_seconds{job="motcua-dossier"}'


@pytest.fixture(scope="module")
def monitored(
    postgres: Postgres, signing_keys: tuple[bytes, Path], token: Any, dev_pki: DevPki
) -> Iterator[Monitored]:
    work = Path(tempfile.mkdtemp(prefix="motcua-prometheus-"))
    # The signed papers on, so their series (issued, signing, notify's fetches) exist too.
    (work / "notify-dossier.token").write_text(token("service", subject="notify"))
    dossier_port = free_port()
    papers = {
        "dossier": {"DOCUMENTS_KEYRING": str(dev_pki.keyring), "GRPC_PORT": str(dossier_port)},
        "notify": {
            "DOSSIER_GRPC_TARGET": f"127.0.0.1:{dossier_port}",
            "DOSSIER_TOKEN_FILE": str(work / "notify-dossier.token"),
        },
    }
    kafka = Kafka(state_dir=work / "kafka")
    kafka.start()
    collector = LagCollector(work / "otelcol", kafka.bootstrap)
    prometheus: Prometheus | None = None
    try:
        with running_suite(kafka, postgres, signing_keys, token, work, papers) as suite:
            groups = {
                name: proc.env[proc.prefix + "CONSUMER_GROUP"]
                for name, proc in suite.services.items()
            }
            collector.start()
            targets = [
                Target(
                    f"{RELEASE}-{name}", f"127.0.0.1:{proc.metrics_port}", {"namespace": NAMESPACE}
                )
                for name, proc in suite.services.items()
            ]
            targets.append(Target("otelcol", collector.address, {}))
            prometheus = Prometheus(work / "prometheus", targets, chart_rules(work, groups))
            prometheus.start()
            wait_for(
                lambda: (
                    set(prometheus.targets_up().values()) == {"up"}
                    and len(prometheus.targets_up()) == len(targets)
                ),
                60,
                0.5,
                "every target to be up",
            )
            yield suite, prometheus, kafka
    finally:
        if prometheus is not None:
            prometheus.stop()
        collector.stop()
        kafka.stop()
        shutil.rmtree(work, ignore_errors=True)


def submit(suite: Suite) -> dossier_pb2.Dossier:
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    return citizen.submit(submit_request("HT-001", f"prom-{uuid.uuid4()}")).dossier


def test_the_charts_rules_are_loaded_and_a_healthy_suite_fires_none(monitored: Monitored) -> None:
    suite, prometheus, _ = monitored
    assert {
        "MotcuaConsumerLagGrowing",
        "MotcuaOutboxStuck",
        "MotcuaDeadLetterQueueNotEmpty",
        "MotcuaAuditVerificationFailed",
    } <= prometheus.rule_names()
    fee_dossier_paid_and_returned(suite)
    # A forged gateway callback, so the rejection counter has a series for the dashboard.
    httpx.get(f"{payment_callback(suite)}/payment/sandbox/ipn?vnp_TxnRef=forged", timeout=10)
    wait_for(lambda: prometheus.query("motcua_dossiers_completed_total"), 30, 0.5, "a completion")
    firing = [a["labels"]["alertname"] for a in prometheus.alerts() if a["state"] == "firing"]
    assert not firing


def test_a_poison_record_fires_the_dead_letter_alert(monitored: Monitored) -> None:
    _, prometheus, kafka = monitored
    producer = KafkaProducer(bootstrap_servers=[kafka.bootstrap])
    try:
        producer.send("motcua.dossier.v1", key=b"STP-000000-0000", value=b"\x00not protobuf")
        producer.flush(30)
    finally:
        producer.close()
    states = Watch(prometheus).until_firing(
        "MotcuaDeadLetterQueueNotEmpty", "audit", "notify", "payment"
    )
    assert states == ["pending", "firing"] * 3, states


def test_notify_stopped_fires_the_lag_alert_from_the_brokers_view(monitored: Monitored) -> None:
    suite, prometheus, _ = monitored
    notify = suite.services["notify"]
    group = notify.env[notify.prefix + "CONSUMER_GROUP"]

    def quiet() -> bool:
        return not any(
            a["labels"]["alertname"] == "MotcuaConsumerLagGrowing" for a in prometheus.alerts()
        )

    wait_for(quiet, 120, 0.5, "no lag alert before the fault")
    notify.terminate()
    stop = threading.Event()

    def citizens() -> None:
        while not stop.is_set():
            submit(suite)
            stop.wait(0.3)

    feeder = threading.Thread(target=citizens, daemon=True)
    feeder.start()
    try:
        states = Watch(prometheus).until_firing("MotcuaConsumerLagGrowing", "notify", timeout=180)
        assert_pending_then_firing(states)
        # notify reports nothing while it is down: the lag came from the broker, per group.
        assert not prometheus.query('motcua_consumer_lag{job="motcua-notify"}')
        lag = f'{{__name__=~"kafka_consumer_group_lag(_ratio)?", group="{group}"}} > 0'
        assert prometheus.query(lag)
    finally:
        stop.set()
        feeder.join(30)
        notify.start()


def test_a_rewritten_audit_row_fires_the_verification_alert(monitored: Monitored) -> None:
    suite, prometheus, _ = monitored
    engine = create_engine(suite.urls["audit"])
    try:
        with engine.begin() as conn:
            idx, row = conn.execute(
                text("SELECT idx, entry FROM audit_entries ORDER BY idx LIMIT 1")
            ).one()
            forged = bytearray(row)
            forged[-20] ^= 0xFF
            conn.execute(
                text("UPDATE audit_entries SET entry = :e WHERE idx = :i"),
                {"e": bytes(forged), "i": idx},
            )
    finally:
        engine.dispose()
    states = Watch(prometheus).until_firing("MotcuaAuditVerificationFailed", "audit")
    assert_pending_then_firing(states)


def test_the_broker_stopped_fires_the_outbox_alert(monitored: Monitored) -> None:
    suite, prometheus, kafka = monitored
    kafka.stop()
    try:
        submit(suite)  # accepted: the event waits in the dossier service's outbox
        states = Watch(prometheus).until_firing("MotcuaOutboxStuck", "dossier")
        assert_pending_then_firing(states)
    finally:
        kafka.start()
    wait_for(
        lambda: (
            not prometheus.query('motcua_outbox_oldest_pending_seconds{job="motcua-dossier"} > 0')
        ),
        120,
        0.5,
        "the outbox to drain once the broker is back",
    )


def test_every_dashboard_query_returns_data(monitored: Monitored) -> None:
    _, prometheus, _ = monitored
    variables = {
        "$namespace": NAMESPACE,
        "$job": ".*",
        "$__rate_interval": "1m",
        "$__range": "15m",
    }
    empty = []
    for expr in dashboard_queries():
        query = re.sub(r"\$\w+", lambda m: variables[m.group(0)], expr)
        if not prometheus.query(query):
            empty.append(query)
    assert not empty, empty


def payment_callback(suite: Suite) -> str:
    port = suite.services["payment"].env["MOTCUA_PAYMENT_CALLBACK_PORT"]
    return f"http://127.0.0.1:{port}"


def fee_dossier_paid_and_returned(suite: Suite) -> None:
    """One dossier through intake, fee, payment and result: every counter gets a series."""
    citizen = suite.dossiers("citizen", citizen_id=CITIZEN_ID)
    officer = suite.dossiers("officer", agency="STP")
    d = citizen.submit(submit_request("HT-004", f"prom-fee-{uuid.uuid4()}")).dossier
    d = transition(officer, transition(officer, d, "receive"), "request_payment")
    with suite.channel("payment") as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)

        def pending() -> payment_pb2.Payment | None:
            listed = payments.ListPayments(
                payment_pb2.ListPaymentsRequest(dossier_code=d.code),
                metadata=citizen.metadata,
                timeout=10,
            ).payments
            return next((p for p in listed if p.redirect_url), None)

        payment = wait_for(pending, 60, 0.2, "the payment request")
        with SandboxClient(suite.sandbox.url) as gateway:
            gateway.pay(payment.redirect_url)
    wait_for(
        lambda: officer.get(d.code).status == dossier_pb2.DOSSIER_STATUS_PROCESSING,
        60,
        0.2,
        "the dossier to leave payment required",
    )
    transition(officer, transition(officer, officer.get(d.code), "approve"), "return_result")
