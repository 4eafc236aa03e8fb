"""Values that refuse mistakes (issue 16, deliver 1 and 2), and how the values are laid out.

Each refusal has its own test, with the value that the message must name. The schema
(helm/motcua/values.schema.json) refuses on lint, template and install; the checks that combine
or compare values (helm/motcua-lib/templates/_validate.tpl) refuse on template and install
(Helm's lint mode only logs a template's `fail`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from chart_support import (
    DEV,
    PROD,
    RELEASE,
    SERVICES,
    container,
    env_of,
    named,
    of_kind,
    one,
    pod_specs,
    refusal,
    render,
    write_values,
)

DIGEST = "sha256:" + "ab" * 32


# --------------------------------------------------------------------------------------------
# Layout: serviceDefaults, then services.<service> over it
# --------------------------------------------------------------------------------------------


def test_a_service_block_overrides_service_defaults_key_by_key(
    helm: str, umbrella: Path, tmp_path: Path
) -> None:
    values = write_values(
        tmp_path,
        "merge.yaml",
        {
            "serviceDefaults": {
                "resources": {"limits": {"memory": "640Mi"}},
                "podLabels": {"team": "platform"},
                "tolerations": [{"key": "a", "operator": "Exists"}],
            },
            "services": {
                "audit": {
                    "resources": {"requests": {"memory": "256Mi"}},
                    "podLabels": {"tier": "evidence"},
                    "tolerations": [{"key": "b", "operator": "Exists"}],
                    "autoscaling": {"enabled": False},
                }
            },
        },
    )
    docs = render(helm, umbrella, DEV, values)
    audit = one(docs, "Deployment", "audit")["spec"]["template"]
    dossier = one(docs, "Deployment", "dossier")["spec"]["template"]
    # Maps merge at every depth: values-dev's requests.cpu and limits.cpu stay.
    assert audit["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "50m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "640Mi"},
    }
    assert dossier["spec"]["containers"][0]["resources"]["requests"]["memory"] == "128Mi"
    assert audit["metadata"]["labels"]["team"] == "platform"
    assert audit["metadata"]["labels"]["tier"] == "evidence"
    # Lists replace, and false overrides true.
    assert audit["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]
    assert dossier["spec"]["tolerations"] == [{"key": "a", "operator": "Exists"}]
    assert "audit" not in {
        d["metadata"]["labels"]["app.kubernetes.io/name"]
        for d in of_kind(docs, "HorizontalPodAutoscaler")
    }


def test_service_defaults_must_stay_complete(helm: str, umbrella: Path) -> None:
    output = refusal(helm, umbrella, DEV, sets=("serviceDefaults.migration=null",), lint=True)
    assert "/serviceDefaults" in output and "'migration'" in output


# --------------------------------------------------------------------------------------------
# Required secret names
# --------------------------------------------------------------------------------------------


def test_the_jwt_public_key_secret_is_required(helm: str, umbrella: Path) -> None:
    """Found item 1: every pod would exit with "MOTCUA_<SVC>_JWT_PUBLIC_KEY_FILE is not set"."""
    output = refusal(helm, umbrella, DEV, sets=("global.jwt.publicKeySecret=",), lint=True)
    assert "/global/jwt/publicKeySecret" in output


def test_the_jwt_public_key_secret_cannot_be_left_out(
    helm: str, umbrella: Path, tmp_path: Path
) -> None:
    dev = yaml.safe_load((umbrella / DEV).read_text())
    del dev["global"]["jwt"]["publicKeySecret"]
    output = refusal(helm, umbrella, write_values(tmp_path, "no-jwt.yaml", dev), lint=True)
    assert "/global/jwt/publicKeySecret" in output or "'publicKeySecret'" in output


JWKS = ("global.jwt.publicKeySecret=", "global.jwt.jwksUrl=https://idp.example/realms/motcua")


def test_a_jwks_url_replaces_the_public_key_secret(helm: str, umbrella: Path) -> None:
    """ADR 0070: keys that rotate come from the issuer's JWKS; the chart could not say so, and
    with NetworkPolicy on, the default-deny would have blocked the fetch."""
    docs = render(helm, umbrella, PROD, sets=JWKS)
    for svc in SERVICES:
        env = env_of(container(docs, "Deployment", svc))
        data = one(docs, "ConfigMap", svc)["data"]
        prefix = f"MOTCUA_{svc.upper()}_"
        assert data[prefix + "JWT_JWKS_URL"] == "https://idp.example/realms/motcua"
        assert (
            prefix + "JWT_PUBLIC_KEY_FILE" not in data and prefix + "JWT_PUBLIC_KEY_FILE" not in env
        )
        spec = one(docs, "Deployment", svc)["spec"]["template"]["spec"]
        assert "jwt" not in {v["name"] for v in spec.get("volumes", [])}
        policy = named(docs, "NetworkPolicy", f"{RELEASE}-{svc}")
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
        assert 443 in ports
    # Without the URL no egress to the identity provider is opened.
    plain = render(helm, umbrella, PROD)
    policy = named(plain, "NetworkPolicy", f"{RELEASE}-audit")
    assert 443 not in {p["port"] for r in policy["spec"]["egress"] for p in r.get("ports", [])}


def test_a_jwks_url_and_a_public_key_secret_are_refused_together(helm: str, umbrella: Path) -> None:
    both = ("global.jwt.jwksUrl=https://idp.example/jwks",)
    output = refusal(helm, umbrella, DEV, sets=both, lint=True)
    assert "/global/jwt/publicKeySecret" in output
    bad = refusal(
        helm, umbrella, DEV, sets=(*JWKS[:1], "global.jwt.jwksUrl=idp.example"), lint=True
    )
    assert "/global/jwt/jwksUrl" in bad


SASL = ("global.kafka.securityProtocol=SASL_SSL", "global.kafka.sasl.mechanism=SCRAM-SHA-512")


def test_sasl_needs_the_password_secret(helm: str, umbrella: Path) -> None:
    """Found item 1: SASL_SSL with no Secret rendered pods without any password."""
    output = refusal(helm, umbrella, DEV, sets=(*SASL, "global.kafka.sasl.username=motcua"))
    assert re.search(
        r"services\.\w+\.kafka\.sasl\.existingSecret nor global\.kafka\.sasl\.existingSecret",
        output,
    ), output


def test_sasl_needs_the_password_secret_of_every_service(helm: str, umbrella: Path) -> None:
    own = tuple(
        f"services.{svc}.kafka.sasl.{key}=motcua-{svc}"
        for svc in ("dossier", "notify", "audit")
        for key in ("username", "existingSecret")
    )
    payment_user = "services.payment.kafka.sasl.username=motcua-payment"
    output = refusal(helm, umbrella, DEV, sets=(*SASL, *own, payment_user))
    assert "services.payment.kafka.sasl.existingSecret nor global" in output
    # With payment's too, it renders, each pod with its own password.
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=(
            *SASL,
            *own,
            payment_user,
            "services.payment.kafka.sasl.existingSecret=motcua-payment",
        ),
    )
    for svc in SERVICES:
        ref = env_of(container(docs, "Deployment", svc))[
            f"MOTCUA_{svc.upper()}_KAFKA_SASL_PASSWORD"
        ]
        assert ref["valueFrom"]["secretKeyRef"]["name"] == f"motcua-{svc}"


def test_sasl_needs_a_username(helm: str, umbrella: Path) -> None:
    output = refusal(
        helm, umbrella, DEV, sets=(*SASL, "global.kafka.sasl.existingSecret=motcua-kafka")
    )
    assert re.search(
        r"services\.\w+\.kafka\.sasl\.username nor global\.kafka\.sasl\.username", output
    ), output


def test_the_database_url_secret_is_required(helm: str, umbrella: Path) -> None:
    output = refusal(
        helm, umbrella, DEV, sets=("services.notify.database.existingSecret=",), lint=True
    )
    assert "/services/notify/database/existingSecret" in output


# --------------------------------------------------------------------------------------------
# Kubernetes quantities
# --------------------------------------------------------------------------------------------

BAD_QUANTITIES = ["512mi", "-1Gi", "1.2.3Gi", "500mm", "1 Gi", "Gi", "1GiB", "0x10", ""]
QUANTITY_VALUES = (
    "services.dossier.resources.requests.memory",
    "services.payment.resources.limits.cpu",
    "serviceDefaults.resources.limits.ephemeral-storage",
    "services.audit.migration.resources.requests.cpu",
    "services.notify.autoscaling.consumerLag.averageValue",
    "serviceDefaults.tmpSizeLimit",
)


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_a_quantity_outside_the_kubernetes_grammar_is_refused(
    helm: str, umbrella: Path, tmp_path: Path, quantity: str
) -> None:
    """Found item 2: 512mi, -1Gi, 1.2.3Gi and 500mm passed every check. The schema reports
    every error at once: one values file puts the quantity at each place that takes one."""
    doc: dict = {}
    for value in QUANTITY_VALUES:
        keys = value.split(".")
        node = doc
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = quantity
    # A migration block must be complete; only the cpu request is wrong in it.
    migration = doc["services"]["audit"]["migration"]["resources"]
    migration["requests"]["memory"] = "128Mi"
    migration["limits"] = {"memory": "256Mi"}
    output = refusal(helm, umbrella, DEV, write_values(tmp_path, "q.yaml", doc), lint=True)
    for value in QUANTITY_VALUES:
        assert "/" + value.replace(".", "/") + "'" in output, (value, output)


@pytest.mark.parametrize(
    "quantity", ["512Mi", "1Gi", "250m", "0.5", "1", "+1", ".5", "1e3", 2, 0.25]
)
def test_a_quantity_in_the_kubernetes_grammar_passes(
    helm: str, umbrella: Path, tmp_path: Path, quantity: str | float
) -> None:
    values = {"serviceDefaults": {"resources": {"requests": {"cpu": "0", "memory": "0"}}}}
    values["serviceDefaults"]["resources"]["limits"] = {"cpu": quantity, "memory": quantity}
    docs = render(helm, umbrella, DEV, write_values(tmp_path, "q.yaml", values))
    limits = container(docs, "Deployment", "dossier")["resources"]["limits"]
    # YAML reads an unquoted 1e3 as the number 1000: the same quantity.
    assert str(limits["cpu"]) == str(quantity) or float(limits["cpu"]) == float(quantity)


# --------------------------------------------------------------------------------------------
# Comparisons in the templates: min <= max replicas, requests <= limits
# --------------------------------------------------------------------------------------------


def test_min_replicas_above_max_replicas_is_refused(helm: str, umbrella: Path) -> None:
    """Found item 2: autoscaling.minReplicas=3 with maxReplicas=2 passed."""
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.dossier.autoscaling.minReplicas=3",
            "services.dossier.autoscaling.maxReplicas=2",
        ),
    )
    assert (
        "services.dossier.autoscaling.minReplicas (3) is above "
        "services.dossier.autoscaling.maxReplicas (2)"
    ) in output


def test_replica_bounds_do_not_matter_without_autoscaling(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.dossier.autoscaling.enabled=false",
            "services.dossier.autoscaling.minReplicas=3",
            "services.dossier.autoscaling.maxReplicas=2",
        ),
    )
    assert one(docs, "Deployment", "dossier")["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("resource", "requested", "limit"),
    [
        ("cpu", "2", "1"),
        ("cpu", "1500m", "1"),
        ("cpu", "1.1", "1050m"),
        ("memory", "1Gi", "512Mi"),
        ("memory", "1025Mi", "1Gi"),
        ("memory", "2e9", "1Gi"),
        ("ephemeral-storage", "2Gi", "1G"),
    ],
)
def test_a_request_above_its_limit_is_refused(
    helm: str, umbrella: Path, resource: str, requested: str, limit: str
) -> None:
    """Found item 2: cpu requests above limits passed."""
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=(
            f"services.payment.resources.requests.{resource}={requested}",
            f"services.payment.resources.limits.{resource}={limit}",
        ),
    )
    assert (
        f"services.payment.resources.requests.{resource} ({requested}) is above "
        f"services.payment.resources.limits.{resource} ({limit})"
    ) in output


@pytest.mark.parametrize(
    ("requested", "limit"),
    [("1024Mi", "1Gi"), ("1e9", "1Gi"), ("1000m", "1"), ("500Mi", "0.5Gi"), ("1k", "1Ki")],
)
def test_a_request_at_or_below_its_limit_passes(
    helm: str, umbrella: Path, requested: str, limit: str
) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=(
            f"services.payment.resources.requests.memory={requested}",
            f"services.payment.resources.limits.memory={limit}",
        ),
    )
    assert str(container(docs, "Deployment", "payment")["resources"]["limits"]["memory"]) == limit


def test_requests_above_limits_in_service_defaults_are_refused(helm: str, umbrella: Path) -> None:
    output = refusal(helm, umbrella, DEV, sets=("serviceDefaults.resources.requests.cpu=2",))
    assert re.search(r"services\.\w+\.resources\.requests\.cpu \(2\) is above", output), output


# --------------------------------------------------------------------------------------------
# Migration resources
# --------------------------------------------------------------------------------------------


def test_migration_resources_are_validated(helm: str, umbrella: Path) -> None:
    """Found item 2: migration.resources was not validated at all."""
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=("services.dossier.migration.resources.limits.memory=1Gi",),
        lint=True,
    )
    assert "/services/dossier/migration/resources" in output and "'requests'" in output
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=("services.dossier.migration.resources.limit.memory=1Gi",),
        lint=True,
    )
    assert "'limit'" in output


def test_migration_requests_above_limits_are_refused(helm: str, umbrella: Path) -> None:
    output = refusal(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.audit.migration.resources.requests.cpu=1",
            "services.audit.migration.resources.requests.memory=2Gi",
            "services.audit.migration.resources.limits.memory=1Gi",
        ),
    )
    assert "services.audit.migration.resources.requests.memory (2Gi) is above" in output


def test_complete_migration_resources_are_used_by_the_job(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=(
            "services.audit.migration.resources.requests.cpu=200m",
            "services.audit.migration.resources.requests.memory=256Mi",
            "services.audit.migration.resources.limits.memory=1Gi",
        ),
    )
    assert container(docs, "Job", "audit", "migration")["resources"] == {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert (
        container(docs, "Job", "dossier", "migration")["resources"]
        == container(docs, "Deployment", "dossier")["resources"]
    )


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def images(docs: list) -> dict[str, str]:
    return {
        name: c["image"]
        for name, spec in pod_specs(docs)
        for c in spec["containers"]
        if "grpc-health-probe" not in c["image"]
    }


def test_the_image_tag_defaults_to_the_umbrella_charts_app_version(
    helm: str, umbrella: Path, tmp_path: Path
) -> None:
    """Found item 3: bumping appVersion in helm/motcua/Chart.yaml still rendered :0.1.0."""
    bumped = tmp_path / "motcua"
    shutil.copytree(umbrella, bumped)
    meta = (bumped / "Chart.yaml").read_text()
    (bumped / "Chart.yaml").write_text(meta.replace('appVersion: "0.1.0"', 'appVersion: "0.2.0"'))
    docs = render(helm, bumped, DEV)
    found = images(docs)
    assert len(found) == 2 * len(SERVICES)
    for name, image in found.items():
        assert image.endswith(":0.2.0"), (name, image)


def test_a_null_tag_is_the_app_version(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, DEV, sets=("services.dossier.image.tag=null",))
    assert container(docs, "Deployment", "dossier")["image"] == "motcua/dossier:0.1.0"


@pytest.mark.parametrize("tag", ["", "v1 2", "-rc1", "a" * 129, "1.0@x"])
def test_a_bad_image_tag_is_refused(helm: str, umbrella: Path, tag: str) -> None:
    """Found item 3: an empty tag silently became the default, and `v1 2` was accepted."""
    output = refusal(helm, umbrella, DEV, sets=(f"services.notify.image.tag={tag}",), lint=True)
    assert "/services/notify/image/tag" in output


def test_a_digest_wins_over_the_tag(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        PROD,
        sets=(f"services.audit.image.digest={DIGEST}", "services.audit.image.tag=9.9.9"),
    )
    assert container(docs, "Deployment", "audit")["image"] == (
        f"registry.motcua.example/motcua/audit@{DIGEST}"
    )
    assert container(docs, "Job", "audit", "migration")["image"].endswith(f"@{DIGEST}")
    assert container(docs, "Deployment", "dossier")["image"].endswith("motcua/dossier:0.1.0")
    assert refusal(
        helm, umbrella, PROD, sets=("services.audit.image.digest=sha256:abc",), lint=True
    )


def test_prod_requires_an_image_registry(helm: str, umbrella: Path) -> None:
    """Found item 3: with the registry empty, images came from docker.io/motcua/*."""
    output = refusal(helm, umbrella, PROD, sets=("global.imageRegistry=",))
    assert "global.imageRegistry (or services." in output
    assert "docker.io" in output
    # A service's own registry is enough for that service, not for the others.
    output = refusal(
        helm,
        umbrella,
        PROD,
        sets=("global.imageRegistry=", "services.audit.image.registry=mirror.example:5000"),
    )
    assert "motcua audit:" not in output


def test_every_prod_image_names_its_registry(helm: str, umbrella: Path) -> None:
    for name, image in images(render(helm, umbrella, PROD)).items():
        assert image.startswith("registry.motcua.example/motcua/"), (name, image)


def test_dev_may_run_images_without_a_registry(helm: str, umbrella: Path) -> None:
    for name, image in images(render(helm, umbrella, DEV)).items():
        assert re.fullmatch(r"motcua/\w+:0\.1\.0", image), (name, image)


def test_the_environment_defaults_to_prod(helm: str, umbrella: Path, tmp_path: Path) -> None:
    dev = yaml.safe_load((umbrella / DEV).read_text())
    del dev["global"]["environment"]
    output = refusal(helm, umbrella, write_values(tmp_path, "no-env.yaml", dev))
    assert "global.imageRegistry" in output
