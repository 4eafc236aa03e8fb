"""Settings from environment variables, one prefix per service (``MOTCUA_<SERVICE>_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service is configured with; a service subclasses it and sets its prefix.

    Defaults suit a laptop: SQLite under ``.state/``, Kafka on 127.0.0.1:9092, servers bound to
    127.0.0.1. The Helm chart sets the production values.
    """

    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_")

    service_name: str = "motcua"
    database_url: str = "sqlite:///.state/motcua.db"
    # The schema owner's URL, used only by `migrate` (and `serve`'s migrate-first step); the
    # runtime role of database_url may read and write rows but not run DDL (ADR 0077).
    # Empty: migrations run on database_url (SQLite, a laptop).
    migration_database_url: str = ""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    topic_partitions: int = Field(default=3, ge=1)  # for topics the registry does not know
    # Which column of the topic registry's partition counts applies (contracts/topics.yaml).
    environment: Literal["local", "dev", "prod"] = "local"

    bind_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    grpc_max_workers: int = Field(default=16, ge=1)

    # Exactly one of the two: the identity provider's public key file, or its JWKS URL (or OIDC
    # discovery URL ending in /.well-known/openid-configuration) so it can rotate keys (ADR 0070).
    jwt_public_key_file: Path | None = None
    jwt_jwks_url: str = ""
    # The JWKS is fetched again after this long; when it cannot be reached, the last keys keep
    # serving for at most max_stale more seconds, then every token is refused.
    jwt_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwt_jwks_max_stale_seconds: float = Field(default=3600.0, ge=0)
    jwt_issuer: str = "motcua"
    jwt_audience: str = "motcua"

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None

    otlp_endpoint: str = ""
    log_level: str = "INFO"

    outbox_relay_enabled: bool = True
    outbox_poll_seconds: float = Field(default=0.2, gt=0)
    outbox_batch_size: int = Field(default=200, ge=1)
    consumer_group: str = ""  # default: motcua-<service>
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1000)
    consumer_max_attempts: int = Field(default=3, ge=1)
    consumer_retry_backoff_seconds: float = Field(default=0.2, ge=0)
    # One database transaction per batch: at most this many records of one partition,
    # gathered from polls for at most this long once the first record is in hand.
    consumer_batch_size: int = Field(default=500, ge=1)
    consumer_batch_wait_ms: int = Field(default=10, ge=0)
    # TEST ONLY: SIGKILL the process after a batch's handlers ran, before its commit (once).
    test_kill_before_commit: bool = False
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    kafka_create_topics: bool = True
    # How stale a client's view of the topics may grow: a consumer is assigned partitions the
    # operator added, or a topic that appeared after it joined, within this long.
    # kafka-python's own default is five minutes.
    kafka_metadata_max_age_ms: int = Field(default=30_000, ge=1000)
