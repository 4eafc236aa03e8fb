"""Database roles in the chart (docs/adr/0077-postgres-roles.md): the migration Job connects as
the schema owner (database.migrationSecret), the Deployment only ever as the runtime role.

Fixtures (helm, umbrella) are in conftest.py, helpers in chart_support.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chart_support import (
    DEV,
    PROD,
    SERVICES,
    Doc,
    container,
    env_of,
    of_kind,
    one,
    refusal,
    render,
    write_values,
)


def secret_names(node: Any) -> set[str]:
    """Every Secret a pod spec refers to: secretKeyRef, secret volumes, projected sources."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("secretKeyRef", "secretRef") and isinstance(value, dict):
                found.add(value["name"])
            elif key == "secret" and isinstance(value, dict) and "secretName" in value:
                found.add(value["secretName"])
            else:
                found |= secret_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= secret_names(value)
    return found


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]


@pytest.mark.parametrize("svc", SERVICES)
def test_the_migration_job_connects_with_the_migration_secret(
    helm: str, umbrella: Path, svc: str
) -> None:
    docs = render(helm, umbrella, PROD)
    prefix = f"MOTCUA_{svc.upper()}_"
    env = env_of(container(docs, "Job", svc, "migration"))
    assert env[prefix + "MIGRATION_DATABASE_URL"] == {
        "name": prefix + "MIGRATION_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": f"motcua-{svc}-db-migrator", "key": "url"}},
    }
    # The same contract as the Deployment otherwise: its runtime URL is there too, and
    # `migrate` prefers the migration URL (ServiceHost.migrate).
    assert env[prefix + "DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"motcua-{svc}-db"


@pytest.mark.parametrize("values", [DEV, PROD])
def test_no_deployment_ever_gets_the_migration_secret(
    helm: str, umbrella: Path, values: str
) -> None:
    docs = render(helm, umbrella, values)
    for svc in SERVICES:
        dep = one(docs, "Deployment", svc)
        names = secret_names(pod_spec(dep))
        assert f"motcua-{svc}-db" in names
        assert not any(n.endswith("-migrator") for n in names), names
        (c,) = pod_spec(dep)["containers"]
        assert not [e for e in c.get("env", []) if "MIGRATION" in e["name"]]
        cm = one(docs, "ConfigMap", svc)
        assert not [k for k in cm["data"] if "MIGRATION" in k]
    # Nor any other object but the Jobs: the `helm test` pods, for one.
    for doc in docs:
        if doc["kind"] == "Job":
            continue
        spec = doc.get("spec", {})
        assert not any(n.endswith("-migrator") for n in secret_names(spec)), doc["metadata"]


def test_without_a_migration_secret_the_job_migrates_with_the_runtime_url(
    helm: str, umbrella: Path
) -> None:
    docs = render(helm, umbrella, DEV)
    for svc in SERVICES:
        env = env_of(container(docs, "Job", svc, "migration"))
        assert f"MOTCUA_{svc.upper()}_MIGRATION_DATABASE_URL" not in env
        assert secret_names(pod_spec(one(docs, "Job", svc, "migration"))) >= {f"motcua-{svc}-db"}


def test_the_migration_secret_key_and_a_null_come_from_values(
    helm: str, umbrella: Path, tmp_path: Path
) -> None:
    layer = write_values(
        tmp_path,
        "db-roles.yaml",
        {
            "serviceDefaults": {"database": {"migrationUrlKey": "migrator-url"}},
            "services": {"audit": {"database": {"migrationSecret": None}}},
        },
    )
    docs = render(helm, umbrella, PROD, layer)
    ref = env_of(container(docs, "Job", "dossier", "migration"))[
        "MOTCUA_DOSSIER_MIGRATION_DATABASE_URL"
    ]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "motcua-dossier-db-migrator", "key": "migrator-url"}
    # The runtime key is its own setting.
    dep_env = env_of(container(docs, "Deployment", "dossier"))
    assert dep_env["MOTCUA_DOSSIER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    # A null in a layer over prod removes audit's migration secret again.
    assert "MOTCUA_AUDIT_MIGRATION_DATABASE_URL" not in env_of(
        container(docs, "Job", "audit", "migration")
    )
    assert len(of_kind(docs, "Job")) == len(SERVICES)


@pytest.mark.parametrize(
    ("sets", "where"),
    [
        pytest.param(
            ("services.dossier.database.migrationSecret=",),
            "/services/dossier/database/migrationSecret",
            id="empty",
        ),
        pytest.param(
            ("services.dossier.database.migrationSecret=Bad_Name",),
            "/services/dossier/database/migrationSecret",
            id="not-a-secret-name",
        ),
        pytest.param(
            ("serviceDefaults.database.migrationSecret=motcua-db-migrator",),
            "/serviceDefaults/database/migrationSecret",
            id="shared-by-every-service",
        ),
        pytest.param(
            ("serviceDefaults.database.migrationUrlKey=",),
            "/serviceDefaults/database/migrationUrlKey",
            id="empty-key",
        ),
    ],
)
def test_the_schema_refuses_bad_migration_secrets(
    helm: str, umbrella: Path, sets: tuple[str, ...], where: str
) -> None:
    assert where in refusal(helm, umbrella, DEV, sets=sets, lint=True)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        pytest.param(
            (
                "services.payment.database.migrationSecret=motcua-payment-db-migrator",
                "services.payment.migration.enabled=false",
            ),
            "services.payment.database.migrationSecret is set but"
            " services.payment.migration.enabled is false",
            id="no-job",
        ),
        pytest.param(
            (
                "services.notify.secretEnv.MIGRATION_DATABASE_URL.secretName=motcua-notify-db-migrator",
                "services.notify.secretEnv.MIGRATION_DATABASE_URL.key=url",
            ),
            "services.notify.secretEnv.MIGRATION_DATABASE_URL would give the Deployment the"
            " migration role",
            id="secret-env",
        ),
        pytest.param(
            (
                "services.audit.extraEnv[0].name=MOTCUA_AUDIT_MIGRATION_DATABASE_URL",
                "services.audit.extraEnv[0].valueFrom.secretKeyRef.name=motcua-audit-db-migrator",
                "services.audit.extraEnv[0].valueFrom.secretKeyRef.key=url",
            ),
            "MOTCUA_AUDIT_MIGRATION_DATABASE_URL would give the Deployment the migration role",
            id="extra-env",
        ),
    ],
)
def test_the_migration_role_cannot_reach_a_deployment(
    helm: str, umbrella: Path, sets: tuple[str, ...], message: str
) -> None:
    assert message in refusal(helm, umbrella, DEV, sets=sets)


def test_the_readme_names_both_database_secrets() -> None:
    readme = (Path(__file__).resolve().parents[2] / "helm" / "README.md").read_text()
    section = readme.split("## Database roles and secrets", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "database.existingSecret",
        "database.migrationSecret",
        "migrationUrlKey",
        "MIGRATION_DATABASE_URL",
        "motcua_<svc>_app",
        "motcua_<svc>_migrator",
        "infra/postgres-roles.sql",
        "create secret generic",
    ):
        assert needed in section, needed
