"""The dossier service's own Prometheus metrics (the kit adds gRPC, consumer and DLQ metrics)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from motcua_dossier.domain.fee import PaymentRefusal

DOSSIERS = Gauge("motcua_dossiers", "Dossiers by agency and national status", ["agency", "state"])
COMPLETED = Counter(
    "motcua_dossiers_completed_total",
    "Dossiers processed, by agency and outcome (early, on_time, late)",
    ["agency", "outcome"],
)
PAYMENTS_REFUSED = Counter(
    "motcua_dossier_payments_refused_total",
    "Payment successes kept out of a dossier: not of its own open fee request, by reason",
    ["reason"],
)

DOCUMENTS_ISSUED = Counter(
    "motcua_dossier_documents_issued_total",
    "Signed documents issued (forms of Circular 01/2018 and results), by kind",
    ["kind"],
)
SIGNING_FAILURES = Counter(
    "motcua_dossier_signing_failures_total",
    "Documents the agency's key could not sign (the change that issued them was refused)",
    ["agency"],
)
SIGNING_SECONDS = Histogram(
    "motcua_dossier_signing_seconds",
    "Time to render and sign one document with the agency's key (PAdES, in the transaction)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def count_refusals(refusals: Sequence[PaymentRefusal]) -> None:
    for refused in refusals:
        PAYMENTS_REFUSED.labels(refused.value).inc()
