"""The signed papers in the chart (issue 18): the dossier's keyring and its files, notify's
fetch from dossier (settings, token file, NetworkPolicy on both sides), and the refusals of
_validate.tpl for the mistakes a platform team can make turning them on."""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_support import (
    DEV,
    PROD,
    RELEASE,
    Doc,
    container,
    one,
    refusal,
    render,
    write_values,
)

FILES = "/etc/motcua/files"
NP_ON = ("global.networkPolicy.enabled=true",)
# notify fetching papers in a dev render: the target, the token file.
FETCH = (
    "services.notify.config.DOSSIER_GRPC_TARGET=motcua-dossier:50051",
    "services.notify.secretFiles.DOSSIER_TOKEN_FILE.secretName=motcua-notify-dossier-token",
    "services.notify.secretFiles.DOSSIER_TOKEN_FILE.key=token",
)


def server_labels(docs: list[Doc], svc: str) -> dict[str, str]:
    labels: dict[str, str] = one(docs, "Deployment", svc)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def grpc_rules_between(docs: list[Doc]) -> tuple[list[Doc], list[Doc]]:
    """(notify's egress rules to the dossier pods, dossier's ingress peers that are notify)."""
    dossier, notify = server_labels(docs, "dossier"), server_labels(docs, "notify")
    egress = [
        rule
        for rule in one(docs, "NetworkPolicy", "notify", "server")["spec"]["egress"]
        if any(
            "podSelector" in p and selects(p["podSelector"], dossier) for p in rule.get("to", [])
        )
    ]
    peers = [
        (rule["ports"], peer)
        for rule in one(docs, "NetworkPolicy", "dossier", "server")["spec"]["ingress"]
        for peer in rule["from"]
        if "podSelector" in peer and selects(peer["podSelector"], notify)
    ]
    return egress, [{"ports": ports, "peer": peer} for ports, peer in peers]


# --------------------------------------------------------------------------------------------
# Files from Secrets
# --------------------------------------------------------------------------------------------


def test_prod_keyring_and_its_files_are_mounted_read_only_where_the_settings_point(
    helm: str, umbrella: Path
) -> None:
    docs = render(helm, umbrella, PROD)
    data = one(docs, "ConfigMap", "dossier")["data"]
    assert data["MOTCUA_DOSSIER_DOCUMENTS_KEYRING"] == f"{FILES}/documents-keyring/keyring.yaml"
    assert data["MOTCUA_DOSSIER_DOCUMENTS_TSA_URL"].startswith("https://")
    spec = one(docs, "Deployment", "dossier")["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for setting, secret in (
        ("DOCUMENTS_KEYRING", "motcua-dossier-keyring"),
        ("DOCUMENTS_PIN_FILE", "motcua-dossier-hsm"),
        ("DOCUMENTS_ROOT_FILE", "motcua-dossier-pki"),
    ):
        path = data[f"MOTCUA_DOSSIER_{setting}"]
        directory, key = path.rsplit("/", 1)
        mount = mounts[directory]
        assert mount["readOnly"] is True
        volume = volumes[mount["name"]]["secret"]
        assert volume["secretName"] == secret
        assert volume["items"] == [{"key": key, "path": key}]


def test_prod_notify_fetches_with_a_mounted_token_over_mtls(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, PROD)
    data = one(docs, "ConfigMap", "notify")["data"]
    assert data["MOTCUA_NOTIFY_DOSSIER_GRPC_TARGET"] == f"{RELEASE}-dossier:50051"
    token = data["MOTCUA_NOTIFY_DOSSIER_TOKEN_FILE"]
    assert token == f"{FILES}/dossier-token-file/token"
    c = container(docs, "Deployment", "notify")
    (mount,) = [m for m in c["volumeMounts"] if token.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    tls = next(m for m in c["volumeMounts"] if m["name"] == "tls")["mountPath"]
    for setting in ("CA", "CERT", "KEY"):
        assert data[f"MOTCUA_NOTIFY_DOSSIER_GRPC_{setting}_FILE"].startswith(tls + "/")
    assert "MOTCUA_NOTIFY_DOSSIER_TOKEN_FILE" not in {e["name"] for e in c.get("env", [])}


# --------------------------------------------------------------------------------------------
# NetworkPolicy: notify -> dossier's gRPC port, the TSA and the HSM
# --------------------------------------------------------------------------------------------


def test_notify_reaches_dossiers_grpc_port_when_it_fetches_papers(
    helm: str, umbrella: Path
) -> None:
    docs = render(helm, umbrella, PROD)
    egress, ingress = grpc_rules_between(docs)
    assert egress == [
        {
            "ports": [{"port": 50051, "protocol": "TCP"}],
            "to": [{"podSelector": one(docs, "Deployment", "dossier")["spec"]["selector"]}],
        }
    ]
    (allowed,) = ingress
    assert allowed["ports"] == [{"port": 50051, "protocol": "TCP"}]
    # only notify's server pods, not its migration Job or test pod
    assert allowed["peer"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"


def test_without_a_target_notify_and_dossier_stay_apart(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, DEV, sets=NP_ON)
    assert grpc_rules_between(docs) == ([], [])


def test_the_rules_follow_dossiers_grpc_port(helm: str, umbrella: Path) -> None:
    docs = render(helm, umbrella, DEV, sets=(*NP_ON, *FETCH, "services.dossier.ports.grpc=50071"))
    egress, ingress = grpc_rules_between(docs)
    assert [r["ports"] for r in egress] == [[{"port": 50071, "protocol": "TCP"}]]
    assert [r["ports"] for r in ingress] == [[{"port": 50071, "protocol": "TCP"}]]


def test_notify_keeps_its_rule_when_only_notify_has_network_policy(
    helm: str, umbrella: Path
) -> None:
    docs = render(helm, umbrella, DEV, sets=("services.notify.networkPolicy.enabled=true", *FETCH))
    (rule,) = [
        r
        for r in one(docs, "NetworkPolicy", "notify", "server")["spec"]["egress"]
        if r["ports"] == [{"port": 50051, "protocol": "TCP"}]
    ]
    assert selects(rule["to"][0]["podSelector"], server_labels(docs, "dossier"))


def test_dossier_reaches_the_tsa_and_the_hsm_as_external_egress(helm: str, umbrella: Path) -> None:
    egress = one(render(helm, umbrella, PROD), "NetworkPolicy", "dossier", "server")["spec"][
        "egress"
    ]
    external = {
        (peer["ipBlock"]["cidr"], port["port"])
        for rule in egress
        for peer in rule.get("to", [])
        if "ipBlock" in peer
        for port in rule["ports"]
    }
    assert {("198.51.100.80/32", 443), ("10.20.40.10/32", 1792)} <= external


# --------------------------------------------------------------------------------------------
# Refusals (_validate.tpl)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        pytest.param(
            ("services.dossier.config.DOCUMENTS_KEYRING=/etc/motcua/keyring.yaml",),
            "services.dossier.config.DOCUMENTS_KEYRING (/etc/motcua/keyring.yaml) is not a file "
            "the chart mounts: give it as services.dossier.secretFiles.DOCUMENTS_KEYRING",
            id="keyring-path-not-mounted",
        ),
        pytest.param(
            (
                "services.dossier.secretFiles.DOCUMENTS_KEYRING.secretName=motcua-dossier-keyring",
                "services.dossier.secretFiles.DOCUMENTS_KEYRING.key=keyring.yaml",
                "services.dossier.config.DOCUMENTS_KEYRING=/etc/motcua/files/keyring.yaml",
            ),
            "services.dossier.config.DOCUMENTS_KEYRING (/etc/motcua/files/keyring.yaml) is not a "
            "file the chart mounts",
            id="keyring-path-beside-the-mount",
        ),
        pytest.param(
            ("services.dossier.config.DOCUMENTS_PIN=1234",),
            "services.dossier.config.DOCUMENTS_PIN looks like a PIN or passphrase, and values "
            "never hold secrets: the keyring reads PINs and passphrases from files, so mount it "
            "with services.dossier.secretFiles.DOCUMENTS_PIN_FILE",
            id="pin-in-config",
        ),
        pytest.param(
            ("services.dossier.config.STP_PASSPHRASE=hunter2",),
            "services.dossier.config.STP_PASSPHRASE looks like a PIN or passphrase",
            id="passphrase-in-config",
        ),
        pytest.param(
            (
                "services.notify.secretEnv.DOSSIER_TOKEN_FILE.secretName=motcua-notify-dossier-token",
                "services.notify.secretEnv.DOSSIER_TOKEN_FILE.key=token",
            ),
            "services.notify.secretEnv.DOSSIER_TOKEN_FILE would set "
            "MOTCUA_NOTIFY_DOSSIER_TOKEN_FILE to the Secret's content",
            id="token-file-as-secret-env",
        ),
        pytest.param(
            ("services.notify.config.DOSSIER_TOKEN_FILE=/var/run/secrets/token",),
            "services.notify.config.DOSSIER_TOKEN_FILE (/var/run/secrets/token) is not a file "
            "the chart mounts",
            id="token-path-not-mounted",
        ),
        pytest.param(
            ("services.notify.config.DOSSIER_GRPC_TARGET=motcua-dossier:50051",),
            "services.notify.config.DOSSIER_GRPC_TARGET is set but "
            "services.notify.secretFiles.DOSSIER_TOKEN_FILE is not",
            id="target-without-token",
        ),
        pytest.param(
            (*FETCH, "global.tls.enabled=true", "global.tls.existingSecret=motcua-tls"),
            "the dossier service serves gRPC over TLS, but "
            "services.notify.config.DOSSIER_GRPC_CA_FILE is not set",
            id="target-without-ca-under-tls",
        ),
    ],
)
def test_a_mistake_turning_the_papers_on_is_refused(
    helm: str, umbrella: Path, sets: tuple[str, ...], message: str
) -> None:
    output = refusal(helm, umbrella, DEV, sets=sets)
    assert message in output, output
    assert "hunter2" not in output and "1234" not in output, "the refusal repeats the secret"


def test_a_keyring_path_that_secret_files_mounts_passes(
    helm: str, umbrella: Path, tmp_path: Path
) -> None:
    path = f"{FILES}/documents-keyring/keyring.yaml"
    values = {
        "services": {
            "dossier": {
                "secretFiles": {
                    "DOCUMENTS_KEYRING": {
                        "secretName": "motcua-dossier-keyring",
                        "key": "keyring.yaml",
                    }
                },
                "config": {"DOCUMENTS_KEYRING": path},
            }
        }
    }
    docs = render(helm, umbrella, DEV, write_values(tmp_path, "keyring.yaml", values))
    assert one(docs, "ConfigMap", "dossier")["data"]["MOTCUA_DOSSIER_DOCUMENTS_KEYRING"] == path


def test_a_fetch_under_tls_with_the_ca_passes(helm: str, umbrella: Path) -> None:
    docs = render(
        helm,
        umbrella,
        DEV,
        sets=(
            *FETCH,
            "global.tls.enabled=true",
            "global.tls.existingSecret=motcua-tls",
            "services.notify.config.DOSSIER_GRPC_CA_FILE=/etc/motcua/tls/ca.crt",
        ),
    )
    data = one(docs, "ConfigMap", "notify")["data"]
    assert data["MOTCUA_NOTIFY_DOSSIER_GRPC_CA_FILE"] == "/etc/motcua/tls/ca.crt"
