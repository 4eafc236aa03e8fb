#!/usr/bin/env python3
"""Strict schema validation of `helm template` output for a range of Kubernetes versions.

Used by helm/check.sh (`make helm-check`). The kubernetes-validate command line only warns,
and exits 0, on a kind or apiVersion it has no schema for, and reports one error per object.
That would let a typo in `kind`, a CRD nobody installs, or an API removed from the target
version (policy/v1beta1, autoscaling/v2beta2) through. This module loads the package's bundled
strict schemas itself, reports EVERY error of each object, and treats a missing schema as an
error, except for the custom resources in ALLOWED_CRDS. Those are checked against the CRDs
their projects publish, vendored in helm/tools/crds/ (versions and sources: its README.md and
sources.json; helm/tools/vendor_crds.py fetches them again), read with the API server's
structural-schema rules (see `structural`): a field the CRD does not declare is an error, as
with `kubectl apply --validate=strict`. Strict schemas also refuse unknown fields in core
kinds, so a misspelt key in a values block that the chart copies verbatim (affinity,
tolerations, extraEnv, ...) fails here even though values.schema.json lets it through.

    python helm/tools/validate_rendered.py rendered.yaml [...] [--kube-version 1.30 ...]
    python helm/tools/validate_rendered.py --supported-versions

Exit status 0 when every object is valid for every version, 1 otherwise (each problem printed),
2 on a bad command line, e.g. a --kube-version kubernetes-validate has no schemas for.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

# Kubernetes releases the charts support and check. kubernetes-validate 1.37.0 bundles 1.25-1.37.
DEFAULT_VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))

CRD_DIR = Path(__file__).resolve().with_name("crds")
_OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@dataclass(frozen=True)
class Crd:
    """A version of a vendored CRD (helm/tools/crds/<file>) and what the chart adds to it."""

    file: str
    version: str
    # Checked besides the CRD's schema: what the chart relies on and the API server does not
    # refuse (a name, a spec, the label the Strimzi topic operator selects topics by).
    chart_requires: tuple[tuple[str, ...], ...] = (("metadata", "name"), ("spec",))


_TOPIC = Crd(
    "kafka.strimzi.io_kafkatopics.yaml",
    "",
    (("metadata", "name"), ("spec",), ("metadata", "labels", "strimzi.io/cluster")),
)

# Custom resources the charts may render: (apiVersion, kind) -> the CRD it is checked against.
# Only the API versions the chart renders: another version of the same CRD (Strimzi still
# serves v1alpha1 and v1beta1) fails like any other kind without a schema.
ALLOWED_CRDS: dict[tuple[str, str], Crd] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): Crd(
        "monitoring.coreos.com_servicemonitors.yaml", "v1"
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): Crd(
        "monitoring.coreos.com_prometheusrules.yaml", "v1"
    ),
    # Strimzi 0.49 and later serve KafkaTopic at v1 (the only version from Strimzi 1.0) and
    # v1beta2; the chart renders either (kafkaTopics.apiVersion).
    ("kafka.strimzi.io/v1", "KafkaTopic"): Crd(_TOPIC.file, "v1", _TOPIC.chart_requires),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): Crd(_TOPIC.file, "v1beta2", _TOPIC.chart_requires),
    ("keda.sh/v1alpha1", "ScaledObject"): Crd("keda.sh_scaledobjects.yaml", "v1alpha1"),
}


class UnsupportedVersionError(ValueError):
    """A Kubernetes version kubernetes-validate bundles no schemas for."""


@dataclass(frozen=True)
class Problem:
    """One error of one object for one Kubernetes version."""

    source: str
    obj: str
    version: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.obj}: Kubernetes {self.version}: {self.message}"


# --------------------------------------------------------------------------------------------
# Kubernetes versions
# --------------------------------------------------------------------------------------------


@cache
def supported_versions() -> tuple[str, ...]:
    """MAJOR.MINOR of every Kubernetes release the installed kubernetes-validate has schemas for."""
    return tuple(dict.fromkeys(kv_utils.major_minor(v) for v in kv_utils.all_versions()))


def normalize_version(version: str) -> str:
    """1.30, v1.30 or 1.30.2 -> 1.30; UnsupportedVersionError for anything without schemas."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", version.strip())
    known = supported_versions()
    if match is None or f"{int(match[1])}.{int(match[2])}" not in known:
        raise UnsupportedVersionError(
            f"Kubernetes version {version!r} is not supported: kubernetes-validate "
            f"{kubernetes_validate.__version__} has schemas for {known[0]} to {known[-1]} "
            f"(MAJOR.MINOR; a newer release needs a newer kubernetes-validate)"
        )
    return f"{int(match[1])}.{int(match[2])}"


# --------------------------------------------------------------------------------------------
# Schemas: Kubernetes' own (kubernetes-validate) and the vendored CRDs
# --------------------------------------------------------------------------------------------


def _list_type(validator: Any, list_type: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """x-kubernetes-list-type: the API server refuses duplicates in a set or a map list."""
    if not validator.is_type(instance, "array") or list_type not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: dict[str, int] = {}
    for i, item in enumerate(instance):
        if list_type == "map":
            if not isinstance(item, dict):
                continue
            identity = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
            what = f"an entry with the same {', '.join(keys)} as entry {{first}}"
        else:
            identity = json.dumps(item, sort_keys=True)
            what = "the same value as entry {first}"
        if identity in seen:
            message = f"duplicate: {what.format(first=seen[identity])} (x-kubernetes-list-type: "
            yield jsonschema.ValidationError(f"{message}{list_type})", path=(i,))
        else:
            seen[identity] = i


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-kubernetes-list-type": _list_type}
)


@cache
def _definitions(version: str) -> Resource[Any]:
    schema_dir = _schema_dir(version)
    defs = kv_utils.schema_contents(
        f"kubernetes-json-schema/{schema_dir}/_definitions.json", version
    )
    return Resource.from_contents(defs)


def _schema_dir(version: str) -> str:
    # The latest bundled schemas not newer than the version, as kubernetes_validate.validate.
    bundled = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) == version]
    return f"v{bundled[-1]}-local-strict"


@cache
def _core_validator(api_version: str, kind: str, version: str) -> Any | None:
    """The strict schema of a core kind (as kubernetes_validate.validate loads it), or None."""
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    name = f"kubernetes-json-schema/{_schema_dir(version)}/{kind.lower()}-{api}.json"
    try:
        schema = kv_utils.schema_contents(name, version)
    except FileNotFoundError:
        return None
    registry: Registry[Any] = Resource.from_contents(schema) @ (_definitions(version) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def go_regex(pattern: str) -> str:
    """A CRD `pattern` (Go's RE2 syntax) in Python's: flags like ^(?i)... go to the front."""
    match = re.fullmatch(r"\^\(\?([imsU]+)\)(.*)", pattern, re.DOTALL)
    if match:
        pattern = f"(?{match[1].replace('U', '')})^{match[2]}"
    pattern = pattern.replace(r"\z", r"\Z")
    re.compile(pattern)
    return pattern


def structural(node: Any, *, in_logic: bool = False) -> Any:
    """A CRD's OpenAPI v3 schema as JSON Schema, with the API server's structural-schema rules:

    - an object declares its fields: one that is not declared is an error (the server prunes it,
      and refuses it under strict field validation), unless the node has
      x-kubernetes-preserve-unknown-fields: true or additionalProperties (a map);
    - x-kubernetes-int-or-string: an integer or a string; nullable: null is allowed too;
    - x-kubernetes-embedded-resource: apiVersion, kind and metadata are implied;
    - x-kubernetes-list-type set/map: no duplicates (the custom keyword above);
    - OpenAPI 3.0's boolean exclusiveMinimum/exclusiveMaximum; Go regular expressions.

    Inside allOf/anyOf/oneOf/not the rules above do not add "unknown field" checks: there, as in
    Kubernetes, properties only constrain values. CEL rules (x-kubernetes-validations) and
    `format` are not evaluated (the chart's templates refuse what those rules check)."""
    if isinstance(node, list):
        return [structural(n, in_logic=in_logic) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: structural(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [structural(v, in_logic=True) for v in value]
        elif key == "not":
            out[key] = structural(value, in_logic=True)
        elif key == "pattern":
            out[key] = go_regex(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value and bound in node:
                out[key] = node[bound]
        else:
            out[key] = value
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        bound = "minimum" if key == "exclusiveMinimum" else "maximum"
        if node.get(key) is True:
            out.pop(bound, None)
    if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        not in_logic
        and node.get("type") == "object"
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in node
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schema(file: str, version: str) -> dict[str, Any]:
    """The structural JSON Schema of one version of a vendored CRD (metadata: ObjectMeta)."""
    path = CRD_DIR / file
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema = structural(served["schema"]["openAPIV3Schema"])
            break
    else:
        raise KeyError(f"{path} has no version {version}")
    schema.setdefault("properties", {})["metadata"] = {"$ref": _OBJECT_META}
    return schema


def _requirements(paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """A JSON Schema requiring each path (metadata.name, ...) of an object."""
    schema: dict[str, Any] = {"type": "object"}
    for path in paths:
        node = schema
        for part in path:
            node.setdefault("required", [])
            if part not in node["required"]:
                node["required"].append(part)
            node = node.setdefault("properties", {}).setdefault(part, {})
    return schema


@cache
def _crd_validators(api_version: str, kind: str, version: str) -> tuple[Any, Any] | None:
    crd = ALLOWED_CRDS.get((api_version, kind))
    if crd is None:
        return None
    schema = copy.deepcopy(crd_schema(crd.file, crd.version))
    registry: Registry[Any] = _definitions(version) @ Registry()
    return (
        _Validator(schema, registry=registry),
        jsonschema.Draft202012Validator(_requirements(crd.chart_requires)),
    )


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _meta(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, dict) else {}


def describe(doc: Any) -> str:
    """apiVersion Kind/name (namespace) of a rendered object, as far as it has them."""
    if not isinstance(doc, dict):
        return f"<not an object: {type(doc).__name__}>"
    meta = _meta(doc)
    ns = f" (namespace {meta['namespace']})" if meta.get("namespace") else ""
    return f"{doc.get('apiVersion', '?')} {doc.get('kind', '?')}/{meta.get('name', '?')}{ns}"


def json_path(parts: Iterable[Any]) -> str:
    """spec.endpoints[0].interval; <root> for the object itself."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_$][\w$-]*", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out or "<root>"


def _messages(errors: Iterable[jsonschema.ValidationError], prefix: str = "") -> Iterator[str]:
    """One line per error: its path and message; an undeclared field is named by its own path."""
    for e in errors:
        path = list(e.absolute_path)
        if (
            e.validator == "additionalProperties"
            and e.validator_value is False
            and isinstance(e.instance, dict)
            and isinstance(e.schema, dict)
        ):
            declared = e.schema.get("properties", {})
            patterns = e.schema.get("patternProperties", {})
            for key in e.instance:
                if key not in declared and not any(re.search(p, key) for p in patterns):
                    yield f"{json_path([*path, key])}: {prefix}unknown field {key!r}"
            continue
        yield f"{json_path(path)}: {prefix}{e.message}"


def validate_object(doc: Any, version: str) -> list[str]:
    """Every error of one object against one Kubernetes version's schemas (empty: valid)."""
    version = normalize_version(version)
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return ["not a Kubernetes object (no kind)"]
    if not isinstance(doc.get("apiVersion"), str):
        return ["no apiVersion"]
    api_version, kind = doc["apiVersion"], doc["kind"]
    core = _core_validator(api_version, kind, version)
    if core is not None:
        messages = list(_messages(core.iter_errors(doc)))
    else:
        crd = _crd_validators(api_version, kind, version)
        if crd is None:
            allowed = ", ".join(f"{a} {k}" for a, k in sorted(ALLOWED_CRDS))
            return [
                f"no schema for {api_version} {kind} in Kubernetes {version}: a typo, an API "
                f"removed in that version, or a CRD outside the allow-list ({allowed})"
            ]
        published, chart = crd
        messages = [
            *_messages(published.iter_errors(doc)),
            *_messages(chart.iter_errors(doc), prefix="the chart requires it: "),
        ]
    return sorted(dict.fromkeys(messages))


def validate_documents(
    docs: Iterable[Any], versions: Sequence[str] = DEFAULT_VERSIONS, source: str = "-"
) -> list[Problem]:
    """Every problem of every object for every version; identical objects are checked once."""
    versions = [normalize_version(v) for v in versions]
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
    parser.add_argument("files", nargs="*", type=Path, help="helm template output ('-': stdin)")
    parser.add_argument(
        "--kube-version",
        action="append",
        dest="versions",
        help=f"repeatable; default {DEFAULT_VERSIONS[0]} to {DEFAULT_VERSIONS[-1]}",
    )
    parser.add_argument(
        "--supported-versions",
        action="store_true",
        help="print the Kubernetes versions there are schemas for, and exit",
    )
    args = parser.parse_args(argv)
    if args.supported_versions:
        print(" ".join(supported_versions()))
        return 0
    if not args.files:
        parser.error("no files given")
    try:
        versions = tuple(normalize_version(v) for v in args.versions or DEFAULT_VERSIONS)
    except UnsupportedVersionError as e:
        print(f"validate_rendered: --kube-version: {e}", file=sys.stderr)
        return 2
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
    crds = ", ".join(sorted({f"{k} {a}" for a, k in ALLOWED_CRDS}))
    print(
        f"{objects} objects in {len(args.files)} file(s) valid for Kubernetes "
        f"{', '.join(versions)} (strict schemas; custom resources against their published "
        f"CRDs: {crds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
