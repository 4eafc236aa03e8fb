"""The payment service's business metrics (the kit adds gRPC, outbox and consumer metrics).

Label values are the domain's constants (states, rejection reasons), spelled as in the code
and the docs. Counters move only after the transaction that caused them committed.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PAYMENTS = Counter(
    "motcua_payment_payments_total",
    "Payments by outcome (requested, succeeded, failed, expired, cancelled)",
    ["outcome"],
)
CALLBACK_REJECTIONS = Counter(
    "motcua_payment_callback_rejections_total",
    "Gateway callbacks refused, by reason (bad_signature, stale_timestamp, replay, ...)",
    ["reason"],
)
CALLBACKS_ACCEPTED = Counter(
    "motcua_payment_callbacks_accepted_total", "Gateway callbacks that settled a payment", ["kind"]
)
SETTLEMENT_SECONDS = Histogram(
    "motcua_payment_settlement_seconds",
    "Time from a payment's creation to its settlement, by outcome",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200),
)
REFUNDS = Counter(
    "motcua_payment_refunds_total", "Refunds by outcome (succeeded, failed)", ["outcome"]
)
RECONCILIATIONS = Counter(
    "motcua_payment_reconciliations_total",
    "Payments and refunds the reconciliation job asked the gateway about, by result",
    ["result"],
)
GATEWAY_ERRORS = Counter(
    "motcua_payment_gateway_errors_total",
    "Gateway calls that failed or whose answers were not believed",
    ["call"],
)
