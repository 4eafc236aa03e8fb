#!/usr/bin/env python3
"""Strict schema validation of `helm template` output for a range of Kubernetes versions.

Used by helm/check.sh (`make helm-check`). The kubernetes-validate command line only warns,
and exits 0, on a kind or apiVersion it has no schema for. That would let a typo in `kind`, a
CRD nobody installs, or an API removed from the target version (policy/v1beta1,
autoscaling/v2beta2) through. This module calls the package's Python API instead and treats a
missing schema as an error, except for the custom resources in ALLOWED_CRDS. Those get a small
structural check of the fields the charts rely on. Strict schemas also refuse unknown fields,
so a misspelt key in a values block that the chart copies verbatim (affinity, tolerations,
extraEnv, ...) fails here even though values.schema.json lets it through.

    python helm/tools/validate_rendered.py rendered.yaml [...] [--kube-version 1.30 ...]

Exit status 0 when every object is valid for every version, 1 otherwise (each problem printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

# Kubernetes releases the charts support and check. kubernetes-validate 1.37.0 bundles 1.25-1.37.
DEFAULT_VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_NAMED = {
    "type": "object",
    "required": ["metadata", "spec"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}},
        }
    },
}


def _crd(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    schema = json.loads(json.dumps(_NAMED))
    schema["properties"]["spec"] = spec
    schema["properties"]["metadata"]["properties"].update(metadata)
    return schema


# Custom resources the charts may render: (apiVersion, kind) -> the structure the charts rely on.
# Not the operators' full schemas (those are not packaged anywhere reachable); enough to catch an
# empty or misshapen object. Any other kind without a Kubernetes schema fails.
ALLOWED_CRDS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "minProperties": 1},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "anyOf": [{"required": ["port"]}, {"required": ["targetPort"]}],
                    },
                },
            },
        }
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _crd(
        {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_]\\w*$"},
                                        "record": {"type": "string", "minLength": 1},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                        "labels": _STRING_MAP,
                                        "annotations": _STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        }
    ),
    # Strimzi serves the same KafkaTopic spec at v1 (0.49 and later, the only version from 1.0)
    # and at v1beta2 (older operators); the chart renders either (kafkaTopics.apiVersion).
    **{
        (api, "KafkaTopic"): _crd(
            {
                "type": "object",
                "required": ["partitions", "replicas"],
                "properties": {
                    "topicName": {"type": "string", "minLength": 1},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {"type": "object"},
                },
            },
            labels={"type": "object", "required": ["strimzi.io/cluster"]},
        )
        for api in ("kafka.strimzi.io/v1", "kafka.strimzi.io/v1beta2")
    },
    ("keda.sh/v1alpha1", "ScaledObject"): _crd(
        {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "required": ["type"]},
                },
            },
        }
    ),
}


@dataclass(frozen=True)
class Problem:
    """One object that is not valid for one Kubernetes version."""

    source: str
    obj: str
    version: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.obj}: Kubernetes {self.version}: {self.message}"


def _meta(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, dict) else {}


def describe(doc: Any) -> str:
    """Kind/name (namespace) of a rendered object, as far as it has them."""
    if not isinstance(doc, dict):
        return f"<not an object: {type(doc).__name__}>"
    meta = _meta(doc)
    ns = f" (namespace {meta['namespace']})" if meta.get("namespace") else ""
    return f"{doc.get('apiVersion', '?')} {doc.get('kind', '?')}/{meta.get('name', '?')}{ns}"


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<root>"


def validate_object(doc: Any, version: str) -> list[str]:
    """Problems of one object against one Kubernetes version's strict schema (empty: valid)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return ["not a Kubernetes object (no kind)"]
    if not isinstance(doc.get("apiVersion"), str):
        return ["no apiVersion"]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{_path(e)}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        crd = ALLOWED_CRDS.get((doc["apiVersion"], doc["kind"]))
        if crd is None:
            allowed = ", ".join(f"{a} {k}" for a, k in sorted(ALLOWED_CRDS))
            return [
                f"no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}: a "
                f"typo, an API removed in that version, or a CRD outside the allow-list "
                f"({allowed})"
            ]
        validator = jsonschema.Draft202012Validator(crd)
        return [f"{_path(e)}: {e.message}" for e in validator.iter_errors(doc)]
    return []


def validate_documents(
    docs: Iterable[Any], versions: Sequence[str] = DEFAULT_VERSIONS, source: str = "-"
) -> list[Problem]:
    """Every problem of every object for every version; identical objects are checked once."""
    problems: list[Problem] = []
    seen_ids: dict[tuple[str, str, str, str], str] = {}
    for doc in docs:
        if doc is None:
            continue
        name = describe(doc)
        if isinstance(doc, dict):
            meta = _meta(doc)
            group = str(doc.get("apiVersion", "")).rpartition("/")[0]
            key = (group, str(doc.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
            if key in seen_ids:
                problems.append(Problem(source, name, "any", "rendered twice: install would fail"))
            seen_ids[key] = name
        for version in versions:
            problems.extend(Problem(source, name, version, m) for m in _cached(doc, version))
    return problems


_results: dict[tuple[str, str], list[str]] = {}


def _cached(doc: Any, version: str) -> list[str]:
    key = (json.dumps(doc, sort_keys=True, default=str), version)
    if key not in _results:
        _results[key] = validate_object(doc, version)
    return _results[key]


def load(path: Path) -> list[Any]:
    """The YAML documents of a file (empty documents dropped)."""
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """Validate files of rendered manifests; print each problem; 1 if there is any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="helm template output ('-': stdin)")
    parser.add_argument(
        "--kube-version",
        action="append",
        dest="versions",
        help=f"repeatable; default {DEFAULT_VERSIONS[0]} to {DEFAULT_VERSIONS[-1]}",
    )
    args = parser.parse_args(argv)
    versions = tuple(args.versions or DEFAULT_VERSIONS)
    problems: list[Problem] = []
    objects = 0
    for path in args.files:
        try:
            docs = (
                [d for d in yaml.safe_load_all(sys.stdin) if d is not None]
                if str(path) == "-"
                else load(path)
            )
        except (OSError, yaml.YAMLError) as e:
            problems.append(Problem(str(path), "-", "any", f"cannot read: {e}"))
            continue
        if not docs:
            problems.append(Problem(str(path), "-", "any", "no objects rendered"))
        objects += len(docs)
        problems.extend(validate_documents(docs, versions, str(path)))
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {objects} objects", file=sys.stderr)
        return 1
    print(
        f"{objects} objects in {len(args.files)} file(s) valid for Kubernetes "
        f"{', '.join(versions)} (strict schemas; CRDs: {len(ALLOWED_CRDS)} allowed kinds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
