"""Audit service settings: environment variables prefixed ``MOTCUA_AUDIT_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from motcua_kit.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    """The audit service's settings, including the tree-head signing keys."""

    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_AUDIT_")

    service_name: str = "audit"
    database_url: str = "sqlite:///.state/audit.db"
    grpc_port: int = 50054
    metrics_port: int = 9104

    # PKCS#8 PEM Ed25519 private key that signs tree heads (a mounted Secret in production).
    signing_key_file: Path | None = None
    # Password of an encrypted signing key file, if it is encrypted.
    signing_key_password: SecretStr | None = None
    # Refuse to start without signing_key_file instead of generating a development key.
    require_signing_key: bool = False
    # Where the development key is generated when signing_key_file is not set.
    dev_signing_key_file: Path = Path(".state/audit-signing-key.pem")
    # Comma-separated PEM public keys of retired signing keys that heads may still carry.
    trusted_public_key_files: str = ""
    # A tree head is signed at least this often, even when the log did not grow.
    tree_head_interval_seconds: float = Field(default=60.0, gt=0)
    # How often the service re-verifies its latest head and one block of stored entries.
    self_check_interval_seconds: float = Field(default=5.0, gt=0)
    # Staged entries one sequencer batch appends at most (one lock, one transaction; ADR 0046).
    sequencer_batch_size: int = Field(default=1000, ge=1, le=10_000)
    # How often the sequencer looks for staged entries nobody woke it for (another process's,
    # or left by a crash); its own stagings wake it at once.
    sequencer_interval_seconds: float = Field(default=1.0, gt=0)
    # How long a burst of stagings may gather before a batch takes them.
    sequencer_linger_seconds: float = Field(default=0.005, ge=0, le=1)
    # RecordAccess answers with the entry's index, so it waits this long for its batch at most.
    record_access_sequencing_timeout_seconds: float = Field(default=10.0, gt=0)
    # Heads carried as checkpoints in an export (spread over the sizes), at most.
    export_max_checkpoints: int = Field(default=256, ge=0)

    @property
    def trusted_public_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.trusted_public_key_files.split(",") if p.strip()]
