"""Dossier service settings: environment variables prefixed ``MOTCUA_DOSSIER_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    # How often the deadline scanner looks for due-soon and overdue dossiers.
    deadline_scan_seconds: float = Field(default=300.0, gt=0)
    # A dossier is "due soon" this many working days before its appointment.
    due_soon_days: int = Field(default=1, ge=0)
    # Working days added to a late dossier's new appointment date (the apology notice).
    overdue_extension_days: int = Field(default=3, ge=1)
    # How often the dossiers-by-state gauge is refreshed.
    gauge_refresh_seconds: float = Field(default=15.0, gt=0)
