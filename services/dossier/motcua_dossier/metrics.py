"""The dossier service's own Prometheus metrics (the kit adds gRPC, consumer and DLQ metrics)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge

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


def count_refusals(refusals: Sequence[PaymentRefusal]) -> None:
    for refused in refusals:
        PAYMENTS_REFUSED.labels(refused.value).inc()
