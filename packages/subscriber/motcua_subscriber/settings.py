"""A subscriber's configuration, from ``MOTCUA_SUBSCRIBER_*`` environment variables by default.

Only what a subscriber needs: where Kafka and its own database are, its consumer group, and the
retry bound before a record is dead-lettered. A subscriber that wants its own prefix subclasses
it and sets ``model_config``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from motcua_kit.settings import ServiceSettings


class SubscriberSettings(BaseSettings):
    """Kafka, database and retry settings of one subscriber."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_SUBSCRIBER_")

    # The subscriber's own database: its projection tables and the inbox of processed event ids
    # live here, so effects and the id commit together.
    database_url: str = "sqlite:///.state/subscriber.db"
    create_tables: bool = True  # create missing tables at start (off when you run migrations)

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""

    consumer_group: str = ""  # default: motcua-<subscriber name>
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    max_attempts: int = Field(default=3, ge=1)  # then the record goes to <topic>.dlq
    retry_backoff_seconds: float = Field(default=0.2, ge=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    log_level: str = "INFO"
    # /metrics (consumer lag, events consumed, dead letters), /healthz and /readyz, as the
    # services serve them; 0 turns the endpoint off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    def kafka_settings(self, name: str) -> ServiceSettings:
        """The kit's settings object its Kafka client factories take (same security options)."""
        return ServiceSettings.model_construct(
            service_name=name,
            kafka_bootstrap=self.kafka_bootstrap,
            kafka_security_protocol=self.kafka_security_protocol,
            kafka_sasl_mechanism=self.kafka_sasl_mechanism,
            kafka_sasl_username=self.kafka_sasl_username,
            kafka_sasl_password=self.kafka_sasl_password.get_secret_value(),
            kafka_ssl_cafile=self.kafka_ssl_cafile,
        )
