"""Lag-based autoscaling with KEDA (issue 16, deliverable 11).

autoscaling.keda.enabled renders a KEDA ScaledObject for a service instead of its CPU HPA:
one `kafka` trigger per topic the service consumes (from the topic registry) on its consumer
group's lag, and a `cpu` trigger. Two autoscalers on one Deployment fight, so the chart never
renders both, and refuses the combinations that would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from chart_support import (
    DEV,
    PROD,
    ROOT,
    SERVICES,
    Doc,
    of_kind,
    of_service,
    one,
    refusal,
    render,
)

KEDA = "serviceDefaults.autoscaling.keda.enabled=true"
PROD_KEDA = (
    KEDA,
    "serviceDefaults.autoscaling.keda.authenticationRef.name=motcua-keda-kafka",
    "services.notify.autoscaling.consumerLag.enabled=false",  # values-prod turns it on
)


def _load_validator() -> ModuleType:
    path = ROOT / "helm" / "tools" / "validate_rendered.py"
    spec = importlib.util.spec_from_file_location("motcua_helm_validate_rendered_keda", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


validator = _load_validator()


def consumed_topics(svc: str) -> list[str]:
    """What the registry says the service consumes, read here independently of the chart."""
    registry = json.loads((ROOT / "helm" / "motcua" / "topics.json").read_text())
    return [
        t["name"]
        for t in registry["topics"]
        if svc in t.get("consumers_of_all_types", [])
        or any(svc in e.get("consumers", []) for e in t["events"])
    ]


def kafka_triggers(so: Doc) -> list[Doc]:
    return [t for t in so["spec"]["triggers"] if t["type"] == "kafka"]


def test_off_by_default(helm: str, umbrella: Path) -> None:
    for values in (DEV, PROD):
        docs = render(helm, umbrella, values)
        assert not of_kind(docs, "ScaledObject")
        assert len(of_kind(docs, "HorizontalPodAutoscaler")) == len(SERVICES)


@pytest.mark.parametrize("svc", SERVICES)
def test_the_scaled_object_replaces_the_services_hpa(helm: str, umbrella: Path, svc: str) -> None:
    docs = render(helm, umbrella, DEV, sets=(f"services.{svc}.autoscaling.keda.enabled=true",))
    so = one(docs, "ScaledObject", svc)
    deployment = one(docs, "Deployment", svc)
    assert not of_service(of_kind(docs, "HorizontalPodAutoscaler"), svc)  # never both
    others = [o for o in SERVICES if o != svc]
    assert all(one(docs, "HorizontalPodAutoscaler", o) for o in others)
    assert not of_service(of_kind(docs, "ScaledObject"), others[0])
    assert so["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"]  # KEDA's HPA owns the count


@pytest.mark.parametrize("svc", SERVICES)
def test_one_lag_trigger_per_consumed_topic(helm: str, umbrella: Path, svc: str) -> None:
    docs = render(helm, umbrella, DEV, sets=(KEDA,))
    so = one(docs, "ScaledObject", svc)
    triggers = kafka_triggers(so)
    assert [t["metadata"]["topic"] for t in triggers] == consumed_topics(svc) != []
    for t in triggers:
        assert t["metadata"] == {
            "bootstrapServers": "kafka.motcua-dev.svc:9092",  # values-dev.yaml
            "consumerGroup": f"motcua-{svc}",  # the registry's consumer_group
            "topic": t["metadata"]["topic"],
            "lagThreshold": "500",
            "offsetResetPolicy": "earliest",  # as motcua_kit.kafka.make_consumer
        }
        assert "authenticationRef" not in t  # PLAINTEXT in dev
    (cpu,) = [t for t in so["spec"]["triggers"] if t["type"] == "cpu"]
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}


def test_bounds_and_behavior_come_from_the_autoscaling_values(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        PROD,
        sets=(
            *PROD_KEDA,
            "services.notify.autoscaling.keda.lagThreshold=200",
            "services.notify.autoscaling.keda.pollingInterval=15",
        ),
    )
    so = one(docs, "ScaledObject", "notify")
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 6)  # values-prod
    assert so["spec"]["pollingInterval"] == 15
    assert {t["metadata"]["lagThreshold"] for t in kafka_triggers(so)} == {"200"}
    assert so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 300}
    }


def test_sasl_uses_the_trigger_authentication(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, PROD, sets=PROD_KEDA)
    for svc in SERVICES:
        for t in kafka_triggers(one(docs, "ScaledObject", svc)):
            assert t["metadata"]["tls"] == "enable"
            assert t["metadata"]["sasl"] == "scram_sha512"  # SCRAM-SHA-512 in values-prod
            assert t["authenticationRef"] == {
                "name": "motcua-keda-kafka",
                "kind": "TriggerAuthentication",
            }


def test_sasl_without_a_trigger_authentication_is_refused(helm: str, umbrella: Path) -> None:
    output = refusal(
        helm, umbrella, PROD, sets=(KEDA, "services.notify.autoscaling.consumerLag.enabled=false")
    )
    assert "autoscaling.keda.authenticationRef.name is required" in output
    assert "SASL_SSL" in output


def test_the_consumer_group_follows_the_services_setting(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, DEV, sets=(KEDA, "services.audit.config.CONSUMER_GROUP=audit-2"))
    assert {
        t["metadata"]["consumerGroup"] for t in kafka_triggers(one(docs, "ScaledObject", "audit"))
    } == {"audit-2"}


def test_the_cpu_trigger_can_be_left_out(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, DEV, sets=(KEDA, "serviceDefaults.autoscaling.keda.cpu=false"))
    for svc in SERVICES:
        assert {t["type"] for t in one(docs, "ScaledObject", svc)["spec"]["triggers"]} == {"kafka"}


@pytest.mark.parametrize(
    ("values", "sets"),
    [
        (DEV, (KEDA,)),
        (PROD, PROD_KEDA),
        (DEV, (KEDA, "serviceDefaults.autoscaling.keda.cpu=false")),
    ],
)
def test_the_scaled_objects_pass_kedas_published_crd(
    helm: str, umbrella: Path, values: str, sets: tuple[str, ...]
) -> None:
    docs = render(helm, umbrella, values, sets=sets)
    objects = of_kind(docs, "ScaledObject")
    assert len(objects) == len(SERVICES)
    assert [str(p) for p in validator.validate_documents(objects, ("1.30", "1.37"))] == []


# --------------------------------------------------------------------------------------------
# Refusals: never two autoscalers, never a ScaledObject that cannot work
# --------------------------------------------------------------------------------------------


def test_keda_without_autoscaling_is_refused(helm: str, umbrella: Path) -> None:
    """The Deployment would keep replicaCount, which KEDA's HPA then fights on every upgrade."""
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.payment.autoscaling.keda.enabled=true",
            "services.payment.autoscaling.enabled=false",
        ),
    )
    assert "services.payment.autoscaling.keda.enabled is true" in output
    assert "services.payment.autoscaling.enabled is false" in output


def test_keda_with_the_hpas_lag_metric_is_refused(helm: str, umbrella: Path) -> None:
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=(KEDA, "services.dossier.autoscaling.consumerLag.enabled=true"),
    )
    assert "services.dossier.autoscaling.consumerLag.enabled" in output


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        (
            "serviceDefaults.autoscaling.keda.lagThreshold=0",
            "/serviceDefaults/autoscaling/keda/lagThreshold",
        ),
        ("services.audit.autoscaling.keda.lagTreshold=5", "/services/audit/autoscaling/keda"),
        (
            "serviceDefaults.autoscaling.keda.authenticationRef.kind=Secret",
            "authenticationRef/kind",
        ),
        ("serviceDefaults.autoscaling.keda=null", "/serviceDefaults/autoscaling"),
    ],
)
def test_the_schema_refuses_bad_keda_values(
    helm: str, umbrella: Path, setting: str, where: str
) -> None:
    assert where in refusal(helm, umbrella, DEV, sets=(setting,), lint=True)


def test_the_readme_documents_keda() -> None:
    readme = (ROOT / "helm" / "README.md").read_text()
    section = readme.split("## Lag-based autoscaling with KEDA", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "autoscaling.keda.enabled",
        "lagThreshold",
        "pollingInterval",
        "authenticationRef",
        "TriggerAuthentication",
        "partition",
        "consumerLag.enabled",
    ):
        assert needed in section, needed
