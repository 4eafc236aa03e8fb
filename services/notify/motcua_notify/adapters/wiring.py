"""What the settings configure, built: the templates, the webhook subscriptions, the channels'
adapters, their pacing and the receipt endpoint's secrets. A channel is enabled by configuring
it."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from motcua_notify.adapters.channels.base import ChannelAdapter
from motcua_notify.adapters.channels.email import SmtpEmail
from motcua_notify.adapters.channels.sms import FailoverSms, HttpSmsProvider, SmsProvider
from motcua_notify.adapters.channels.webhook import SignedWebhooks
from motcua_notify.adapters.channels.zalo import ZaloApi
from motcua_notify.adapters.documents import DossierDocuments
from motcua_notify.domain.claim import Pacing
from motcua_notify.domain.documents import DocumentNotices, longest_link
from motcua_notify.domain.occurrence import PROVIDED_VARIABLES
from motcua_notify.domain.pacing import TokenBucket
from motcua_notify.domain.states import Channel
from motcua_notify.domain.subscriptions import (
    SubscriptionError,
    WebhookSubscription,
    load_subscriptions,
)
from motcua_notify.domain.templates import TemplateCatalogue, TemplateCatalogueError
from motcua_notify.settings import NotifySettings

log = logging.getLogger(__name__)

# Which receipt endpoint may speak for which channel.
RECEIPT_CHANNEL = {"sms-a": Channel.SMS, "sms-b": Channel.SMS, "zalo": Channel.ZALO}


def catalogue(s: NotifySettings) -> TemplateCatalogue:
    """The notice templates, checked against the SMS limit (a refusal stops the start)."""
    try:
        loaded = TemplateCatalogue.load(
            s.templates_file,
            segment_limit=s.sms_segment_limit,
            encoding=s.sms_encoding,
            provided=PROVIDED_VARIABLES,
        )
        _check_document_link(s, loaded)
        return loaded
    except TemplateCatalogueError as exc:
        log.critical("notice templates refused: %s", exc)  # one line, before any traceback
        raise


def _check_document_link(s: NotifySettings, loaded: TemplateCatalogue) -> None:
    """A link is never cut in an SMS, so the longest the link template makes must be within
    what the SMS check assumed for it (``document_link``'s ``sms_max_length``)."""
    variable = loaded.variables.get("document_link")
    longest = longest_link(s.document_link_template)
    if s.documents_enabled and variable is not None and longest > variable.sms_max_length:
        raise TemplateCatalogueError(
            f"document_link_template makes links of up to {longest} characters; the SMS "
            f"templates are checked for {variable.sms_max_length} (variable document_link)"
        )


def document_notices(s: NotifySettings) -> DocumentNotices | None:
    """How issued documents become notices; None when documents are not configured."""
    if not s.documents_enabled:
        return None
    return DocumentNotices(s.document_link_template, s.document_attachment_max_bytes)


def documents(s: NotifySettings) -> DossierDocuments | None:
    """The dossier service's GetDocument client; None when documents are not configured."""
    if not s.documents_enabled or s.dossier_token_file is None:
        return None
    return DossierDocuments(
        s.dossier_grpc_target,
        s.dossier_token_file,
        timeout=s.dossier_grpc_timeout_seconds,
        ca_file=s.dossier_grpc_ca_file,
        cert_file=s.dossier_grpc_cert_file,
        key_file=s.dossier_grpc_key_file,
    )


def subscriptions(s: NotifySettings) -> list[WebhookSubscription]:
    """The webhook subscriptions (a refusal stops the start)."""
    try:
        return load_subscriptions(s.webhook_subscriptions_file, known_types=PROVIDED_VARIABLES)
    except SubscriptionError as exc:
        log.critical("webhook subscriptions refused: %s", exc)
        raise


def build_channels(
    s: NotifySettings, subscriptions: list[WebhookSubscription]
) -> dict[Channel, ChannelAdapter]:
    """The configured channels' adapters (an unconfigured channel is absent)."""
    out: dict[Channel, ChannelAdapter] = {}
    if s.smtp_host:
        out[Channel.EMAIL] = SmtpEmail(
            s.smtp_host,
            s.smtp_port,
            s.smtp_sender,
            s.smtp_sender_name,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value(),
            starttls=s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
            documents=documents(s),
        )
    providers = [
        HttpSmsProvider(
            SmsProvider(name, url, key.get_secret_value()), s.sms_sender_id, s.sms_timeout_seconds
        )
        for name, url, key in (
            ("sms-a", s.sms_provider_a_url, s.sms_provider_a_api_key),
            ("sms-b", s.sms_provider_b_url, s.sms_provider_b_api_key),
        )
        if url
    ]
    if providers:
        out[Channel.SMS] = FailoverSms(providers, s.sms_failover_cooldown_seconds)
    if s.zalo_api_url:
        out[Channel.ZALO] = ZaloApi(
            s.zalo_api_url, s.zalo_access_token.get_secret_value(), s.zalo_timeout_seconds
        )
    if s.webhook_subscriptions_file is not None:
        out[Channel.WEBHOOK] = SignedWebhooks(subscriptions, s.webhook_timeout_seconds)
    return out


def receipt_secrets(s: NotifySettings) -> dict[str, str]:
    """Each configured receipt endpoint's signing key (its provider's API key or token)."""
    secrets = {}
    if s.sms_provider_a_url:
        secrets["sms-a"] = s.sms_provider_a_api_key.get_secret_value()
    if s.sms_provider_b_url:
        secrets["sms-b"] = s.sms_provider_b_api_key.get_secret_value()
    if s.zalo_api_url:
        secrets["zalo"] = s.zalo_access_token.get_secret_value()
    return {k: v for k, v in secrets.items() if v}


def pacing(s: NotifySettings, now: float) -> Pacing:
    """Quiet hours and each channel's token bucket (full at ``now``), as configured."""
    buckets = {
        channel: TokenBucket(limit.per_second, limit.burst, now)
        for channel, limit in s.rate_limits.items()
    }
    return Pacing(s.quiet_window(), s.quiet_hours_channels, buckets, ZoneInfo(s.timezone))
