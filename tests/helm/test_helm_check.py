"""`make helm-check` (helm/check.sh) and its validator (helm/tools/validate_rendered.py).

The acceptance point: the check passes on the shipped values and FAILS when a rendered object is
broken. The end-to-end tests run helm/check.sh on a copy of helm/ (so nothing is written into the
working tree) without its own pytest step, for two Kubernetes versions to stay fast; CI runs the
full range through `make helm-check`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_validator() -> ModuleType:
    path = ROOT / "helm" / "tools" / "validate_rendered.py"
    spec = importlib.util.spec_from_file_location("motcua_helm_validate_rendered", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


validator = load_validator()


def deployment(**spec_overrides: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "containers": [{"name": "app", "image": "motcua/dossier:0.1.0"}],
        **spec_overrides,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "motcua-dossier", "namespace": "motcua"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": pod},
        },
    }


def problems(*docs: Any, versions: tuple[str, ...] = ("1.30", "1.37")) -> list[str]:
    return [str(p) for p in validator.validate_documents(docs, versions)]


# --------------------------------------------------------------------------------------------
# The validator
# --------------------------------------------------------------------------------------------


def test_a_valid_object_passes_for_every_version() -> None:
    assert problems(deployment(), versions=validator.DEFAULT_VERSIONS) == []
    assert tuple(f"1.{m}" for m in range(30, 38)) == validator.DEFAULT_VERSIONS


def test_an_unknown_field_fails_strictly() -> None:
    found = problems(deployment(affinity={"nodeAfinity": {}}))
    assert len(found) == 2  # once per version
    assert "spec.template.spec.affinity" in found[0] and "nodeAfinity" in found[0]
    assert "apps/v1 Deployment/motcua-dossier (namespace motcua)" in found[0]


def test_a_wrong_type_fails() -> None:
    doc = deployment()
    doc["spec"]["replicas"] = "two"
    (first, _) = problems(doc)
    assert "spec.replicas" in first


def test_an_unknown_kind_fails_instead_of_warning() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    found = problems(doc)
    assert found and "no schema for example.com/v1 Widget" in found[0]


@pytest.mark.parametrize(
    ("api_version", "kind", "spec"),
    [
        ("policy/v1beta1", "PodDisruptionBudget", {"maxUnavailable": 1}),
        ("autoscaling/v2beta2", "HorizontalPodAutoscaler", {"maxReplicas": 2}),
    ],
)
def test_an_api_removed_before_the_target_version_fails(
    api_version: str, kind: str, spec: dict[str, Any]
) -> None:
    doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    assert problems(doc, versions=("1.30",))


def test_allowed_crds_pass_but_only_at_their_api_version_and_in_shape() -> None:
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "m"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "http"}]},
    }
    assert problems(monitor) == []
    assert problems({**monitor, "apiVersion": "monitoring.coreos.com/v1beta1"})
    assert problems({**monitor, "spec": {"selector": {"matchLabels": {"a": "b"}}}})
    rule: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]},
    }
    assert problems(rule) == []
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert problems(rule)
    topic: dict[str, Any] = {
        "kind": "KafkaTopic",
        "metadata": {"name": "t", "labels": {"strimzi.io/cluster": "c"}},
        "spec": {"partitions": 3, "replicas": 3},
    }
    for api in ("kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2"):
        assert problems({**topic, "apiVersion": api}) == [], api
        assert problems({**topic, "apiVersion": api, "spec": {"partitions": 0, "replicas": 3}})
    assert problems({**topic, "apiVersion": "kafka.strimzi.io/v1alpha1"})
    assert {k for _, k in validator.ALLOWED_CRDS} == {
        "ServiceMonitor",
        "PrometheusRule",
        "KafkaTopic",
        "ScaledObject",
    }


def test_an_object_rendered_twice_fails() -> None:
    found = problems(deployment(), deployment())
    assert any("rendered twice" in p for p in found)


def test_the_command_line_exits_1_and_names_the_problem(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump_all([deployment()]))
    bad.write_text(yaml.safe_dump_all([deployment(terminationGracePeriodSeconds="soon")]))
    script = ROOT / "helm" / "tools" / "validate_rendered.py"
    ok = subprocess.run(
        [sys.executable, str(script), "--kube-version", "1.33", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run(
        [sys.executable, str(script), "--kube-version", "1.33", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1
    assert "spec.template.spec.terminationGracePeriodSeconds" in failed.stderr
    assert "'soon' is not of type 'integer'" in failed.stderr


# --------------------------------------------------------------------------------------------
# helm/check.sh end to end
# --------------------------------------------------------------------------------------------


def run_check(helm: str, helm_copy: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(helm_copy / "check.sh")],
        env={
            **os.environ,
            "HELM": helm,
            "PYTHON": sys.executable,
            "MOTCUA_ROOT": str(ROOT),
            "HELM_CHECK_PYTEST": "0",
            "HELM_CHECK_KUBE_VERSIONS": "1.30 1.37",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )


def test_helm_check_passes_on_the_shipped_charts(helm: str, helm_copy: Path) -> None:
    result = run_check(helm, helm_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "helm-check: all checks passed" in result.stdout
    # Every stage ran: lint, template + validation per version, yamllint.
    assert "valid for Kubernetes 1.30" in result.stdout
    assert "valid for Kubernetes 1.37" in result.stdout
    assert "=== helm-check: yamllint ===" in result.stdout


def test_helm_check_fails_when_a_rendered_object_is_broken(
    helm: str, helm_copy: Path, tmp_path: Path
) -> None:
    # values.schema.json accepts any object for affinity and any EnvVar entry in extraEnv, so
    # lint and template pass; only the Kubernetes schema knows these are wrong.
    broken = tmp_path / "values-broken.yaml"
    broken.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "dossier": {"affinity": {"nodeAfinity": {}}},
                    "notify": {"extraEnv": [{"name": "MOTCUA_NOTIFY_X", "valueFrom": "oops"}]},
                }
            }
        )
    )
    values = f"{helm_copy / 'motcua' / 'values-dev.yaml'},{broken}"
    result = run_check(helm, helm_copy, HELM_CHECK_VALUES=values)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "FAILED: kubernetes-validate 1.30" in output
    assert "FAILED: kubernetes-validate 1.37" in output
    assert "apps/v1 Deployment/motcua-dossier" in output and "nodeAfinity" in output
    assert "apps/v1 Deployment/motcua-notify" in output and "valueFrom" in output
    assert "FAILED: lint" not in output  # the breakage is invisible to helm itself


def test_helm_check_fails_on_values_that_helm_refuses(
    helm: str, helm_copy: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "values-wrong-type.yaml"
    broken.write_text("services:\n  dossier:\n    replicaCount: two\n")
    values = f"{helm_copy / 'motcua' / 'values-dev.yaml'},{broken}"
    result = run_check(helm, helm_copy, HELM_CHECK_VALUES=values, HELM_CHECK_KUBE_VERSIONS="1.30")
    assert result.returncode == 1
    assert "FAILED: lint" in result.stderr and "FAILED: helm template" in result.stderr


def test_helm_check_fails_on_a_yamllint_error(helm: str, helm_copy: Path, tmp_path: Path) -> None:
    # Helm takes the last of two equal keys without a word; yamllint does not.
    broken = tmp_path / "values-duplicate-key.yaml"
    broken.write_text("services:\n  dossier:\n    replicaCount: 1\n    replicaCount: 2\n")
    values = f"{helm_copy / 'motcua' / 'values-dev.yaml'},{broken}"
    result = run_check(helm, helm_copy, HELM_CHECK_VALUES=values, HELM_CHECK_KUBE_VERSIONS="1.30")
    assert result.returncode == 1
    assert "key-duplicates" in result.stdout
    assert "FAILED: yamllint" in result.stderr
