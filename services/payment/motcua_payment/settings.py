"""Payment service settings: environment variables prefixed ``MOTCUA_PAYMENT_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from motcua_kit.public_http import PublicHttpSettings
from motcua_kit.settings import ServiceSettings

MIN_SECRET_LENGTH = 16


class PaymentSettings(ServiceSettings, PublicHttpSettings):
    """Adds the gateway, the callback endpoint and the timers' rhythm.

    The callback endpoint's limits are the kit's ``PUBLIC_HTTP_*`` settings (ADR 0082): head
    and body sizes, the request timeout, TLS, and the per-source rate limit on the callback
    paths (``/payment/...``, ``/p/...``).

    The hash secret comes from ``GATEWAY_HASH_SECRET_FILE`` (a mounted Kubernetes Secret) or
    ``GATEWAY_HASH_SECRET``; the service refuses to serve without one.
    """

    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_PAYMENT_")

    service_name: str = "payment"
    database_url: str = "sqlite:///.state/payment.db"
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)

    # The HTTP endpoint the gateway calls (IPN) and the payer's browser returns to.
    callback_port: int = Field(default=8103, ge=0, le=65535)
    # How gateways and browsers reach that endpoint (behind the ingress in production);
    # default http://<bind_host>:<callback_port>.
    callback_public_url: str = ""
    # Optional: the portal page the return endpoint sends the payer on to.
    portal_result_url: str = ""
    # Callbacks are GETs: no body is wanted (the kit's other PUBLIC_HTTP_* defaults hold).
    public_http_max_body_bytes: int = Field(
        default=8 * 1024,
        ge=0,
        description="Largest request body the callback endpoint accepts (its requests are "
        "GETs); a larger one is answered 413.",
    )

    # The gateway new payments go through, and how to reach it.
    gateway: str = "sandbox"
    gateway_base_url: str = "http://127.0.0.1:8090"
    gateway_merchant_code: str = "MOTCUA01"
    gateway_hash_secret: SecretStr | None = None
    gateway_hash_secret_file: Path | None = None
    gateway_timeout_seconds: float = Field(default=5.0, gt=0)

    # Callbacks whose timestamp is further than this from now are refused.
    callback_tolerance_seconds: int = Field(default=300, ge=1)
    # Unpaid payments expire after this long (the gateway's page closes at the same time).
    payment_expiry_seconds: int = Field(default=900, ge=1)
    expiry_interval_seconds: float = Field(default=30.0, gt=0)
    # Payments pending longer than the threshold are asked about at the gateway.
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    reconcile_after_seconds: float = Field(default=120.0, ge=0)
    reconcile_batch_size: int = Field(default=100, ge=1)

    # Receipts are numbered per calendar year in this time zone.
    timezone: str = "Asia/Ho_Chi_Minh"

    def hash_secret(self) -> bytes:
        """The merchant's hash secret; refuses a missing or short one."""
        if self.gateway_hash_secret_file is not None:
            value = self.gateway_hash_secret_file.read_text(encoding="utf-8").strip()
        elif self.gateway_hash_secret is not None:
            value = self.gateway_hash_secret.get_secret_value()
        else:
            value = ""
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(
                "MOTCUA_PAYMENT_GATEWAY_HASH_SECRET_FILE (or _GATEWAY_HASH_SECRET) must hold "
                f"the gateway's hash secret, at least {MIN_SECRET_LENGTH} characters"
            )
        return value.encode("utf-8")

    def callback_base(self) -> str:
        """The public base URL of the callback endpoint."""
        if self.callback_public_url:
            return self.callback_public_url.rstrip("/")
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "::", "") else self.bind_host
        return f"http://{host}:{self.callback_port}"
