"""Dossier service settings: environment variables prefixed ``MOTCUA_DOSSIER_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from motcua_kit.settings import ServiceSettings


class DossierSettings(ServiceSettings):
    """Adds the reference-data directory, the local time zone of the agencies and the signed
    documents' keyring."""

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
    # The keyring file (motcua_documents.keyring): which key signs for which agency. Empty:
    # no signed documents are issued (ADR 0086). When set, every agency of the catalogue
    # with a procedure must have a key, or the service refuses to start.
    documents_keyring: str = ""
    # Overrides the keyring's tsa_url (RFC 3161, B-T signatures); empty keeps the keyring's.
    documents_tsa_url: str = ""
    # The largest result document ReturnResult accepts, in bytes (20 MiB).
    result_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0, le=1024 * 1024 * 1024)
