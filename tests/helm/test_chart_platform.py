"""What a platform team relies on (issue 16): network policy (deliver 3), the shutdown budget
(deliver 4, the chart's half), hooks and `--timeout` (5), OpenShift (6), Strimzi topics (7)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from chart_support import (
    DEV,
    OPENSHIFT,
    PROD,
    RELEASE,
    ROOT,
    SERVICES,
    Doc,
    container,
    named,
    of_kind,
    one,
    pod_specs,
    refusal,
    render,
    run_helm,
    template_args,
)

NP_ON = ("global.networkPolicy.enabled=true",)


# --------------------------------------------------------------------------------------------
# Network policy: a default-deny for the release's pods, and explicit allows
# --------------------------------------------------------------------------------------------


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector selects a pod with these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def pods(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """Every pod the chart creates (Deployments', Jobs', `helm test`'s): name -> its labels."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            out[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["template"]["metadata"][
                "labels"
            ]
        elif d["kind"] == "Pod":
            out[f"Pod/{d['metadata']['name']}"] = d["metadata"]["labels"]
    return out


def policies_for(docs: list[Doc], labels: dict[str, str]) -> list[Doc]:
    return [
        np for np in of_kind(docs, "NetworkPolicy") if selects(np["spec"]["podSelector"], labels)
    ]


def egress_ports(np: Doc) -> set[tuple[int, str]]:
    return {
        (p["port"], p["protocol"]) for rule in np["spec"].get("egress", []) for p in rule["ports"]
    }


@pytest.mark.parametrize("values", [(PROD,), (DEV,)])
def test_every_pod_is_denied_by_default_and_allowed_explicitly(
    helm: str, umbrella: Path, values: tuple[str, ...]
) -> None:
    """Found item 4: no default-deny; the migration Jobs and `helm test` pods had no policy."""
    docs = render(helm, umbrella, *values, sets=NP_ON)
    deny = named(docs, "NetworkPolicy", f"{RELEASE}-default-deny")
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    found = pods(docs)
    assert len(found) == 3 * len(SERVICES)
    for name, labels in found.items():
        chosen = policies_for(docs, labels)
        assert deny in chosen, f"{name} escapes the default-deny"
        allows = [np for np in chosen if np is not deny]
        assert len(allows) == 1, f"{name}: allowed by {[a['metadata']['name'] for a in allows]}"
        for np in allows:
            assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]


def test_the_default_deny_selects_only_this_release(helm: str, umbrella: Path) -> None:
    deny = named(render(helm, umbrella, PROD), "NetworkPolicy", f"{RELEASE}-default-deny")
    selector = deny["spec"]["podSelector"]
    assert selector["matchLabels"] == {"app.kubernetes.io/instance": RELEASE}
    other = {"app.kubernetes.io/instance": "other", "app.kubernetes.io/name": "dossier"}
    assert not selects(selector, other)
    assert not selects(selector, {"app.kubernetes.io/instance": RELEASE, "app": "unrelated"})


def test_a_service_without_network_policy_is_left_out_of_the_default_deny(
    helm: str, umbrella: Path
) -> None:
    docs = render(helm, umbrella, PROD, sets=("services.audit.networkPolicy.enabled=false",))
    for name, labels in pods(docs).items():
        chosen = policies_for(docs, labels)
        if labels["app.kubernetes.io/name"] == "audit":
            assert not chosen, f"{name} is denied, with no allow: {chosen}"
        else:
            assert len(chosen) == 2, name


@pytest.mark.parametrize("svc", SERVICES)
def test_migration_jobs_reach_dns_and_postgresql_only(helm: str, umbrella: Path, svc: str) -> None:
    docs = render(helm, umbrella, PROD)
    np = named(docs, "NetworkPolicy", f"{RELEASE}-{svc}-migrate")
    job = one(docs, "Job", svc, "migration")
    assert selects(np["spec"]["podSelector"], job["spec"]["template"]["metadata"]["labels"])
    assert "ingress" not in np["spec"]
    assert egress_ports(np) == {(53, "UDP"), (53, "TCP"), (5432, "TCP")}
    (pg,) = [r for r in np["spec"]["egress"] if r["ports"][0]["port"] == 5432]
    assert pg["to"] == [{"ipBlock": {"cidr": "10.20.30.0/24"}}]


@pytest.mark.parametrize("svc", SERVICES)
def test_the_migration_policy_exists_before_the_migration_job(
    helm: str, umbrella: Path, svc: str
) -> None:
    """On a first install nothing of the release exists while the pre-install hook runs: under a
    platform's own default-deny the Job needs its allow as a hook of a lower weight."""
    docs = render(helm, umbrella, PROD)
    np = named(docs, "NetworkPolicy", f"{RELEASE}-{svc}-migrate")["metadata"]["annotations"]
    job = one(docs, "Job", svc, "migration")["metadata"]["annotations"]
    assert np["helm.sh/hook"] == job["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(np["helm.sh/hook-weight"]) < int(job["helm.sh/hook-weight"])
    # Removed once every hook succeeded; nothing of it stays behind after an uninstall.
    assert set(np["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }


@pytest.mark.parametrize("svc", SERVICES)
def test_helm_test_pods_reach_dns_and_their_services_grpc_port_only(
    helm: str, umbrella: Path, svc: str
) -> None:
    docs = render(helm, umbrella, PROD)
    np = named(docs, "NetworkPolicy", f"{RELEASE}-{svc}-test")
    assert "helm.sh/hook" not in np["metadata"].get("annotations", {})
    assert "ingress" not in np["spec"]
    assert egress_ports(np) == {(53, "UDP"), (53, "TCP"), (50051, "TCP")}
    (grpc,) = [r for r in np["spec"]["egress"] if r["ports"][0]["port"] == 50051]
    server = one(docs, "Deployment", svc)["spec"]["template"]["metadata"]["labels"]
    (peer,) = grpc["to"]
    assert selects(peer["podSelector"], server)
    # And the server admits the test pod on that port.
    test_pod = one(docs, "Pod", svc, "test")["metadata"]["labels"]
    ingress = one(docs, "NetworkPolicy", svc, "server")["spec"]["ingress"]
    (rule,) = [r for r in ingress if r["ports"] == [{"port": 50051, "protocol": "TCP"}]]
    assert any(selects(p["podSelector"], test_pod) for p in rule["from"] if "podSelector" in p)


@pytest.mark.parametrize("svc", SERVICES)
def test_servers_reach_only_kafka_postgresql_otlp_dns_and_their_own_outside_peers(
    helm: str, umbrella: Path, svc: str
) -> None:
    np = one(render(helm, umbrella, PROD), "NetworkPolicy", svc, "server")
    external = {
        "notify": {(443, "TCP"), (587, "TCP"), (50051, "TCP")},  # providers; dossier's GetDocument
        "payment": {(443, "TCP")},
        "dossier": {(443, "TCP"), (1792, "TCP")},  # the TSA, the network HSM
    }
    assert egress_ports(np) == {
        (53, "UDP"),
        (53, "TCP"),
        (9093, "TCP"),
        (5432, "TCP"),
        (4317, "TCP"),
    } | external.get(svc, set())
    # Ingress: gRPC from the configured namespaces (and the test pod), metrics from monitoring.
    rules = {r["ports"][0]["port"]: r["from"] for r in np["spec"]["ingress"]}
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in rules[50051]
        if "namespaceSelector" in p
    }
    assert namespaces == {"motcua-portal", "motcua-integration"}
    assert rules[9100] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


# --------------------------------------------------------------------------------------------
# Shutdown: terminationGracePeriodSeconds follows SHUTDOWN_GRACE_SECONDS + preStop
# --------------------------------------------------------------------------------------------


def grace_of(docs: list[Doc], svc: str) -> tuple[int, str, str]:
    dep = one(docs, "Deployment", svc)
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    data = one(docs, "ConfigMap", svc)["data"]
    pre_stop = (
        c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["", "", "0"])
    )
    return (
        spec["terminationGracePeriodSeconds"],
        data[f"MOTCUA_{svc.upper()}_SHUTDOWN_GRACE_SECONDS"],
        pre_stop[-1],
    )


def test_the_kits_exit_margin_fits_the_charts() -> None:
    """The chart adds 5 s after the deadline; the kit's watchdog ends a process 1 s after it."""
    text = (ROOT / "packages" / "kit" / "motcua_kit" / "shutdown.py").read_text()
    (margin,) = re.findall(r"^EXIT_MARGIN_SECONDS = ([0-9.]+)$", text, re.M)
    assert float(margin) < 5


@pytest.mark.parametrize("svc", SERVICES)
def test_the_pod_grace_is_derived_from_the_shutdown_deadline(
    helm: str, umbrella: Path, svc: str
) -> None:
    assert grace_of(render(helm, umbrella, PROD), svc) == (20, "10", "5")
    docs = render(helm, umbrella, PROD, sets=(f"services.{svc}.shutdownGraceSeconds=60",))
    assert grace_of(docs, svc) == (70, "60", "5")
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=("serviceDefaults.preStopSleepSeconds=0", "serviceDefaults.shutdownGraceSeconds=25"),
    )
    assert grace_of(docs, svc) == (30, "25", "0")
    assert "lifecycle" not in container(docs, "Deployment", svc)


def test_a_grace_shorter_than_the_shutdown_deadline_is_refused(helm: str, umbrella: Path) -> None:
    """Found item 5: SHUTDOWN_GRACE_SECONDS=60 rendered next to terminationGracePeriodSeconds 30."""
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.audit.shutdownGraceSeconds=60",
            "services.audit.terminationGracePeriodSeconds=30",
        ),
    )
    assert (
        "services.audit.terminationGracePeriodSeconds (30) is shorter than preStopSleepSeconds (5)"
        " + shutdownGraceSeconds (60) + 5 s"
    ) in output


def test_a_longer_grace_may_be_set(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, DEV, sets=("services.audit.terminationGracePeriodSeconds=120",))
    assert grace_of(docs, "audit") == (120, "10", "5")
    assert grace_of(docs, "dossier")[0] == 20


def test_the_shutdown_deadline_is_one_value(helm: str, umbrella: Path) -> None:
    """The deadline comes from shutdownGraceSeconds only, so the pod grace always covers it."""
    output = refusal(helm, umbrella, DEV, sets=("services.audit.config.SHUTDOWN_GRACE_SECONDS=60",))
    assert (
        "services.audit.config.SHUTDOWN_GRACE_SECONDS: set services.audit.shutdownGraceSeconds"
        in output
    )
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.notify.extraEnv[0].name=MOTCUA_NOTIFY_SHUTDOWN_GRACE_SECONDS",
            "services.notify.extraEnv[0].value=60",
        ),
    )
    assert (
        "MOTCUA_NOTIFY_SHUTDOWN_GRACE_SECONDS: set services.notify.shutdownGraceSeconds" in output
    )


# --------------------------------------------------------------------------------------------
# Hooks: --timeout and activeDeadlineSeconds
# --------------------------------------------------------------------------------------------

HELM_DEFAULT_TIMEOUT = 300  # helm install/upgrade --timeout 5m0s


def test_the_migration_job_gives_up_before_helm_does(helm: str, umbrella: Path) -> None:
    """Found item 6: Helm waited 5 minutes for the hook, and the Job's deadline was 900 s."""
    for values in (DEV, PROD):
        for svc in SERVICES:
            job = one(render(helm, umbrella, values), "Job", svc, "migration")
            assert job["spec"]["activeDeadlineSeconds"] < HELM_DEFAULT_TIMEOUT


def test_the_readme_documents_timeout_for_install_and_upgrade() -> None:
    text = (ROOT / "helm" / "README.md").read_text()
    commands = re.findall(r"^helm (install|upgrade)\b.*$", text, re.M)
    assert commands
    for line in re.findall(r"^helm (?:install|upgrade)\b.*(?:\\\n.*)*", text, re.M):
        assert "--timeout" in line, line
    assert "activeDeadlineSeconds" in text
    # The worked example keeps the Job's deadline below the timeout it recommends.
    (timeout, deadline) = re.findall(r"--timeout (\d+)m .*activeDeadlineSeconds=(\d+)", text)[0]
    assert int(deadline) < int(timeout) * 60
    runbook = (ROOT / "docs" / "runbooks" / "migration-job-failed.md").read_text()
    assert "--timeout" in runbook and "240" in runbook


# --------------------------------------------------------------------------------------------
# OpenShift: security contexts can be overridden; restricted stays the default
# --------------------------------------------------------------------------------------------

IDS = ("runAsUser", "runAsGroup", "fsGroup")


def test_openshift_values_ask_for_no_uid_and_stay_restricted(helm: str, umbrella: Path) -> None:
    """Found item 7: fsGroup and runAsUser could not be unset, so OpenShift refused the pods."""
    docs = render(helm, umbrella, PROD, OPENSHIFT)
    specs = list(pod_specs(docs))
    assert len(specs) == 3 * len(SERVICES)
    for name, spec in specs:
        psc = spec["securityContext"]
        assert not set(IDS) & psc.keys(), name
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert not set(IDS) & sc.keys(), name
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
    dns = [r for r in one(docs, "NetworkPolicy", "audit", "server")["spec"]["egress"]]
    assert (5353, "UDP") in {(p["port"], p["protocol"]) for r in dns for p in r["ports"]}


def test_a_security_context_can_be_overridden_per_service(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.audit.podSecurityContext.runAsUser=20000",
            "services.audit.containerSecurityContext.runAsUser=20000",
            "services.dossier.podSecurityContext.fsGroup=null",
        ),
    )
    for name, spec in pod_specs(docs):
        svc = next(s for s in SERVICES if f"-{s}-" in name + "-")
        want = 20000 if svc == "audit" else 10001
        assert spec["securityContext"]["runAsUser"] == want, name
        assert spec["containers"][0]["securityContext"]["runAsUser"] == want, name
        assert ("fsGroup" in spec["securityContext"]) == (svc != "dossier"), name


def test_a_misspelt_security_context_key_is_refused(helm: str, umbrella: Path) -> None:
    output = refusal(
        helm, umbrella, DEV, sets=("serviceDefaults.podSecurityContext.runAsUsr=1",), lint=True
    )
    assert "/serviceDefaults/podSecurityContext" in output and "'runAsUsr'" in output


# --------------------------------------------------------------------------------------------
# Topics: Strimzi v1 by default, v1beta2 as an option; one value sets the partitions
# --------------------------------------------------------------------------------------------

REGISTRY = json.loads((ROOT / "helm" / "motcua" / "topics.json").read_text())


def topics(docs: list[Doc]) -> dict[str, Doc]:
    return {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic")}


def test_topics_are_strimzi_v1_by_default_and_v1beta2_on_request(helm: str, umbrella: Path) -> None:
    """Found item 8: kafka.strimzi.io/v1beta2 only, which Strimzi 1.0 no longer serves."""
    assert {t["apiVersion"] for t in of_kind(render(helm, umbrella, PROD), "KafkaTopic")} == {
        "kafka.strimzi.io/v1"
    }
    old = render(helm, umbrella, PROD, sets=("kafkaTopics.apiVersion=kafka.strimzi.io/v1beta2",))
    assert {t["apiVersion"] for t in of_kind(old, "KafkaTopic")} == {"kafka.strimzi.io/v1beta2"}
    output = refusal(
        helm, umbrella, PROD, sets=("kafkaTopics.apiVersion=kafka.strimzi.io/v1alpha1",), lint=True
    )
    assert "/kafkaTopics/apiVersion" in output


def test_topics_refuse_a_cluster_without_strimzi(helm: str, umbrella: Path) -> None:
    """Found item 11: prod values against a cluster without Strimzi's CRDs failed late, with
    "no matches for kind KafkaTopic"; ServiceMonitor was already gated on its API."""
    output = refusal(helm, umbrella, PROD)
    assert "kafkaTopics.enabled is true" in output and "kafka.strimzi.io/v1" in output
    assert "Install Strimzi" in output
    old = refusal(helm, umbrella, PROD, sets=("kafkaTopics.apiVersion=kafka.strimzi.io/v1beta2",))
    assert "does not serve kafka.strimzi.io/v1beta2" in old
    # "auto" follows the cluster, as the monitoring objects do.
    auto = ("kafkaTopics.enabled=auto",)
    without = run_helm(helm, *template_args(umbrella, (PROD,), auto, (), strimzi=False))
    assert without.returncode == 0, without.stderr
    assert "kind: KafkaTopic" not in without.stdout
    assert len(topics(render(helm, umbrella, PROD, sets=auto))) == 8


def test_one_value_sets_the_partitions(helm: str, umbrella: Path) -> None:
    """Found item 8: global.kafka.topicPartitions=6 left the topics at 12."""
    docs = render(helm, umbrella, PROD, sets=("global.kafka.topicPartitions=6",))
    found = topics(docs)
    assert len(found) == 8
    for spec in REGISTRY["topics"]:
        assert found[spec["name"]]["spec"]["partitions"] == 6
        assert found[spec["name"] + ".dlq"]["spec"]["partitions"] == spec["dlq"]["partitions"]
    for svc in SERVICES:
        assert one(docs, "ConfigMap", svc)["data"][f"MOTCUA_{svc.upper()}_TOPIC_PARTITIONS"] == "6"


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_without_the_value_the_registry_counts_for_the_environment_apply(
    helm: str, umbrella: Path, environment: str
) -> None:
    docs = render(
        helm,
        umbrella,
        PROD,
        sets=("global.kafka.topicPartitions=0", f"global.environment={environment}"),
    )
    found = topics(docs)
    for spec in REGISTRY["topics"]:
        main, dlq = found[spec["name"]], found[spec["name"] + ".dlq"]
        assert main["spec"]["partitions"] == spec["partitions"][environment]
        assert main["spec"]["config"]["retention.ms"] == spec["retention_days"] * 86_400_000
        assert dlq["spec"]["config"]["retention.ms"] == spec["dlq"]["retention_days"] * 86_400_000
        assert main["metadata"]["labels"]["strimzi.io/cluster"] == "motcua-kafka"
        assert main["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for svc in SERVICES:
        data = one(docs, "ConfigMap", svc)["data"]
        assert data[f"MOTCUA_{svc.upper()}_ENVIRONMENT"] == environment
        assert f"MOTCUA_{svc.upper()}_TOPIC_PARTITIONS" not in data


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (("kafkaTopics.overrides.motcua\\.audit\\.v1.partitions=2",), "'partitions'"),
        (("kafkaTopics.environment=dev",), "'environment'"),
        (("services.dossier.topicPartitions=4",), "'topicPartitions'"),
    ],
)
def test_there_is_no_second_value_for_the_partitions(
    helm: str, umbrella: Path, sets: tuple[str, ...], field: str
) -> None:
    assert field in refusal(helm, umbrella, PROD, sets=sets, lint=True)


def test_partitions_the_services_would_not_create_are_refused(helm: str, umbrella: Path) -> None:
    """The services create the registry's topics with the registry's counts (motcua_kit.kafka):
    with createTopics on, another count would be silently ignored."""
    output = refusal(helm, umbrella, DEV, sets=("global.kafka.topicPartitions=6",))
    assert "global.kafka.topicPartitions is 6 but global.kafka.createTopics is true" in output
    docs = render(helm, umbrella, DEV, sets=("global.kafka.topicPartitions=3",))
    assert one(docs, "ConfigMap", "audit")["data"]["MOTCUA_AUDIT_TOPIC_PARTITIONS"] == "3"
