"""The chart's Kafka security values map onto the settings the kit reads (ADR 0084).

The secured broker of tests/integration/test_kafka_sasl_acls.py runs SASL_SSL with
SCRAM-SHA-512 users, a CA file, and principals without CREATE; what the prod values render
must parse, through ServiceSettings, into exactly such a client.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_support import PROD, SERVICES, container, env_of, one, render
from pydantic_settings import SettingsConfigDict

from motcua_kit.kafka import security_options
from motcua_kit.settings import ServiceSettings


@pytest.mark.parametrize("svc", SERVICES)
def test_prod_values_render_a_sasl_ssl_client_the_kit_reads(
    helm: str, umbrella: Path, svc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(helm, umbrella, PROD)
    prefix = f"MOTCUA_{svc.upper()}_"
    data = one(docs, "ConfigMap", svc)["data"]
    c = container(docs, "Deployment", svc)
    kafka_keys = {k.removeprefix(prefix).lower() for k in data if k.startswith(prefix + "KAFKA_")}
    # extra="ignore": a misspelt name would be dropped silently, so every one must be a field.
    assert kafka_keys <= set(ServiceSettings.model_fields), kafka_keys - set(
        ServiceSettings.model_fields
    )
    password = env_of(c)[prefix + "KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": f"motcua-{svc}", "key": "password"}
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(prefix + "KAFKA_SASL_PASSWORD", "from-the-secret")

    class Settings(ServiceSettings):
        model_config = SettingsConfigDict(extra="ignore", env_prefix=prefix)

    s = Settings()
    assert security_options(s) == {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": data[prefix + "KAFKA_SSL_CAFILE"],
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": f"motcua-{svc}",
        "sasl_plain_password": "from-the-secret",
    }
    mount = next(m for m in c["volumeMounts"] if m["name"] == "kafka-ca")
    assert s.kafka_ssl_cafile.startswith(mount["mountPath"] + "/")
    # The principals may not create topics: the chart's KafkaTopic objects do.
    assert s.kafka_create_topics is False
