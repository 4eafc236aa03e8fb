"""The Helm charts (helm/): lint, render, and the rules every rendered object must follow.

Works on a copy of helm/ in which helm/build-deps.sh has packaged the library chart (fixtures in
conftest.py), so the tests see the library as it is in the working tree and leave no files
behind. Needs the `helm` binary; without it the tests fail rather than skip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import (
    DEV,
    HELM_SRC,
    HTTP_PORTS,
    KUBE_VERSION,
    MONITORING_API,
    NAMESPACE,
    PROD,
    RELEASE,
    ROOT,
    SERVICES,
    Doc,
    env_of,
    of_kind,
    of_service,
    one,
    pod_specs,
    refusal,
    render,
    run_helm,
    template_args,
)

RUNBOOKS = ROOT / "docs" / "runbooks"
TOPICS = {
    f"motcua.{s}.v1{d}" for s in ("dossier", "payment", "notify", "audit") for d in ("", ".dlq")
}
# Setting names that hold a secret (the chart refuses them as literal values, see _validate.tpl).
SECRETISH = re.compile(
    r"(^|_)(PASSWORD|PASSPHRASE|PIN|SECRET|TOKEN|API_KEY|PRIVATE_KEY|DATABASE_URL)$"
)


@pytest.fixture(scope="session", params=[DEV, PROD])
def values_file(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def rendered(helm: str, umbrella: Path, values_file: str) -> list[Doc]:
    return render(helm, umbrella, values_file)


# --------------------------------------------------------------------------------------------
# Layout and lint
# --------------------------------------------------------------------------------------------


def test_there_is_no_generator_and_no_subchart() -> None:
    """Plain Helm (issue 16, deliver 1): the files a platform engineer opens are the sources."""
    assert not (HELM_SRC / "tools" / "gen_subcharts.py").exists()
    assert not (HELM_SRC / "motcua" / "charts").exists() or not [
        p for p in (HELM_SRC / "motcua" / "charts").iterdir() if p.is_dir()
    ]
    for path in HELM_SRC.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".tpl", ".txt", ".sh"):
            assert "edit the generator" not in path.read_text(), path
    meta = yaml.safe_load((HELM_SRC / "motcua" / "Chart.yaml").read_text())
    assert meta["dependencies"] == [
        {"name": "motcua-lib", "version": "0.1.0", "repository": "file://../motcua-lib"}
    ]
    assert yaml.safe_load((HELM_SRC / "motcua-lib" / "Chart.yaml").read_text())["type"] == "library"


def test_every_service_template_is_one_include_of_the_library() -> None:
    """The umbrella's templates loop over `services:`; the objects are defined in motcua-lib."""
    templates = sorted((HELM_SRC / "motcua" / "templates").rglob("*.yaml"))
    assert {p.name for p in templates} >= {
        "configmap.yaml",
        "deployment.yaml",
        "hpa.yaml",
        "ingress.yaml",
        "migration-job.yaml",
        "networkpolicy.yaml",
        "pdb.yaml",
        "prometheusrule.yaml",
        "service.yaml",
        "serviceaccount.yaml",
        "servicemonitor.yaml",
        "grpc-health.yaml",
        "kafkatopics.yaml",
        "grafana-dashboard.yaml",
    }
    for path in templates:
        code = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("{{- /*")
        ]
        for line in code:
            assert re.fullmatch(
                r'\{\{- (include|with include) "motcua-lib\.[\w-]+" '
                r'(\(list \. "motcua-lib\.[\w-]+"\)|\.) \}\}|---|\{\{ \. \}\}|\{\{- end \}\}',
                line,
            ), f"{path.name}: {line!r}"


def test_one_schema_with_a_definition_per_service_block() -> None:
    schema = json.loads((HELM_SRC / "motcua" / "values.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"service", "serviceBlock", "global", "quantity", "resources"} <= schema["$defs"].keys()
    services = schema["properties"]["services"]["properties"]
    assert set(services) == set(SERVICES)
    for svc, block in services.items():
        refs = [part.get("$ref") for part in block["allOf"]]
        assert refs[0] == "#/$defs/serviceBlock", svc
    assert list((HELM_SRC / "motcua").rglob("values.schema.json")) == [
        HELM_SRC / "motcua" / "values.schema.json"
    ]


def test_lint_passes(helm: str, umbrella: Path, values_file: str) -> None:
    result = run_helm(
        helm,
        "lint",
        str(umbrella),
        "--strict",
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(umbrella / values_file),
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# What every service gets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("svc", SERVICES)
def test_every_service_has_its_objects(rendered: list[Doc], svc: str) -> None:
    for kind in (
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ):
        one(rendered, kind, svc)
    service = one(rendered, "Service", svc)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": 50051,
        "http-metrics": 9100,
        **HTTP_PORTS.get(svc, {}),
    }
    for p in service["spec"]["ports"]:
        assert p["targetPort"] == p["name"]
    hpa = one(rendered, "HorizontalPodAutoscaler", svc)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{RELEASE}-{svc}",
    }
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert cpu[0]["resource"]["name"] == "cpu"
    assert cpu[0]["resource"]["target"]["type"] == "Utilization"
    pdb = one(rendered, "PodDisruptionBudget", svc)
    assert pdb["apiVersion"] == "policy/v1"
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == one(rendered, "Deployment", svc)["spec"]["selector"]["matchLabels"]
    )


def test_every_object_has_the_standard_labels(rendered: list[Doc]) -> None:
    for d in rendered:
        labels = d["metadata"].get("labels", {})
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/component",
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels, f"{d['kind']}/{d['metadata']['name']} lacks label {key}"


def test_every_pod_is_restricted(rendered: list[Doc]) -> None:
    specs = list(pod_specs(rendered))
    assert len(specs) == 3 * len(SERVICES)  # Deployment, migration Job, test Pod
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["runAsUser"] == 10001, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert c["resources"]["requests"].keys() >= {"cpu", "memory"}, name
            assert c["resources"]["limits"].keys() >= {"cpu", "memory"}, name


@pytest.mark.parametrize("svc", SERVICES)
def test_deployment_runs_the_service_contract(
    rendered: list[Doc], values_file: str, svc: str
) -> None:
    dep = one(rendered, "Deployment", svc)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    # The migration hook has migrated already: the pods must not race each other to do it again.
    assert c["command"] == ["python", "-m", f"motcua_{svc}", "serve", "--no-migrate-first"]
    assert re.fullmatch(rf"([^/]+/)?motcua/{svc}:[\w.-]+", c["image"]), c["image"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "grpc": 50051,
        "http-metrics": 9100,
        **HTTP_PORTS.get(svc, {}),
    }
    assert spec["enableServiceLinks"] is False
    assert spec["topologySpreadConstraints"]
    for t in spec["topologySpreadConstraints"]:
        assert t["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # Non-secret settings from the ConfigMap, secrets by reference.
    cm = one(rendered, "ConfigMap", svc)
    assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]
    prefix = f"MOTCUA_{svc.upper()}_"
    data = cm["data"]
    assert data[prefix + "GRPC_PORT"] == "50051"
    assert data[prefix + "METRICS_PORT"] == "9100"
    assert data[prefix + "BIND_HOST"] == "0.0.0.0"
    for name, port in HTTP_PORTS.get(svc, {}).items():
        assert data[prefix + name.removeprefix("http-").upper() + "_PORT"] == str(port)
    assert data[prefix + "KAFKA_BOOTSTRAP"]
    assert data[prefix + "KAFKA_SECURITY_PROTOCOL"] in ("PLAINTEXT", "SSL", "SASL_SSL")
    assert all(k.startswith(prefix) for k in data)
    db = env_of(c)[prefix + "DATABASE_URL"]
    assert db["valueFrom"]["secretKeyRef"]["name"] == f"motcua-{svc}-db"
    assert checksum_annotation(dep)
    # Probes: gRPC health while gRPC is plaintext; HTTP health when it serves TLS (prod).
    tls = prefix + "TLS_CERT_FILE" in data
    assert tls == (values_file == PROD)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if tls:
            assert c[probe]["httpGet"]["port"] == "http-metrics"
        else:
            assert c[probe]["grpc"] == {"port": 50051}
    assert c["readinessProbe"].get("httpGet", {}).get("path", "/readyz") == "/readyz"


def checksum_annotation(dep: Doc) -> str:
    return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_prod_runs_at_least_two_replicas_with_budgets(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, PROD)
    for svc in SERVICES:
        assert one(docs, "HorizontalPodAutoscaler", svc)["spec"]["minReplicas"] >= 2
        assert one(docs, "PodDisruptionBudget", svc)["spec"]["minAvailable"] == 1
    # The lag metric reaches the HPA as a Pods metric where it is turned on.
    metrics = one(docs, "HorizontalPodAutoscaler", "notify")["spec"]["metrics"]
    assert {
        "type": "Pods",
        "pods": {
            "metric": {"name": "motcua_consumer_lag"},
            "target": {"type": "AverageValue", "averageValue": "500"},
        },
    } in metrics


def test_without_autoscaling_the_deployment_sets_replicas(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=("services.dossier.autoscaling.enabled=false", "services.dossier.replicaCount=3"),
    )
    assert one(docs, "Deployment", "dossier")["spec"]["replicas"] == 3
    assert not of_service(of_kind(docs, "HorizontalPodAutoscaler"), "dossier")
    assert "replicas" not in one(docs, "Deployment", "notify")["spec"]


VARIANTS = {
    "dev": ((DEV,), (), ()),
    "dev-monitoring": ((DEV,), (), (MONITORING_API,)),
    "prod": ((PROD,), (), ()),
    "prod-monitoring": ((PROD,), (), (MONITORING_API,)),
    "prod-plaintext-grpc": ((PROD,), ("global.tls.enabled=false",), ()),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_deployment_has_probes_requests_and_limits(
    helm: str, umbrella: Path, variant: str
) -> None:
    values, sets, api = VARIANTS[variant]
    deployments = of_kind(render(helm, umbrella, *values, sets=sets, api=api), "Deployment")
    assert len(deployments) == len(SERVICES)
    for dep in deployments:
        name = dep["metadata"]["name"]
        for c in dep["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert c.get(probe), f"{name}: no {probe}"
                assert {"grpc", "httpGet"} & c[probe].keys(), f"{name}: {probe} checks nothing"
                assert c[probe]["periodSeconds"] >= 1 and c[probe]["failureThreshold"] >= 1
            requests, limits = c["resources"]["requests"], c["resources"]["limits"]
            assert requests.get("cpu") and requests.get("memory"), f"{name}: requests"
            assert limits.get("cpu") and limits.get("memory"), f"{name}: limits"


@pytest.mark.parametrize("svc", SERVICES)
def test_pdb_and_hpa_follow_their_switches(helm: str, umbrella: Path, svc: str) -> None:
    on = render(helm, umbrella, PROD)
    assert one(on, "PodDisruptionBudget", svc)
    assert one(on, "HorizontalPodAutoscaler", svc)
    off = render(
        helm,
        umbrella,
        PROD,
        sets=(f"services.{svc}.pdb.enabled=false", f"services.{svc}.autoscaling.enabled=false"),
    )
    assert not of_service(of_kind(off, "PodDisruptionBudget"), svc)
    assert not of_service(of_kind(off, "HorizontalPodAutoscaler"), svc)
    assert one(off, "Deployment", svc)["spec"]["replicas"] == 2  # replicaCount in values-prod
    others = [o for o in SERVICES if o != svc]
    assert all(one(off, "PodDisruptionBudget", o) for o in others)
    assert all(one(off, "HorizontalPodAutoscaler", o) for o in others)


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def test_no_literal_secrets(rendered: list[Doc]) -> None:
    assert not of_kind(rendered, "Secret"), "the charts reference Secrets, they never create them"
    credentials_in_url = re.compile(r"://[^/\s:@]+:[^@\s]+@")
    for name, spec in pod_specs(rendered):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if SECRETISH.search(e["name"]) and not e["name"].endswith("_FILE"):
                    assert set(e) == {"name", "valueFrom"}, (
                        f"{name}: {e['name']} must come from a Secret"
                    )
                    assert "secretKeyRef" in e["valueFrom"], f"{name}: {e['name']}"
                assert not credentials_in_url.search(str(e.get("value", ""))), (
                    f"{name}: {e['name']}"
                )
    for cm in of_kind(rendered, "ConfigMap"):
        for key, value in cm["data"].items():
            if cm["metadata"]["labels"].get("grafana_dashboard") == "1":
                continue
            assert not (SECRETISH.search(key) and not key.endswith("_FILE")), f"{key} in ConfigMap"
            assert not credentials_in_url.search(value), key


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, (*path, str(i)))
    else:
        yield path, node


SECRET_NAME_KEYS = ("existingSecret", "secretName", "caSecret", "publicKeySecret")


def rename_secrets(node: Any, names: list[str]) -> Any:
    """The values with every Secret name replaced by a unique sentinel (collected in names)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in SECRET_NAME_KEYS and isinstance(v, str) and v:
                names.append(f"sentinel-secret-{len(names)}")
                out[k] = names[-1]
            else:
                out[k] = rename_secrets(v, names)
        return out
    if isinstance(node, list):
        return [rename_secrets(v, names) for v in node]
    return node


def test_secret_names_from_values_are_only_ever_references(
    helm: str, umbrella: Path, tmp_path: Path
) -> None:
    names: list[str] = []
    values = rename_secrets(yaml.safe_load((umbrella / PROD).read_text()), names)
    assert len(names) >= 10, names
    renamed = tmp_path / "values-prod-sentinels.yaml"
    renamed.write_text(yaml.safe_dump(values))
    docs = render(helm, umbrella, str(renamed), api=(MONITORING_API,))
    assert not of_kind(docs, "Secret"), "the charts reference Secrets, they never create them"
    seen = set()
    for d in docs:
        for path, v in walk(d):
            if isinstance(v, str) and "sentinel-secret-" in v:
                seen.add(v)
                where = f"{d['kind']}/{d['metadata']['name']}: {'.'.join(path)}"
                assert path[-2:] in (("secretKeyRef", "name"), ("secret", "secretName")), where
    assert seen == set(names), "every Secret named in values is used"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        pytest.param(
            ("services.notify.config.SMTP_PASSWORD=hunter2",),
            "services.notify.config.SMTP_PASSWORD looks like a secret",
            id="config",
        ),
        pytest.param(
            ("services.dossier.config.DATABASE_URL=postgresql://motcua:hunter2@db/motcua",),
            "services.dossier.config.DATABASE_URL looks like a secret",
            id="config-database-url",
        ),
        pytest.param(
            (
                "services.payment.extraEnv[0].name=MOTCUA_PAYMENT_GATEWAY_HASH_SECRET",
                "services.payment.extraEnv[0].value=hunter2",
            ),
            "MOTCUA_PAYMENT_GATEWAY_HASH_SECRET has a literal value",
            id="extra-env",
        ),
    ],
)
def test_a_secret_written_into_values_is_refused(
    helm: str, umbrella: Path, sets: tuple[str, ...], message: str
) -> None:
    result = run_helm(helm, *template_args(umbrella, (DEV,), sets, ()))
    assert result.returncode != 0, f"helm template accepted {sets}"
    assert message in result.stderr
    assert "hunter2" not in result.stdout


def test_secret_material_is_mounted_read_only_from_secrets(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, PROD)
    for svc in SERVICES:
        dep = one(docs, "Deployment", svc)
        spec = dep["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        data = one(docs, "ConfigMap", svc)["data"]
        prefix = f"MOTCUA_{svc.upper()}_"
        for setting, volume in (
            ("JWT_PUBLIC_KEY_FILE", "jwt"),
            ("TLS_CERT_FILE", "tls"),
            ("KAFKA_SSL_CAFILE", "kafka-ca"),
        ):
            mount = next(m for m in c["volumeMounts"] if m["name"] == volume)
            assert mount["readOnly"] is True
            assert data[prefix + setting].startswith(mount["mountPath"] + "/")
            assert "secret" in volumes[volume]
        assert volumes["tls"]["secret"]["secretName"] == f"motcua-{svc}-tls"
        sasl = env_of(c)[prefix + "KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert sasl == {"name": f"motcua-{svc}", "key": "password"}


# --------------------------------------------------------------------------------------------
# NetworkPolicy
# --------------------------------------------------------------------------------------------


def test_network_policies_are_opt_in(helm: str, umbrella: Path) -> None:
    assert not of_kind(render(helm, umbrella, DEV), "NetworkPolicy")
    docs = render(helm, umbrella, DEV, sets=("global.networkPolicy.enabled=true",))
    assert {d["metadata"]["name"] for d in of_kind(docs, "NetworkPolicy")} == {
        f"{RELEASE}-default-deny",
        *(f"{RELEASE}-{s}{part}" for s in SERVICES for part in ("", "-migrate", "-test")),
    }
    docs = render(helm, umbrella, DEV, sets=("services.notify.networkPolicy.enabled=true",))
    assert sorted(d["metadata"]["name"] for d in of_kind(docs, "NetworkPolicy")) == [
        f"{RELEASE}-default-deny",
        f"{RELEASE}-notify",
        f"{RELEASE}-notify-migrate",
        f"{RELEASE}-notify-test",
    ]


@pytest.mark.parametrize("svc", SERVICES)
def test_network_policy_allows_only_the_service_ports_and_its_dependencies(
    helm: str, umbrella: Path, svc: str
) -> None:
    docs = render(helm, umbrella, PROD)
    np = one(docs, "NetworkPolicy", svc, "server")
    spec = np["spec"]
    assert (
        spec["podSelector"]["matchLabels"]
        == one(docs, "Deployment", svc)["spec"]["selector"]["matchLabels"]
    )
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    ingress_ports = set()
    for rule in spec["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` would admit everyone"
        ingress_ports |= {p["port"] for p in rule["ports"]}
    assert ingress_ports == {50051, 9100} | set(HTTP_PORTS.get(svc, {}).values())
    egress = [(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]]
    assert {(53, "UDP"), (53, "TCP"), (9093, "TCP"), (5432, "TCP"), (4317, "TCP")} <= set(egress)
    for rule in spec["egress"]:
        assert rule.get("ports"), "an egress rule without ports would open every port"
    cidrs = {
        peer["ipBlock"]["cidr"]
        for rule in spec["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    }
    external = {
        "notify": {"203.0.113.0/24", "198.51.100.25/32"},
        "payment": {"192.0.2.0/24"},
        "dossier": {"198.51.100.80/32", "10.20.40.10/32"},  # the TSA, the network HSM
    }.get(svc, set())
    assert cidrs == {"10.20.30.0/24"} | external


def test_network_policy_egress_to_kafka_and_postgresql_comes_from_values(
    helm: str, umbrella: Path, tmp_path: Path
) -> None:
    kafka_to = [{"ipBlock": {"cidr": "10.9.0.0/16"}}]
    pg_to = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "databases"}},
            "podSelector": {"matchLabels": {"cnpg.io/cluster": "motcua"}},
        }
    ]
    audit_pg_to = [{"ipBlock": {"cidr": "10.77.0.5/32"}}]
    values = {
        "global": {
            "networkPolicy": {
                "enabled": True,
                "egress": {
                    "kafka": {"ports": [9094, 9095], "to": kafka_to},
                    "postgresql": {"ports": [6432], "to": pg_to},
                },
            }
        },
        # A service's own target replaces the global one.
        "services": {
            "audit": {
                "networkPolicy": {"egress": {"postgresql": {"ports": [5433], "to": audit_pg_to}}}
            }
        },
    }
    extra = tmp_path / "networkpolicy-values.yaml"
    extra.write_text(yaml.safe_dump(values))
    docs = render(helm, umbrella, DEV, str(extra))
    for svc in SERVICES:
        egress = one(docs, "NetworkPolicy", svc, "server")["spec"]["egress"]

        def rule_for(port: int, egress: list[Doc] = egress, svc: str = svc) -> Doc:
            found = [r for r in egress if any(p["port"] == port for p in r["ports"])]
            assert len(found) == 1, f"{svc}: {len(found)} egress rules for port {port}"
            return found[0]

        kafka = rule_for(9094)
        assert kafka["ports"] == [
            {"port": 9094, "protocol": "TCP"},
            {"port": 9095, "protocol": "TCP"},
        ]
        assert kafka["to"] == kafka_to
        pg_port, pg = (5433, audit_pg_to) if svc == "audit" else (6432, pg_to)
        assert rule_for(pg_port) == {"ports": [{"port": pg_port, "protocol": "TCP"}], "to": pg}
        ports = {p["port"] for r in egress for p in r["ports"]}
        assert not ports & {9092, 5432}, f"{svc}: the default ports are still open"


@pytest.mark.parametrize("svc", sorted(HTTP_PORTS))
def test_http_endpoint_is_reachable_only_from_the_configured_callers(
    helm: str, umbrella: Path, svc: str
) -> None:
    ((_, port),) = HTTP_PORTS[svc].items()
    # NetworkPolicy on, but nobody named who may call the endpoint: no rule opens it.
    docs = render(helm, umbrella, DEV, sets=("global.networkPolicy.enabled=true",))
    ingress = one(docs, "NetworkPolicy", svc, "server")["spec"]["ingress"]
    assert port not in {p["port"] for rule in ingress for p in rule["ports"]}
    docs = render(helm, umbrella, PROD)
    (rule,) = [
        r
        for r in one(docs, "NetworkPolicy", svc, "server")["spec"]["ingress"]
        if r["ports"] == [{"port": port, "protocol": "TCP"}]
    ]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


@pytest.mark.parametrize("svc", sorted(HTTP_PORTS))
def test_ingress_routes_to_the_http_endpoint(helm: str, umbrella: Path, svc: str) -> None:
    assert not of_kind(render(helm, umbrella, DEV), "Ingress")
    ing = one(render(helm, umbrella, PROD), "Ingress", svc)
    ((name, _),) = HTTP_PORTS[svc].items()
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": f"{RELEASE}-{svc}", "port": {"name": name}}
    assert ing["spec"]["tls"] == [
        {"hosts": [rule["host"]], "secretName": ing["spec"]["tls"][0]["secretName"]}
    ]
    result = run_helm(
        helm, *template_args(umbrella, (DEV,), (f"services.{svc}.ingress.enabled=true",), ())
    )
    assert result.returncode != 0 and "host" in result.stderr


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (("services.dossier.ports.callback=8080",), "/services/dossier/ports/callback"),
        (("services.audit.ports.receipts=8080",), "/services/audit/ports/receipts"),
        (("services.notify.ports.callback=8080",), "/services/notify/ports/callback"),
        (("services.payment.ports.receipts=8080",), "/services/payment/ports/receipts"),
        (("serviceDefaults.ports.callback=8080",), "/serviceDefaults/ports/callback"),
        (("services.dossier.ingress.enabled=false",), "/services/dossier/ingress"),
    ],
)
def test_only_payment_and_notify_have_an_http_endpoint(
    helm: str, umbrella: Path, sets: tuple[str, ...], field: str
) -> None:
    assert field in refusal(helm, umbrella, DEV, sets=sets, lint=True)


# --------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------


# What each service alerts on, with its severity. Every alert has a runbook page.
COMMON_ALERTS = {
    "MotcuaGrpcHighErrorRate": "critical",
    "MotcuaConsumerLagGrowing": "warning",
    "MotcuaOutboxStuck": "critical",
    "MotcuaDeadLetterQueueNotEmpty": "warning",
}
OWN_ALERTS = {
    "dossier": {
        "MotcuaDossierPaymentRefused": "critical",
        "MotcuaDocumentSigningFailing": "critical",
    },
    "notify": {"MotcuaDocumentFetchFailing": "warning"},
    "payment": {"MotcuaPaymentCallbackRejectionsSpike": "critical"},
    "audit": {"MotcuaAuditTreeHeadStale": "critical", "MotcuaAuditVerificationFailed": "critical"},
}


def alert_rules(docs: list[Doc], svc: str) -> list[Doc]:
    return [r for g in one(docs, "PrometheusRule", svc)["spec"]["groups"] for r in g["rules"]]


def test_monitoring_objects_absent_without_the_prometheus_operator_api(rendered: list[Doc]) -> None:
    assert not of_kind(rendered, "ServiceMonitor")
    assert not of_kind(rendered, "PrometheusRule")


def test_monitoring_objects_follow_the_api_or_the_explicit_switch(
    helm: str, umbrella: Path
) -> None:
    with_api = render(helm, umbrella, DEV, api=(MONITORING_API,))
    assert len(of_kind(with_api, "ServiceMonitor")) == len(SERVICES)
    assert len(of_kind(with_api, "PrometheusRule")) == len(SERVICES)
    forced = render(
        helm,
        umbrella,
        DEV,
        sets=(
            "global.monitoring.serviceMonitor.enabled=true",
            "global.monitoring.prometheusRule.enabled=true",
        ),
    )
    assert len(of_kind(forced, "ServiceMonitor")) == len(SERVICES)
    assert len(of_kind(forced, "PrometheusRule")) == len(SERVICES)
    off = render(
        helm,
        umbrella,
        DEV,
        sets=("global.monitoring.serviceMonitor.enabled=false",),
        api=(MONITORING_API,),
    )
    assert not of_kind(off, "ServiceMonitor")


@pytest.mark.parametrize("svc", SERVICES)
def test_service_monitor_scrapes_the_metrics_port(helm: str, umbrella: Path, svc: str) -> None:
    docs = render(helm, umbrella, PROD, api=(MONITORING_API,))
    sm = one(docs, "ServiceMonitor", svc)
    assert (
        sm["spec"]["selector"]["matchLabels"].items()
        <= one(docs, "Service", svc)["metadata"]["labels"].items()
    )
    assert sm["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("svc", SERVICES)
def test_alerts_have_severities_and_select_their_service(
    helm: str, umbrella: Path, svc: str
) -> None:
    rules = alert_rules(render(helm, umbrella, DEV, api=(MONITORING_API,)), svc)
    expected = COMMON_ALERTS | OWN_ALERTS.get(svc, {})
    assert {r["alert"]: r["labels"]["severity"] for r in rules} == expected
    for r in rules:
        assert f'job="{RELEASE}-{svc}"' in r["expr"] and f'namespace="{NAMESPACE}"' in r["expr"]
        assert r["labels"]["service"] == svc
        assert r["annotations"]["summary"] and r["annotations"]["description"]


@pytest.mark.parametrize("svc", SERVICES)
def test_every_alert_links_to_its_runbook_page(helm: str, umbrella: Path, svc: str) -> None:
    base = "https://git.motcua.example/motcua/motcua/-/blob/main/docs/runbooks"
    assert f"runbookBaseUrl: {base}" in (umbrella / PROD).read_text()
    for docs, prefix in (
        (render(helm, umbrella, DEV, api=(MONITORING_API,)), "docs/runbooks/"),
        (render(helm, umbrella, PROD, api=(MONITORING_API,)), base + "/"),
    ):
        for r in alert_rules(docs, svc):
            url = r["annotations"]["runbook_url"]
            assert url.startswith(prefix) and url.endswith(".md"), url
            page = RUNBOOKS / url.removeprefix(prefix)
            assert page.is_file(), f"{r['alert']}: no runbook page {page.relative_to(ROOT)}"
            title = page.read_text().splitlines()[0]
            assert title.startswith("# ") and r["alert"] in title, f"{page.name}: {title!r}"


def test_every_runbook_page_belongs_to_an_alert(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, PROD, api=(MONITORING_API,))
    linked = {
        r["annotations"]["runbook_url"].rsplit("/", 1)[1]
        for svc in SERVICES
        for r in alert_rules(docs, svc)
    }
    # README.md is the index; migration-job-failed.md covers a failed install, not an alert.
    pages = {p.name for p in RUNBOOKS.glob("*.md")} - {"README.md", "migration-job-failed.md"}
    assert pages == linked
    index = (RUNBOOKS / "README.md").read_text()
    for alert in COMMON_ALERTS | {a: s for own in OWN_ALERTS.values() for a, s in own.items()}:
        assert alert in index, f"docs/runbooks/README.md does not list {alert}"


def test_alerts_can_be_turned_off_per_service(helm: str, umbrella: Path) -> None:
    docs = render(
        helm, umbrella, DEV, sets=("services.notify.alerts.enabled=false",), api=(MONITORING_API,)
    )
    assert not of_service(of_kind(docs, "PrometheusRule"), "notify")
    assert one(docs, "ServiceMonitor", "notify")


def test_grafana_dashboard_config_map(rendered: list[Doc]) -> None:
    (cm,) = [
        d
        for d in of_kind(rendered, "ConfigMap")
        if d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    (raw,) = cm["data"].values()
    dashboard = json.loads(raw)
    text = json.dumps(dashboard)
    for metric in (
        "motcua_grpc_requests_total",
        "motcua_grpc_request_seconds_bucket",
        "motcua_consumer_lag",
        "motcua_outbox_backlog",
        "motcua_outbox_oldest_pending_seconds",
        "motcua_dlq_published_total",
        "motcua_dossiers",
        "motcua_dossiers_completed_total",
        "motcua_payment_payments_total",
        "motcua_payment_callback_rejections_total",
        "motcua_notify_messages_total",
    ):
        assert metric in text, metric
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "gRPC request rate",
        "gRPC server-error ratio",
        "gRPC latency p50 / p95 / p99",
        "Consumer lag",
        "Outbox backlog",
        "Outbox oldest pending age",
        "Dead-lettered records",
        "Dossiers by state",
        "On-time completion ratio",
        "Payment outcomes",
        "Payment callback rejections",
        "Notification outcomes",
    } <= titles
    # Grafana lays panels out on a 24-column grid; overlapping panels hide each other.
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & area, f"{p['title']} overlaps another panel"
        cells |= area
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("svc", SERVICES)
def test_migration_job_runs_before_install_and_upgrade(rendered: list[Doc], svc: str) -> None:
    job = one(rendered, "Job", svc, component="migration")
    ann = job["metadata"]["annotations"]
    # Helm applies the release's ordinary objects only after every pre-install/pre-upgrade hook
    # has succeeded, in ascending hook-weight order: the Deployment rolls after the migration.
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(ann["helm.sh/hook-weight"]) == 10
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    dep = one(rendered, "Deployment", svc)
    assert "helm.sh/hook" not in dep["metadata"].get("annotations", {})
    assert dep["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "--no-migrate-first"
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 0 and job["spec"]["activeDeadlineSeconds"] > 0
    # Nothing the hook needs may be an ordinary object of the release (it does not exist yet).
    assert (
        spec.get("serviceAccountName") != one(rendered, "ServiceAccount", svc)["metadata"]["name"]
    )
    (c,) = spec["containers"]
    assert c["command"] == ["python", "-m", f"motcua_{svc}", "migrate"]
    # The ConfigMap does not exist yet at pre-install: the Job carries the same settings inline.
    assert "envFrom" not in c
    env = env_of(c)
    data = one(rendered, "ConfigMap", svc)["data"]
    assert {k: env[k]["value"] for k in data} == data
    assert "secretKeyRef" in env[f"MOTCUA_{svc.upper()}_DATABASE_URL"]["valueFrom"]
    for v in spec.get("volumes", []):
        assert "configMap" not in v and "persistentVolumeClaim" not in v, v


def test_without_the_migration_job_the_service_migrates_itself(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, DEV, sets=("services.payment.migration.enabled=false",))
    assert not of_service(of_kind(docs, "Job"), "payment")
    (c,) = one(docs, "Deployment", "payment")["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "motcua_payment", "serve"]
    assert one(docs, "Job", "dossier", component="migration")


@pytest.mark.parametrize("svc", SERVICES)
def test_helm_test_pod_checks_grpc_health(rendered: list[Doc], values_file: str, svc: str) -> None:
    pod = one(rendered, "Pod", svc, component="test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"].startswith("ghcr.io/grpc-ecosystem/grpc-health-probe:")
    assert f"-addr={RELEASE}-{svc}.{NAMESPACE}.svc:50051" in c["args"]
    assert ("-tls" in c["args"]) == (values_file == PROD)


def test_grpc_health_probe_image_is_a_value(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=("global.grpcHealthProbeImage=registry.local/grpc-health-probe:v1",),
    )
    for pod in of_kind(docs, "Pod"):
        assert pod["spec"]["containers"][0]["image"] == "registry.local/grpc-health-probe:v1"


# --------------------------------------------------------------------------------------------
# Kafka topics
# --------------------------------------------------------------------------------------------


def test_kafka_topics_absent_by_default(rendered: list[Doc], values_file: str) -> None:
    expected = 8 if values_file == PROD else 0
    assert len(of_kind(rendered, "KafkaTopic")) == expected


def test_the_registry_copy_in_the_chart_is_current() -> None:
    packaged = ROOT / "packages" / "kit" / "motcua_kit" / "topics.json"
    assert (ROOT / "helm" / "motcua" / "topics.json").read_text() == packaged.read_text()


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        pytest.param(("services.dossier.replicaCount=two",), "/replicaCount", id="wrong-type"),
        pytest.param(
            ("services.notify.autoscaling.enabled=yes",),
            "/services/notify/autoscaling/enabled",
            id="wrong-type-bool",
        ),
        pytest.param(("services.payment.replicas=2",), "'replicas'", id="unknown-key"),
        pytest.param(("servicesDefaults.replicaCount=2",), "'servicesDefaults'", id="unknown-top"),
        pytest.param(("services.billing.enabled=true",), "'billing'", id="unknown-service"),
        pytest.param(
            (
                "services.audit.networkPolicy.egress.external[0].cidr=10.0.0.0/8",
                "services.audit.networkPolicy.egress.external[0].ports[0]=443",
            ),
            "/services/audit/networkPolicy/egress/external",
            id="key-of-another-service",
        ),
        pytest.param(
            ("services.dossier.alerts.callbackRejections=3",),
            "/services/dossier/alerts/callbackRejections",
            id="alert-of-another-service",
        ),
        pytest.param(
            ("serviceDefaults.database.existingSecret=motcua-db",),
            "/serviceDefaults/database/existingSecret",
            id="one-database-for-all",
        ),
        pytest.param(
            ("services.dossier.database.existingSecret=",),
            "/services/dossier/database/existingSecret",
            id="missing-database-secret",
        ),
        pytest.param(
            ("global.kafka.bootstrap=",), "/global/kafka/bootstrap", id="missing-kafka-bootstrap"
        ),
        pytest.param(
            ("global.kafka.securityProtocol=SASL_PLAIN",),
            "/global/kafka/securityProtocol",
            id="bad-enum",
        ),
        pytest.param(
            ("global.kafka.securityProtocol=SASL_SSL",),
            "/global/kafka/sasl/mechanism",
            id="sasl-needs-mechanism",
        ),
        pytest.param(
            ("kafkaTopics.enabled=true",), "/kafkaTopics/clusterName", id="topics-need-cluster"
        ),
        pytest.param(
            ("global.monitoring.serviceMonitor.enabled=maybe",),
            "/global/monitoring/serviceMonitor/enabled",
            id="tri-state",
        ),
        pytest.param(("global.environment=staging",), "/global/environment", id="environment"),
    ],
)
def test_schema_refuses_bad_values(
    helm: str, umbrella: Path, sets: tuple[str, ...], field: str
) -> None:
    output = refusal(helm, umbrella, DEV, sets=sets, lint=True)
    assert field in output, f"helm did not name {field}:\n{output}"


def test_schema_reports_every_missing_required_value_without_values_file(
    helm: str, umbrella: Path
) -> None:
    result = run_helm(helm, "lint", str(umbrella), "--kube-version", KUBE_VERSION)
    assert result.returncode != 0
    assert "/global/kafka/bootstrap" in result.stdout
    assert "/global/jwt/publicKeySecret" in result.stdout
    for svc in SERVICES:
        assert f"/services/{svc}/database/existingSecret" in result.stdout, svc


def test_tls_without_a_certificate_secret_is_refused(helm: str, umbrella: Path) -> None:
    output = refusal(helm, umbrella, DEV, sets=("global.tls.enabled=true",))
    assert re.search(r"services\.\w+\.tls\.existingSecret nor global\.tls\.existingSecret", output)


def test_a_disabled_service_is_not_installed_nor_validated(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=("services.audit.enabled=false", "services.audit.database.existingSecret="),
    )
    assert not of_service(docs, "audit")
    assert of_service(docs, "dossier")
