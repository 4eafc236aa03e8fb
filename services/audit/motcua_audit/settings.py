"""Audit service settings: environment variables prefixed ``MOTCUA_AUDIT_``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from motcua_kit.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    """The audit service's settings (the Merkle log's signing keys come with its own issue)."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_AUDIT_")

    service_name: str = "audit"
    database_url: str = "sqlite:///.state/audit.db"
    grpc_port: int = 50054
    metrics_port: int = 9104
