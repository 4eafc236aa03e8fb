"""Dossier service settings: environment variables prefixed ``MOTCUA_DOSSIER_``."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from motcua_kit.settings import ServiceSettings


class DossierSettings(ServiceSettings):
    """Adds the reference-data directory and the local time zone of the agencies."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_DOSSIER_")

    service_name: str = "dossier"
    database_url: str = "sqlite:///.state/dossier.db"
    grpc_port: int = 50051
    metrics_port: int = 9101
    reference_data_dir: Path | None = None
    timezone: str = "Asia/Ho_Chi_Minh"
