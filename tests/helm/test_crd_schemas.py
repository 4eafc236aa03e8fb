"""Custom resources against their projects' published CRDs (issue 16, deliverable 9).

helm/tools/validate_rendered.py checks ServiceMonitor, PrometheusRule, KafkaTopic and
ScaledObject against the CRDs vendored in helm/tools/crds/ (prometheus-operator and KEDA from
their Go modules, Strimzi's generated from its released jars), with the API server's
structural-schema rules, and reports every error of every object with its path. The found
items: `spec.partitons`, `endpoints[0].intervall`, interval `thirty` and an unknown field on an
alert rule all passed the hand-written shapes; only the first error per object was reported;
`--kube-version 1.38` ended in a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from chart_support import MONITORING_API, PROD, ROOT, render

TOOLS = ROOT / "helm" / "tools"
CRDS = TOOLS / "crds"
SCRIPT = TOOLS / "validate_rendered.py"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


validator = _load("motcua_helm_validate_rendered_crds", SCRIPT)
vendor = _load("motcua_helm_vendor_crds", TOOLS / "vendor_crds.py")

VERSIONS = ("1.30", "1.37")


def errors(doc: dict[str, Any], version: str = "1.30") -> list[str]:
    return [p.message for p in validator.validate_documents([doc], (version,))]


def topic(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "motcua.dossier.v1", "labels": {"strimzi.io/cluster": "kafka"}},
        "spec": {"partitions": 12, "replicas": 3, **spec},
    }


def monitor(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "motcua-dossier", "namespace": "motcua"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "dossier"}},
            "endpoints": list(endpoints) or [{"port": "metrics", "interval": "30s"}],
        },
    }


def rule(**fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "motcua-dossier"},
        "spec": {
            "groups": [
                {
                    "name": "motcua-dossier",
                    "rules": [
                        {
                            "alert": "MotcuaGrpcHighErrorRate",
                            "expr": "up == 0",
                            "for": "5m",
                            "labels": {"severity": "warning"},
                            **fields,
                        }
                    ],
                }
            ]
        },
    }


def scaled_object(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "motcua-notify"},
        "spec": {
            "scaleTargetRef": {"name": "motcua-notify"},
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": "kafka:9092",
                        "consumerGroup": "motcua-notify",
                        "topic": "motcua.dossier.v1",
                        "lagThreshold": "500",
                    },
                }
            ],
            **spec,
        },
    }


# --------------------------------------------------------------------------------------------
# The found items
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2"])
def test_a_misspelt_topic_field_is_refused(api: str) -> None:
    doc = topic()
    doc["apiVersion"] = api
    doc["spec"]["partitons"] = doc["spec"].pop("partitions")
    assert errors(doc) == ["spec.partitons: unknown field 'partitons'"]


def test_a_misspelt_endpoint_field_is_refused() -> None:
    found = errors(monitor({"port": "metrics", "intervall": "30s"}))
    assert found == ["spec.endpoints[0].intervall: unknown field 'intervall'"]


def test_an_interval_that_is_no_duration_is_refused() -> None:
    (found,) = errors(monitor({"port": "metrics", "interval": "thirty"}))
    assert found.startswith("spec.endpoints[0].interval: 'thirty' does not match")


def test_an_unknown_field_on_an_alert_rule_is_refused() -> None:
    found = errors(rule(severity="critical"))
    assert found == ["spec.groups[0].rules[0].severity: unknown field 'severity'"]


def test_every_error_of_an_object_is_reported_with_its_path() -> None:
    doc = monitor(
        {"port": "metrics", "intervall": "30s"},
        {"port": "metrics", "interval": "thirty", "scrapeTimeout": "ten"},
    )
    doc["spec"]["selectorr"] = {}
    found = [p for p in validator.validate_documents([doc], VERSIONS)]
    for version in VERSIONS:
        paths = [p.message.split(":")[0] for p in found if p.version == version]
        assert paths == [
            "spec.endpoints[0].intervall",
            "spec.endpoints[1].interval",
            "spec.endpoints[1].scrapeTimeout",
            "spec.selectorr",
        ], version
    assert all(
        p.obj == "monitoring.coreos.com/v1 ServiceMonitor/motcua-dossier (namespace motcua)"
        for p in found
    )


def test_every_error_of_a_core_object_is_reported() -> None:
    """kubernetes-validate's own validate() stops at the first error."""
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "motcua-dossier"},
        "spec": {
            "replicas": "two",
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "containers": [{"name": "app", "image": "x", "imagePullPolicy": 1}],
                    "terminationGracePeriodSeconds": "soon",
                    "nodeSelecter": {},
                },
            },
        },
    }
    paths = [m.split(":")[0] for m in errors(doc)]
    assert paths == [
        "spec.replicas",
        "spec.template.spec.containers[0].imagePullPolicy",
        "spec.template.spec.nodeSelecter",
        "spec.template.spec.terminationGracePeriodSeconds",
    ]


def test_the_command_line_prints_every_error_with_the_object_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    alert = rule(severity="critical")
    bad.write_text(
        yaml.safe_dump_all(
            [topic(partitons=3), monitor({"port": "metrics", "intervall": "1m"}), alert]
        )
    )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--kube-version", "1.33", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for expected in (
        "kafka.strimzi.io/v1 KafkaTopic/motcua.dossier.v1: Kubernetes 1.33: spec.partitons: "
        "unknown field 'partitons'",
        "monitoring.coreos.com/v1 ServiceMonitor/motcua-dossier (namespace motcua): Kubernetes "
        "1.33: spec.endpoints[0].intervall: unknown field 'intervall'",
        "monitoring.coreos.com/v1 PrometheusRule/motcua-dossier: Kubernetes 1.33: "
        "spec.groups[0].rules[0].severity: unknown field 'severity'",
    ):
        assert any(line.startswith("ERROR ") and expected in line for line in lines), expected
    assert lines[-1] == "3 problem(s) in 3 objects"


@pytest.mark.parametrize("version", ["1.38", "1.24", "1.3", "latest"])
def test_an_unknown_kube_version_is_one_clear_line_and_exit_2(tmp_path: Path, version: str) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(topic()))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--kube-version", version, str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert f"Kubernetes version '{version}' is not supported" in line
    assert "has schemas for 1.25 to 1.37" in line


def test_helm_check_refuses_an_unknown_kube_version_up_front(helm: str, helm_copy: Path) -> None:
    result = subprocess.run(
        ["bash", str(helm_copy / "check.sh")],
        env={
            **os.environ,
            "HELM": helm,
            "PYTHON": sys.executable,
            "MOTCUA_ROOT": str(ROOT),
            "HELM_CHECK_PYTEST": "0",
            "HELM_CHECK_KUBE_VERSIONS": "1.30 1.38",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Kubernetes 1.38 is not supported" in result.stderr
    assert "=== helm-check" not in result.stdout  # nothing ran


def test_known_versions_are_accepted_in_any_spelling() -> None:
    assert validator.normalize_version("v1.30.4") == "1.30"
    assert validator.supported_versions()[-1] == "1.37"
    assert set(validator.DEFAULT_VERSIONS) <= set(validator.supported_versions())


# --------------------------------------------------------------------------------------------
# Kubernetes' structural-schema rules
# --------------------------------------------------------------------------------------------


def test_preserve_unknown_fields_lets_any_topic_config_through() -> None:
    assert errors(topic(config={"retention.ms": 604800000, "any.broker.setting": "x"})) == []


def test_int_or_string_takes_both_and_nothing_else() -> None:
    assert errors(monitor({"targetPort": 9100}, {"targetPort": "metrics"})) == []
    (found,) = errors(monitor({"targetPort": True}))
    assert found.startswith("spec.endpoints[0].targetPort: True is not valid under any")


def test_a_map_list_refuses_two_entries_with_one_key() -> None:
    doc = rule()
    doc["spec"]["groups"].append(doc["spec"]["groups"][0])
    assert errors(doc) == [
        "spec.groups[1]: duplicate: an entry with the same name as entry 0 "
        "(x-kubernetes-list-type: map)"
    ]


def test_metadata_is_kubernetes_object_meta() -> None:
    doc = scaled_object()
    doc["metadata"]["lables"] = {"a": "b"}
    assert errors(doc) == ["metadata.lables: unknown field 'lables'"]


def test_the_chart_requires_a_name_spec_and_the_strimzi_cluster_label() -> None:
    doc = topic()
    del doc["metadata"]["labels"]
    assert errors(doc) == ["metadata: the chart requires it: 'labels' is a required property"]
    assert errors({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {}}) == [
        "<root>: 'spec' is a required property",
        "<root>: the chart requires it: 'spec' is a required property",
        "metadata: the chart requires it: 'name' is a required property",
    ]


def test_keda_scaled_objects_follow_kedas_schema() -> None:
    assert errors(scaled_object(minReplicaCount=2, maxReplicaCount=6)) == []
    doc = scaled_object(maxReplicaCount=0, pollingIntervall=30)
    doc["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 500
    assert errors(doc) == [
        "spec.maxReplicaCount: 0 is less than the minimum of 1",
        "spec.pollingIntervall: unknown field 'pollingIntervall'",
        "spec.triggers[0].metadata.lagThreshold: 500 is not of type 'string'",
    ]


def test_only_the_api_versions_the_chart_renders_are_allowed() -> None:
    old = topic()
    old["apiVersion"] = "kafka.strimzi.io/v1beta1"  # still served by Strimzi, never rendered
    (found,) = errors(old)
    assert found.startswith("no schema for kafka.strimzi.io/v1beta1 KafkaTopic")


# --------------------------------------------------------------------------------------------
# The vendored CRDs
# --------------------------------------------------------------------------------------------


def test_every_vendored_crd_is_the_named_source_unchanged() -> None:
    manifest = json.loads((CRDS / "sources.json").read_text())
    assert set(manifest) == {s.file for s in vendor.SOURCES}
    assert {p.name for p in CRDS.glob("*.yaml")} == set(manifest)
    for name, source in manifest.items():
        data = (CRDS / name).read_bytes()
        assert data.startswith(vendor.header(vendor.Source(**source))), name
        assert hashlib.sha256(vendor.strip_header(data)).hexdigest() == source["sha256"], name
        assert source["version"] and source["artifact"] and source["path"], name
    readme = (CRDS / "README.md").read_text()
    for source in manifest.values():
        assert source["version"] in readme and source["sha256"] in readme, source["file"]


def test_the_allow_list_points_at_the_matching_crd_versions() -> None:
    for (api, kind), crd in validator.ALLOWED_CRDS.items():
        doc = yaml.safe_load((CRDS / crd.file).read_text())
        group, version = api.split("/")
        assert (doc["spec"]["group"], doc["spec"]["names"]["kind"]) == (group, kind)
        served = {v["name"]: v["served"] for v in doc["spec"]["versions"]}
        assert served.get(version) is True and crd.version == version, api
        validator.crd_schema(crd.file, crd.version)  # every pattern compiles in Python


def test_go_regular_expressions_keep_their_meaning() -> None:
    """prometheus-operator writes ^(?i)(abort|warn)?$, which Python refuses as it stands."""
    assert validator.go_regex("^(?i)(abort|warn)?$") == "(?i)^(abort|warn)?$"
    doc = rule()
    doc["spec"]["groups"][0]["partial_response_strategy"] = "WARN"
    assert errors(doc) == []
    doc["spec"]["groups"][0]["partial_response_strategy"] = "maybe"
    (found,) = errors(doc)
    assert found.startswith("spec.groups[0].partial_response_strategy: 'maybe' does not match")


# --------------------------------------------------------------------------------------------
# The chart's own objects
# --------------------------------------------------------------------------------------------


def test_the_charts_custom_resources_pass_their_published_crds(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, PROD, api=(MONITORING_API,))
    kinds = {d["kind"] for d in docs}
    assert {"ServiceMonitor", "PrometheusRule", "KafkaTopic"} <= kinds
    custom = [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule", "KafkaTopic")]
    assert [str(p) for p in validator.validate_documents(custom, VERSIONS)] == []
    v1beta2 = render(
        helm, umbrella, PROD, sets=("kafkaTopics.apiVersion=kafka.strimzi.io/v1beta2",)
    )
    topics = [d for d in v1beta2 if d["kind"] == "KafkaTopic"]
    assert topics and [str(p) for p in validator.validate_documents(topics, VERSIONS)] == []
