"""Notify's business metrics; names and labels use the domain's spelling (channel, state)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "motcua_notify_messages_total",
    "Notifications by channel and outcome (a delivery state, or opted_out / no_address)",
    ["channel", "outcome"],
)
RETRIES = Counter(
    "motcua_notify_retries_total",
    "Retries scheduled after a temporary failure",
    ["channel"],
)
PROVIDER_LATENCY = Histogram(
    "motcua_notify_provider_latency_seconds",
    "Time a provider took to answer one send request, by outcome",
    ["channel", "provider", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROVIDER_FAILOVERS = Counter(
    "motcua_notify_provider_failovers_total",
    "Sends passed to the next provider because one failed or was too slow",
    ["channel", "provider"],
)
QUEUE_AGE = Gauge(
    "motcua_notify_queue_oldest_seconds",
    "Age of the oldest notification waiting to be sent (created or temporary-failure)",
    ["channel"],
)
QUEUE_WAIT = Histogram(
    "motcua_notify_queue_wait_seconds",
    "Time from recording a notification to its first send attempt",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 43200),
)
HELD = Counter(
    "motcua_notify_held_total",
    "Sends postponed: quiet hours (reason=quiet_hours) or rate limit (reason=rate_limit)",
    ["channel", "reason"],
)
RECEIPTS = Counter(
    "motcua_notify_receipts_total",
    "Delivery receipts received, by provider and result (applied, ignored, unknown, refused)",
    ["provider", "result"],
)
IN_FLIGHT = Gauge(
    "motcua_notify_sends_in_flight",
    "Sends handed to a channel's workers and not yet answered (at most its sender's workers)",
    ["channel"],
)
DOCUMENTS = Counter(
    "motcua_notify_documents_total",
    "Issued documents seen, by kind and what notify made of them (attached, link_only, "
    "not_notified: a kind the status notices tell of, skipped: documents not configured)",
    ["kind", "outcome"],
)
DOCUMENT_FETCHES = Counter(
    "motcua_notify_document_fetches_total",
    "Fetches of a document's bytes from the dossier service for an email, by outcome (fetched, "
    "mismatch: size or SHA-256 not the event's, not_found, permission_denied, unavailable, "
    "error)",
    ["outcome"],
)
