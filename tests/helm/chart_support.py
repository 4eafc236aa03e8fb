"""Helpers of the chart tests: run helm on the packaged copy of helm/ and pick rendered objects.

tests/helm is not a package (the repository's own helm/ directory would shadow one named like
it), so conftest.py registers this module as `chart_support` before the test modules import it.
The `helm` and `umbrella` fixtures are in conftest.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM_SRC = ROOT / "helm"
SERVICES = ("dossier", "notify", "payment", "audit")
KUBE_VERSION = "1.30.0"
RELEASE = "motcua"
NAMESPACE = "motcua"
MONITORING_API = "monitoring.coreos.com/v1"
# Renders stand for a cluster with Strimzi installed: prod values refuse to install without it.
STRIMZI_APIS = ("kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2")
DEV = "values-dev.yaml"
PROD = "values-prod.yaml"
OPENSHIFT = "values-openshift.yaml"
# HTTP endpoints outside systems call: payment's gateway callbacks, notify's delivery receipts.
HTTP_PORTS = {"payment": {"http-callback": 8080}, "notify": {"http-receipts": 8080}}

Doc = dict[str, Any]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=120)


def template_args(
    umbrella: Path,
    values: tuple[str, ...],
    sets: tuple[str, ...],
    api: tuple[str, ...],
    strimzi: bool = True,
) -> list[str]:
    args = [
        "template",
        RELEASE,
        str(umbrella),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ]
    for v in values:
        args += ["-f", str(umbrella / v)]
    for s in sets:
        args += ["--set", s]
    for a in (*(STRIMZI_APIS if strimzi else ()), *api):
        args += ["--api-versions", a]
    return args


_renders: dict[tuple[Any, ...], list[Doc]] = {}


def render(
    helm: str,
    umbrella: Path,
    *values: str,
    sets: tuple[str, ...] = (),
    api: tuple[str, ...] = (),
) -> list[Doc]:
    """`helm template` with these values files (relative to the chart, or absolute)."""
    key = (str(umbrella), values, sets, api)
    if key not in _renders:
        result = run_helm(helm, *template_args(umbrella, values, sets, api))
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        _renders[key] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return _renders[key]


def refusal(
    helm: str,
    umbrella: Path,
    *values: str,
    sets: tuple[str, ...] = (),
    lint: bool = False,
) -> str:
    """The output of `helm template` refusing these values, and with lint=True of `helm lint`
    too. Helm's lint mode only logs a template's `fail` (even with --strict), so refusals of
    the templates (motcua-lib/templates/_validate.tpl) show in template and install, and lint
    refuses only what values.schema.json refuses."""
    args = [a for s in sets for a in ("--set", s)]
    files = [a for v in values for a in ("-f", str(umbrella / v))]
    outputs = []
    commands = [["template", RELEASE, str(umbrella), "--kube-version", KUBE_VERSION]]
    if lint:
        commands.append(["lint", str(umbrella), "--kube-version", KUBE_VERSION])
    for command in commands:
        result = run_helm(helm, *command, *files, *args)
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"helm {command[0]} accepted {values} {sets}:\n{output}"
        outputs.append(output)
    return "\n".join(outputs)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def of_service(docs: list[Doc], svc: str) -> list[Doc]:
    return [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == svc]


def one(docs: list[Doc], kind: str, svc: str, component: str | None = None) -> Doc:
    found = [
        d
        for d in of_service(of_kind(docs, kind), svc)
        if component is None
        or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} for {svc}, found {len(found)}"
    return found[0]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "Job"):
            yield name, d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield name, d["spec"]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def container(docs: list[Doc], kind: str, svc: str, component: str | None = None) -> Doc:
    doc = one(docs, kind, svc, component)
    spec = doc["spec"] if kind == "Pod" else doc["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    return c


def write_values(tmp_path: Path, name: str, values: dict[str, Any]) -> str:
    """A values file in tmp_path; returns its absolute path (for render/refusal)."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)
