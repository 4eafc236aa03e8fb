"""Notify service settings: environment variables prefixed ``MOTCUA_NOTIFY_``.

Channels are enabled by configuring them: email needs ``SMTP_HOST``, SMS at least
``SMS_PROVIDER_A_URL``, Zalo ``ZALO_API_URL``, webhooks a ``WEBHOOK_SUBSCRIPTIONS_FILE``.
Signed documents (issue 18, docs/adr/0088) are enabled by ``DOSSIER_GRPC_TARGET`` with
``DOSSIER_TOKEN_FILE``: without a target, ``document_issued`` events are recorded as skipped
(nothing is sent, the inbox keeps them), so a deployment without documents works as before.
Rate limits are JSON, e.g. ``MOTCUA_NOTIFY_RATE_LIMITS='{"sms": {"per_second": 5, "burst": 10}}'``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from motcua_kit.public_http import PublicHttpSettings
from motcua_kit.settings import ServiceSettings
from motcua_notify.domain.documents import DocumentError, check_link_template
from motcua_notify.domain.pacing import QuietHours
from motcua_notify.domain.retry import RetryPolicy
from motcua_notify.domain.sms import Encoding
from motcua_notify.domain.states import Channel


class RateLimit(BaseModel):
    """A token bucket: ``per_second`` sustained, ``burst`` at once."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


def _default_rate_limits() -> dict[Channel, RateLimit]:
    return {
        Channel.EMAIL: RateLimit(per_second=20, burst=40),
        Channel.SMS: RateLimit(per_second=10, burst=20),
        Channel.ZALO: RateLimit(per_second=10, burst=20),
        Channel.WEBHOOK: RateLimit(per_second=50, burst=100),
    }


class NotifySettings(ServiceSettings, PublicHttpSettings):
    """Channels, providers, pacing and retries of the notify service.

    The receipts endpoint's limits are the kit's ``PUBLIC_HTTP_*`` settings (ADR 0082): head
    and body sizes (a receipt: 64 KiB), the request timeout, TLS, and the per-source rate
    limit on ``/receipts/...``.
    """

    model_config = SettingsConfigDict(extra="ignore", env_prefix="MOTCUA_NOTIFY_")

    service_name: str = "notify"
    database_url: str = "sqlite:///.state/notify.db"
    grpc_port: int = 50052
    metrics_port: int = 9102
    timezone: str = "Asia/Ho_Chi_Minh"

    # -- data ------------------------------------------------------------------------------
    templates_file: Path | None = None  # default: the shipped motcua_notify/data/templates.yaml
    webhook_subscriptions_file: Path | None = None  # none: no webhooks

    # -- email (SMTP) ------------------------------------------------------------------------
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "motcua@localhost"
    smtp_sender_name: str = "Bộ phận Một cửa"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    # -- SMS (two HTTP providers; B takes over when A fails or is slow) -------------------------
    sms_provider_a_url: str = ""
    sms_provider_a_api_key: SecretStr = SecretStr("")
    sms_provider_b_url: str = ""
    sms_provider_b_api_key: SecretStr = SecretStr("")
    sms_sender_id: str = "MOTCUA"  # brand name registered with the operators
    sms_timeout_seconds: float = Field(default=5.0, gt=0)
    sms_failover_cooldown_seconds: float = Field(default=30.0, ge=0)
    sms_encoding: Encoding = Encoding.GSM7
    sms_segment_limit: int = Field(default=2, ge=1, le=10)

    # -- Zalo-style API ------------------------------------------------------------------------
    zalo_api_url: str = ""
    zalo_access_token: SecretStr = SecretStr("")
    zalo_timeout_seconds: float = Field(default=5.0, gt=0)

    # -- webhooks ------------------------------------------------------------------------------
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)

    # -- signed documents (docs/adr/0088) ------------------------------------------------------
    # The dossier service's gRPC address (host:port), for GetDocument. Empty: documents are not
    # configured, and document_issued events are recorded as skipped (no notice, no error).
    dossier_grpc_target: str = ""
    # The service account's bearer token (a JWT issued by the identity provider, role
    # "service"), read at each fetch so the provider may rotate it. Required with the target.
    dossier_token_file: Path | None = None
    dossier_grpc_ca_file: Path | None = None  # TLS to the dossier service (mTLS with the two below)
    dossier_grpc_cert_file: Path | None = None
    dossier_grpc_key_file: Path | None = None
    dossier_grpc_timeout_seconds: float = Field(default=10.0, gt=0)
    # Where the citizen's portal serves a document: {dossier_code} and {document_id} are filled
    # in (URL-quoted). The SMS names it whole, so it is checked against the SMS length at start.
    document_link_template: str = (
        "https://dichvucong.danang.gov.vn/ho-so/{dossier_code}/giay-to/{document_id}"
    )
    # A larger document is not attached: the email gives the link only, and says why.
    document_attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)

    # -- delivery receipts (HTTP callbacks from providers) -------------------------------------
    receipts_port: int = Field(default=9112, ge=0, le=65535)

    # -- pacing ------------------------------------------------------------------------------
    # Per channel; a channel left out keeps its default.
    rate_limits: dict[Channel, RateLimit] = Field(default_factory=_default_rate_limits)
    quiet_hours: str = "21:00-07:00"  # local time; "" = none
    quiet_hours_channels: list[Channel] = Field(default_factory=lambda: [Channel.SMS])

    # -- sending and retries -------------------------------------------------------------------
    # How often each channel's sender looks for due messages while it has idle workers.
    dispatch_interval_seconds: float = Field(default=1.0, gt=0)
    # The most rows one claim takes (also per quiet-hours hold, and per orphan sweep).
    dispatch_batch_size: int = Field(default=50, ge=1)
    # Each configured channel has its own sender with this many workers, i.e. at most this
    # many of its sends in flight at once, claimed only as workers are free (ADR 0037): a
    # provider that is slow or timing out holds up its own channel only. Per process: with N
    # replicas a channel has N x this many sends in flight at most.
    sender_concurrency: int = Field(default=8, ge=1)
    # Per channel overrides, JSON: MOTCUA_NOTIFY_SENDER_CONCURRENCY_BY_CHANNEL='{"sms": 16}'
    # (a slow provider's throughput is workers / its latency; channels left out: the above).
    sender_concurrency_by_channel: dict[Channel, int] = Field(default_factory=dict)
    send_lease_seconds: float = Field(default=60.0, gt=0)
    retry_max_attempts: int = Field(default=48, ge=1)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_delay_seconds: float = Field(default=300.0, gt=0)
    retry_jitter: float = Field(default=0.5, ge=0, lt=1)
    # An SMS or Zalo message the provider took but never reported on: after this long it is
    # given up as failed (not resent: it may well have arrived). GOV.UK Notify waits 72 h too.
    receipt_timeout_hours: float = Field(default=72.0, gt=0)
    receipt_timeout_check_seconds: float = Field(default=600.0, gt=0)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours_parse(cls, value: str) -> str:
        QuietHours.parse(value, "UTC")  # raises with the expected form
        return value

    @field_validator("document_link_template")
    @classmethod
    def _document_link(cls, value: str) -> str:
        try:
            return check_link_template(value)
        except DocumentError as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _documents_need_a_token(self) -> NotifySettings:
        if self.dossier_grpc_target and self.dossier_token_file is None:
            raise ValueError("dossier_token_file is required with dossier_grpc_target")
        return self

    @property
    def documents_enabled(self) -> bool:
        """Whether issued documents are sent (a dossier service to fetch them from)."""
        return bool(self.dossier_grpc_target)

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits_keep_defaults(
        cls, value: dict[Channel, RateLimit]
    ) -> dict[Channel, RateLimit]:
        return {**_default_rate_limits(), **value}

    @field_validator("sender_concurrency_by_channel")
    @classmethod
    def _workers_positive(cls, value: dict[Channel, int]) -> dict[Channel, int]:
        for channel, workers in value.items():
            if workers < 1:
                raise ValueError(f"{channel.value} needs at least one sender worker")
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotifySettings:
        """A sender still waiting on a provider must not look dead to the others."""
        sms_providers = bool(self.sms_provider_a_url) + bool(self.sms_provider_b_url)
        longest = max(
            # An email with a document fetches it first, then hands it to the relay.
            (self.smtp_timeout_seconds if self.smtp_host else 0.0)
            + (
                self.dossier_grpc_timeout_seconds
                if self.smtp_host and self.documents_enabled
                else 0.0
            ),
            self.sms_timeout_seconds * sms_providers,
            self.zalo_timeout_seconds if self.zalo_api_url else 0.0,
            self.webhook_timeout_seconds if self.webhook_subscriptions_file else 0.0,
        )
        if self.send_lease_seconds <= longest:
            raise ValueError(
                f"send_lease_seconds ({self.send_lease_seconds}) must exceed the longest send "
                f"({longest}s: provider timeouts, SMS failover included)"
            )
        return self

    def sender_workers(self, channel: Channel) -> int:
        """How many sends of ``channel`` may be in flight at once in this process."""
        return self.sender_concurrency_by_channel.get(channel, self.sender_concurrency)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_seconds=self.retry_base_seconds,
            max_delay_seconds=max(self.retry_max_delay_seconds, self.retry_base_seconds),
            jitter=self.retry_jitter,
        )

    def quiet_window(self) -> QuietHours | None:
        return QuietHours.parse(self.quiet_hours, self.timezone)

    def enabled_channels(self) -> frozenset[Channel]:
        """The channels that are configured (an unconfigured channel gets no messages)."""
        enabled = set()
        if self.smtp_host:
            enabled.add(Channel.EMAIL)
        if self.sms_provider_a_url or self.sms_provider_b_url:
            enabled.add(Channel.SMS)
        if self.zalo_api_url:
            enabled.add(Channel.ZALO)
        if self.webhook_subscriptions_file is not None:
            enabled.add(Channel.WEBHOOK)
        return frozenset(enabled)
