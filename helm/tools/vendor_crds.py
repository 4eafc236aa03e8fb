#!/usr/bin/env python3
"""Fetches the published CRDs that helm/tools/validate_rendered.py checks custom resources against.

    python helm/tools/vendor_crds.py           # (re)write helm/tools/crds/
    python helm/tools/vendor_crds.py --check   # fetch again and compare; 1 when they differ

Run by hand when a version below changes; `make helm-check` never runs it (the check is offline
and reads only helm/tools/crds/). Each file comes from a project's released artifacts, through
the ordinary package clients:

  - prometheus-operator: the Go module github.com/prometheus-operator/prometheus-operator
    (`go mod download`), example/prometheus-operator-crd/*.yaml;
  - KEDA: the Go module github.com/kedacore/keda/v2, config/crd/bases/keda.sh_scaledobjects.yaml;
  - Strimzi: no artifact on Maven Central holds the CRD YAML; it is produced, as Strimzi's own
    build does (api/pom.xml, execution generate-crd-co-install-v1-eo), by Strimzi's CrdGenerator
    from the released classes of io.strimzi:api, with the arguments of that execution. The
    newest io.strimzi:crd-generator on Maven Central is 0.45.0 (later ones are not published);
    see helm/tools/crds/README.md for how its output differs from the release's install file.

Each vendored file is the source file with a comment header (project, version, artifact, path,
sha256 of the source bytes); helm/tools/crds/sources.json lists the same, for the chart tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

CRD_DIR = Path(__file__).resolve().with_name("crds")

PROMETHEUS_OPERATOR = "v0.94.1"
KEDA = "v2.21.0"
STRIMZI = "0.51.0"
STRIMZI_CRD_GENERATOR = "0.45.0"  # the newest on Maven Central


@dataclass(frozen=True)
class Source:
    file: str  # under helm/tools/crds/
    project: str
    version: str
    artifact: str  # Go module@version, or Maven coordinates
    path: str  # the file inside the artifact, or how it is produced
    sha256: str = ""  # of the source bytes (without the header); filled in when fetched
    artifact_sum: str = ""  # the Go module's go.sum hash, or the jars' sha256; filled in too


SOURCES = (
    Source(
        "monitoring.coreos.com_servicemonitors.yaml",
        "prometheus-operator",
        PROMETHEUS_OPERATOR,
        f"go module github.com/prometheus-operator/prometheus-operator@{PROMETHEUS_OPERATOR}",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    ),
    Source(
        "monitoring.coreos.com_prometheusrules.yaml",
        "prometheus-operator",
        PROMETHEUS_OPERATOR,
        f"go module github.com/prometheus-operator/prometheus-operator@{PROMETHEUS_OPERATOR}",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ),
    Source(
        "keda.sh_scaledobjects.yaml",
        "KEDA",
        KEDA,
        f"go module github.com/kedacore/keda/v2@{KEDA}",
        "config/crd/bases/keda.sh_scaledobjects.yaml",
    ),
    Source(
        "kafka.strimzi.io_kafkatopics.yaml",
        "Strimzi",
        STRIMZI,
        f"maven io.strimzi:api:{STRIMZI} (classes), io.strimzi:crd-generator:"
        f"{STRIMZI_CRD_GENERATOR} (generator)",
        "io.strimzi.crdgenerator.CrdGenerator io.strimzi.api.kafka.model.topic.KafkaTopic, "
        "arguments of api/pom.xml execution generate-crd-co-install-v1-eo "
        "(the release's packaging/install/cluster-operator/043-Crd-kafkatopic.yaml)",
    ),
)

# api/pom.xml of Strimzi 0.51.0, execution generate-crd-co-install-v1-eo (KafkaTopic, KafkaUser).
STRIMZI_GENERATOR_ARGS = (
    "--label",
    "app:strimzi",
    "--label",
    "strimzi.io/crd-install:true",
    "--target-kube",
    "1.16+",
    "--crd-api-version",
    "v1",
    "--api-versions",
    "v1alpha1,v1beta1,v1beta2,v1",
    "--storage-version",
    "v1beta2",
    "--yaml",
)

STRIMZI_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.motcua</groupId>
  <artifactId>strimzi-crds</artifactId>
  <version>0</version>
  <dependencies>
    <dependency>
      <groupId>io.strimzi</groupId><artifactId>api</artifactId><version>{STRIMZI}</version>
    </dependency>
    <dependency>
      <groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId>
      <version>{STRIMZI_CRD_GENERATOR}</version>
    </dependency>
  </dependencies>
</project>
"""


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"vendor_crds: {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _go_module(module: str, work: Path) -> tuple[Path, str]:
    """The module's directory in the module cache, and its go.sum hash."""
    if not (work / "go.mod").exists():
        _run(["go", "mod", "init", "vendorcrds.local"], work)
    info = json.loads(_run(["go", "mod", "download", "-json", module], work))
    if "Error" in info:
        sys.exit(f"vendor_crds: {module}: {info['Error']}")
    return Path(info["Dir"]), f"go.sum {info['Sum']}"


def _strimzi_kafkatopic(work: Path) -> tuple[bytes, str]:
    """The generated CRD, and the sha256 of the two jars it comes from."""
    (work / "pom.xml").write_text(STRIMZI_POM)
    _run(["mvn", "-q", "-B", "dependency:build-classpath", "-Dmdep.outputFile=cp.txt"], work)
    out = work / "043-Crd-kafkatopic.yaml"
    classpath = (work / "cp.txt").read_text().strip()
    jars = [
        f"{Path(jar).name} sha256 {hashlib.sha256(Path(jar).read_bytes()).hexdigest()}"
        for jar in classpath.split(os.pathsep)
        if Path(jar).name in (f"api-{STRIMZI}.jar", f"crd-generator-{STRIMZI_CRD_GENERATOR}.jar")
    ]
    _run(
        [
            "java",
            "-cp",
            classpath,
            "io.strimzi.crdgenerator.CrdGenerator",
            *STRIMZI_GENERATOR_ARGS,
            f"io.strimzi.api.kafka.model.topic.KafkaTopic={out}",
        ],
        work,
    )
    return out.read_bytes(), ", ".join(sorted(jars))


def fetch(work: Path) -> dict[str, tuple[Source, bytes]]:
    """file name -> (source with its sha256, the source bytes)."""
    out: dict[str, tuple[Source, bytes]] = {}
    for source in SOURCES:
        if source.project == "Strimzi":
            data, artifact_sum = _strimzi_kafkatopic(work)
        else:
            directory, artifact_sum = _go_module(source.artifact.removeprefix("go module "), work)
            data = (directory / source.path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        filled = Source(**{**asdict(source), "sha256": sha, "artifact_sum": artifact_sum})
        out[source.file] = (filled, data)
    return out


def header(source: Source) -> bytes:
    lines = [
        "Vendored by helm/tools/vendor_crds.py: do not change by hand, run it again.",
        f"Project: {source.project} {source.version}",
        f"Artifact: {source.artifact}",
        f"Path: {source.path}",
        f"sha256 of the source bytes below this header: {source.sha256}",
    ]
    return "".join(f"# {line}\n" for line in lines).encode()


def strip_header(data: bytes) -> bytes:
    """The source bytes of a vendored file (its leading comment header removed)."""
    lines = data.splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith(b"# "):
        n += 1
    return b"".join(lines[n:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("GOFLAGS", "-mod=mod")
        fetched = fetch(Path(tmp))
    manifest = {name: asdict(source) for name, (source, _) in fetched.items()}
    if args.check:
        differ = [
            name
            for name, (source, data) in fetched.items()
            if not (CRD_DIR / name).is_file()
            or (CRD_DIR / name).read_bytes() != header(source) + data
        ]
        for name in differ:
            print(f"vendor_crds: helm/tools/crds/{name} differs from its source", file=sys.stderr)
        return 1 if differ else 0
    CRD_DIR.mkdir(exist_ok=True)
    for name, (source, data) in fetched.items():
        (CRD_DIR / name).write_bytes(header(source) + data)
    (CRD_DIR / "sources.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"vendor_crds: wrote {len(fetched)} CRDs and sources.json to {CRD_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
